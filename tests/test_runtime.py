"""The ONNX Runtime encoders against PyTorch, the reference: same unit vectors (<= 1e-5) for both presets with
non-zero adapters, on real RSICD captions of varied length in mixed-length batches and on real RSICD images;
the export cache; the fallback to PyTorch."""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from posapl import onnx_export
from posapl.config import preset_config
from posapl.encode import encode_images, encode_texts
from posapl.model import POSAPL, build_from_config
from posapl.preprocess import eval_transform
from posapl.runtime import OnnxEncoder, TorchEncoder, load_encoder
from posapl.text import normalize_caption

TOLERANCE = 1e-5
# The two presets, each with one of the two text-batching paths: the rsitmd layout with the causal text
# adapter (batches cut to their longest caption) and the rsicd reference layout (non-causal adapter, so
# non-zero adapters force full 77-token batches).
VARIANTS = {"rsitmd-causal": ("rsitmd", True), "rsicd-reference": ("rsicd", False)}


def _with_random_adapters(model: POSAPL, seed: int) -> POSAPL:
    """A fresh model has zero adapters (exactly base CLIP), which would hide any adapter left out of a graph."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.adapters.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.05)
    return model


@pytest.fixture(scope="module")
def rsicd_test(data_dir: Path) -> list[dict]:
    return json.loads((data_dir / "rsicd" / "rsicd_test.json").read_text())


@pytest.fixture(scope="module")
def captions(rsicd_test: list[dict], pos_tagger) -> tuple[list[str], list[list[str]]]:
    """Real captions from the shortest to the longest (6 to 33 words), in file order so batches mix lengths."""
    distinct = list(dict.fromkeys(normalize_caption(c) for record in rsicd_test for c in record["caption"]))
    by_length = sorted(distinct, key=lambda c: len(c.split()))
    chosen = set(by_length[:8] + by_length[-8:] + distinct[:24])
    texts = [c for c in distinct if c in chosen]
    return texts, pos_tagger.tag(texts)


@pytest.fixture(scope="module")
def images(rsicd_test: list[dict], data_dir: Path) -> torch.Tensor:
    transform = eval_transform(224)
    return torch.stack([transform(Image.open(data_dir / "rsicd" / r["image"])) for r in rsicd_test[:6]])


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def exported(request, tiny_arch_path: Path, cache_dir: Path) -> tuple[POSAPL, OnnxEncoder]:
    preset, causal = VARIANTS[request.param]
    config = preset_config(preset, str(tiny_arch_path), text_adapter_causal=causal)
    model = _with_random_adapters(build_from_config(config, "random"), seed=len(request.param))
    choice = load_encoder(model, "onnx", cache_dir)
    assert choice.reason is None and isinstance(choice.encoder, OnnxEncoder), choice.reason
    return model, choice.encoder


def test_text_tower_equals_pytorch(exported, captions) -> None:
    model, runtime = exported
    texts, pos = captions
    lengths = (model.tokenize(texts).argmax(-1) + 1).tolist()
    assert min(lengths) <= 10 and max(lengths) >= 30  # short and long captions both present
    assert model.truncation_is_exact() == model.config.text_adapter_causal  # non-zero text adapters
    singles = slice(len(texts) // 2 - 4, len(texts) // 2 + 4)
    # single queries, small mixed-length batches, one batch of every length
    for batch_size, chunk in ((1, singles), (7, slice(None)), (len(texts), slice(None))):
        want = encode_texts(model, texts[chunk], pos[chunk], batch_size=batch_size)
        got = runtime.encode_texts(texts[chunk], pos[chunk], batch_size=batch_size)
        assert got.dtype == np.float32 and got.shape == want.shape
        assert np.abs(got - want).max() <= TOLERANCE


def test_text_order_and_duplicates_are_kept(exported, captions) -> None:
    """Batches are planned in length order; every vector must still land on its own caption's row."""
    model, runtime = exported
    texts, pos = captions
    picked = [len(texts) - 1, 0, 3, 0, len(texts) // 2]
    got = runtime.encode_texts([texts[i] for i in picked], [pos[i] for i in picked], batch_size=2)
    alone = np.stack([runtime.encode_texts([texts[i]], [pos[i]])[0] for i in picked])
    assert np.abs(got - alone).max() <= TOLERANCE
    assert np.array_equal(got[1], got[3])


def test_image_tower_equals_pytorch(exported, images) -> None:
    model, runtime = exported
    for batch_size in (4, len(images)):  # a full and a partial batch, then one batch
        want = encode_images(model, images, batch_size=batch_size)
        assert np.abs(runtime.encode_images(images, batch_size=batch_size) - want).max() <= TOLERANCE
    assert runtime.encode_images(images[:0]).shape == (0, model.embed_dim)


def test_restart_reuses_the_cached_graphs(exported, cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model, _ = exported
    text_graph = onnx_export.cache_path(model, cache_dir, "text")
    assert text_graph.is_file() and text_graph.parent.name == onnx_export.model_key(model)
    stamp = text_graph.stat().st_mtime_ns

    def no_export(*_: object) -> None:
        raise AssertionError("exported again although the graph is cached")

    monkeypatch.setattr(onnx_export, "export_text_tower", no_export)
    monkeypatch.setattr(onnx_export, "export_image_tower", no_export)
    choice = load_encoder(model, "auto", cache_dir)
    assert choice.name == "onnx" and choice.reason is None
    assert text_graph.stat().st_mtime_ns == stamp
    assert not list(text_graph.parent.glob("*.tmp"))  # atomic writes leave no temporary file behind


def test_other_adapter_values_get_their_own_graph(tiny_arch_path: Path, cache_dir: Path) -> None:
    model = build_from_config(preset_config("rsitmd", str(tiny_arch_path)), "random")
    before = onnx_export.cache_path(model, cache_dir, "text")
    _with_random_adapters(model, seed=99)
    assert onnx_export.cache_path(model, cache_dir, "text").parent != before.parent
    assert onnx_export.cache_path(model, cache_dir, "text", "int8") != onnx_export.cache_path(model, cache_dir, "text")


def test_int8_text_tower_stays_close(exported, captions, cache_dir: Path) -> None:
    model, runtime = exported
    texts, pos = captions
    choice = load_encoder(model, "onnx", cache_dir, precision="int8")
    assert choice.name == "onnx-int8", choice.reason
    got, fp32 = choice.encoder.encode_texts(texts, pos), runtime.encode_texts(texts, pos)
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    cosine = np.sum(got * fp32, axis=1)
    assert cosine.min() >= 0.95 and not np.array_equal(got, fp32)  # quantised, and still close


def test_failed_export_falls_back_to_pytorch(tiny_model: POSAPL, tmp_path: Path) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    choice = load_encoder(tiny_model, "auto", blocked / "cache")
    assert isinstance(choice.encoder, TorchEncoder) and choice.name == "torch"
    assert "PyTorch serves" in choice.reason and str(tmp_path) not in choice.reason


def test_corrupt_cached_graph_falls_back_to_pytorch(tmp_path: Path, tiny_arch_path: Path) -> None:
    model = build_from_config(replace(preset_config("rsitmd", str(tiny_arch_path)), adapter_dim=64), "random")
    for tower in ("text", "image"):
        path = onnx_export.cache_path(model, tmp_path, tower)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\x08\x07garbage")
    choice = load_encoder(model, "onnx", tmp_path)
    assert choice.name == "torch" and "failed" in choice.reason


def test_torch_is_served_when_asked(tiny_model: POSAPL, tmp_path: Path) -> None:
    choice = load_encoder(tiny_model, "torch", tmp_path)
    assert choice.name == "torch" and choice.reason is None
    assert not any(tmp_path.iterdir())  # nothing exported


def test_pytorch_answers_correctly_while_the_export_runs(tiny_arch_path: Path, tmp_path: Path, images) -> None:
    """The service serves PyTorch while the graphs are exported in a background thread from the same model."""
    model = _with_random_adapters(build_from_config(preset_config("rsitmd", str(tiny_arch_path)), "random"), seed=3)
    expected = encode_images(model, images[:2])
    failures: list[BaseException] = []

    def export() -> None:
        try:
            onnx_export.cached_tower(model, tmp_path, "image")
        except BaseException as exc:  # reported by the assertion below
            failures.append(exc)

    worker = threading.Thread(target=export)
    worker.start()
    served = 0
    while worker.is_alive() or served == 0:
        np.testing.assert_allclose(encode_images(model, images[:2]), expected, atol=1e-6)
        served += 1
    worker.join()
    assert not failures, failures
