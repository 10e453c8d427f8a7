from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from posapl.config import preset_config
from posapl.encode import embed_captions, encode_images, encode_texts
from posapl.model import build_from_config
from posapl.text import normalize_caption


@pytest.fixture(scope="module")
def real_captions(data_dir) -> list[str]:
    records = json.loads((data_dir / "rsicd" / "rsicd_test.json").read_text())
    return [normalize_caption(c) for record in records[:40] for c in record["caption"]]


def _trained_like(model, seed: int = 3):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.adapters.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.05)
    return model


def test_truncated_encoding_equals_full_context(tiny_arch_path, pos_tagger, real_captions) -> None:
    model = _trained_like(build_from_config(preset_config("rsicd", str(tiny_arch_path), text_adapter_causal=True),
                                            "random"))
    pos = pos_tagger.tag(real_captions)
    full = encode_texts(model, real_captions, pos, batch_size=16, truncate=False)
    short = encode_texts(model, real_captions, pos, batch_size=16, truncate=True)
    assert np.abs(full - short).max() <= 1e-5
    assert np.allclose(np.linalg.norm(short, axis=1), 1.0, atol=1e-5)


def test_truncation_is_skipped_when_it_would_change_results(tiny_arch_path, pos_tagger, real_captions) -> None:
    reference = _trained_like(build_from_config(preset_config("rsitmd", str(tiny_arch_path)), "random"))
    assert not reference.truncation_is_exact()
    pos = pos_tagger.tag(real_captions[:8])
    full = encode_texts(reference, real_captions[:8], pos, truncate=False)
    tokens = reference.tokenize(real_captions[:8])
    width = int((tokens.argmax(-1) + 1).max())
    with torch.no_grad():
        naive = reference.encode_text(tokens[:, :width], reference.tokenize([" ".join(p) for p in pos])[:, :width])
    naive = torch.nn.functional.normalize(naive, dim=-1).numpy()
    assert np.abs(full - naive).max() > 1e-4  # naive truncation would be wrong for the reference layout
    assert np.array_equal(encode_texts(reference, real_captions[:8], pos, truncate=True), full)


def test_zero_initialised_model_truncates_exactly(tiny_model, pos_tagger, real_captions) -> None:
    assert tiny_model.truncation_is_exact()
    pos = pos_tagger.tag(real_captions[:10])
    full = encode_texts(tiny_model, real_captions[:10], pos, truncate=False)
    assert np.abs(full - encode_texts(tiny_model, real_captions[:10], pos)).max() <= 1e-5


def test_batching_does_not_change_embeddings(tiny_model) -> None:
    images = torch.randn(5, 3, 224, 224)
    assert np.allclose(encode_images(tiny_model, images, batch_size=2), encode_images(tiny_model, images), atol=1e-5)


def test_embed_captions_rejects_empty_caption(tiny_model, pos_tagger) -> None:
    with pytest.raises(ValueError, match="empty"):
        embed_captions(tiny_model, pos_tagger, ["a river", " ?! "])


def test_mismatched_pos_and_empty_inputs(tiny_model) -> None:
    with pytest.raises(ValueError, match="POS"):
        encode_texts(tiny_model, ["a river"], [])
    assert encode_texts(tiny_model, [], []).shape == (0, tiny_model.embed_dim)
    assert encode_images(tiny_model, torch.zeros(0, 3, 224, 224)).shape == (0, tiny_model.embed_dim)


def test_encoding_is_float32_because_bf16_moves_embeddings(tiny_arch_path, data_dir, pos_tagger, real_captions) -> None:
    """Serving and indexing encode in float32 on every device: bf16 autocast (here its CPU stand-in) moves
    embeddings by ~1e-3, so an index built under it would not match one built in float32."""
    from PIL import Image

    from posapl.preprocess import eval_transform

    model = _trained_like(build_from_config(preset_config("rsicd", str(tiny_arch_path)), "random"))
    paths = sorted((data_dir / "rsicd" / "test").glob("*.jpg"))[:4]
    images = torch.stack([eval_transform(224)(Image.open(path)) for path in paths])
    captions = real_captions[:8]
    pos = pos_tagger.tag(captions)
    default = encode_images(model, images), encode_texts(model, captions, pos, truncate=False)
    with torch.no_grad():
        plain = (torch.nn.functional.normalize(model.encode_image(images), dim=-1).numpy(),
                 torch.nn.functional.normalize(model.encode_text(model.tokenize(captions), model.tokenize(
                     [" ".join(words) for words in pos])), dim=-1).numpy())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = encode_images(model, images), encode_texts(model, captions, pos, truncate=False)
    for ours, fp32, low in zip(default, plain, bf16):
        assert ours.dtype == np.float32
        assert np.abs(ours - fp32).max() <= 1e-5
        assert np.abs(ours - low).max() > 1e-4
