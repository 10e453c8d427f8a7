from __future__ import annotations

import pytest
import torch

from posapl.config import ModelConfig, preset_config
from posapl.model import build_from_config, build_model, trainable_parameter_count


@pytest.mark.parametrize(("preset", "expected"), [("rsitmd", 9_474_048), ("rsicd", 11_054_592)])
def test_vit_b32_trainable_parameters_match_reference(preset: str, expected: int) -> None:
    model = build_model(preset, "random", arch="ViT-B-32")
    assert trainable_parameter_count(model) == expected
    assert all(not p.requires_grad for p in model.clip.parameters())


def test_only_adapters_are_trainable(tiny_model) -> None:
    trainable = {name for name, p in tiny_model.named_parameters() if p.requires_grad}
    assert trainable and all(name.startswith("adapters.") for name in trainable)


@pytest.mark.parametrize("preset", ["rsitmd", "rsicd"])
def test_fresh_model_gives_exactly_base_clip_embeddings(preset: str, tiny_arch_path) -> None:
    model = build_model(preset, "random", arch=str(tiny_arch_path))
    images = torch.randn(3, 3, 224, 224)
    tokens = model.tokenize(["a bridge over a river", "many planes near a terminal", "green farmland"])
    pos = model.tokenize(["determiner noun adposition determiner noun", "adjective noun", "adjective noun"])
    with torch.no_grad():
        assert torch.equal(model.encode_image(images), model.clip.encode_image(images))
        assert torch.equal(model.encode_text(tokens, pos), model.clip.encode_text(tokens))


def _randomize_adapters(model, seed: int = 1) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.adapters.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.05)


@pytest.mark.parametrize("preset", ["rsitmd", "rsicd"])
def test_samples_in_a_batch_do_not_influence_each_other(preset: str, tiny_arch_path) -> None:
    model = build_model(preset, "random", arch=str(tiny_arch_path))
    _randomize_adapters(model)
    images = torch.randn(4, 3, 224, 224)
    other = images.clone()
    other[1:] = torch.randn(3, 3, 224, 224)
    texts = ["a bridge over a river", "many planes", "a stadium", "a church"]
    tokens = model.tokenize(texts)
    pos = model.tokenize(["determiner noun adposition determiner noun", "adjective noun", "determiner noun",
                          "determiner noun"])
    other_tokens = model.tokenize([texts[0], "bare land", "a dense residential area with trees", "ships"])
    other_pos = model.tokenize(["determiner noun adposition determiner noun",
                                "adjective noun", "determiner adjective adjective noun adposition noun", "noun"])
    with torch.no_grad():
        a = model.encode_image(images)[0]
        b = model.encode_image(other)[0]
        assert torch.allclose(a, b, atol=1e-5)
        t = model.encode_text(tokens, pos)[0]
        u = model.encode_text(other_tokens, other_pos)[0]
        assert torch.allclose(t, u, atol=1e-5)
        # the adapters are live: the output differs from base CLIP
        assert not torch.allclose(a, model.clip.encode_image(images)[0], atol=1e-3)


def test_adapters_change_output_once_trained(tiny_arch_path) -> None:
    model = build_model("rsitmd", "random", arch=str(tiny_arch_path))
    before = model.fingerprint()
    _randomize_adapters(model)
    assert model.fingerprint() != before
    tokens = model.tokenize(["a bridge"])
    with torch.no_grad():
        assert not torch.allclose(model.encode_text(tokens, tokens), model.clip.encode_text(tokens), atol=1e-4)


def test_presets_match_reference() -> None:
    rsitmd, rsicd = preset_config("rsitmd"), preset_config("rsicd")
    assert (rsitmd.pos_side, rsitmd.fusion, rsitmd.pos_dim) == (False, "serial", 64)
    assert (rsicd.pos_side, rsicd.fusion, rsicd.pos_dim) == (True, "end_sum", 128)
    assert rsitmd.taps(12) == (5, 7, 9, 11)
    with pytest.raises(ValueError, match="unknown preset"):
        preset_config("coco")


def test_config_round_trip_and_validation() -> None:
    config = ModelConfig(fusion_layers=(1, 2, 3, 4), text_adapter_causal=True)
    assert ModelConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="fusion"):
        ModelConfig(fusion="parallel")
    with pytest.raises(ValueError, match="do not exist"):
        ModelConfig(fusion_layers=(1, 2, 3, 40)).taps(12)


def test_train_mode_keeps_frozen_base_in_eval(tiny_model) -> None:
    tiny_model.train()
    assert tiny_model.training and tiny_model.adapters.training and not tiny_model.clip.training
    tiny_model.eval()
    assert not tiny_model.adapters.training


def test_causal_text_adapter_is_a_real_variant(tiny_arch_path) -> None:
    model = build_from_config(preset_config("rsitmd", str(tiny_arch_path), text_adapter_causal=True), "random")
    _randomize_adapters(model)
    reference = build_from_config(preset_config("rsitmd", str(tiny_arch_path)), "random")
    reference.adapters.load_state_dict(model.adapters.state_dict())
    tokens = model.tokenize(["a bridge over a river"])
    with torch.no_grad():
        assert not torch.allclose(model.encode_text(tokens, tokens), reference.encode_text(tokens, tokens))
