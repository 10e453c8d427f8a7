from __future__ import annotations

import json

import pytest
import torch

from posapl.checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint
from posapl.model import build_model
from posapl.weights import WeightsUnavailableError


def test_round_trip_is_small_and_exact(tmp_path, tiny_arch_path) -> None:
    model = build_model("rsicd", "random", arch=str(tiny_arch_path))
    with torch.no_grad():
        for p in model.adapters.parameters():
            p.add_(0.01)
    save_checkpoint(model, tmp_path / "ckpt")
    files = {p.name for p in (tmp_path / "ckpt").iterdir()}
    assert files == {"adapters.safetensors", "config.json"}
    adapter_bytes = (tmp_path / "ckpt" / "adapters.safetensors").stat().st_size
    assert adapter_bytes < 4.5 * sum(p.numel() for p in model.adapters.parameters())  # adapters only, no base
    loaded = load_checkpoint(tmp_path / "ckpt")
    assert loaded.fingerprint() == model.fingerprint()
    images = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(loaded.encode_image(images), model.encode_image(images))


def test_base_weights_from_a_local_file(tmp_path, tiny_arch_path) -> None:
    donor = build_model("rsitmd", "random", arch=str(tiny_arch_path), seed=7)
    weights = tmp_path / "open_clip_model.bin"
    torch.save(donor.clip.state_dict(), weights)
    model = build_model("rsitmd", str(weights), arch=str(tiny_arch_path))
    for a, b in zip(model.clip.state_dict().values(), donor.clip.state_dict().values()):
        assert torch.equal(a, b)


def test_offline_tag_names_both_ways_out(monkeypatch, tiny_arch_path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsUnavailableError) as info:
        build_model("rsitmd", "laion2b_s34b_b79k", arch="ViT-B-32")
    message = str(info.value)
    assert "--pretrained /path/to" in message and "random" in message


def test_missing_weights_file_and_unknown_tag(tiny_arch_path) -> None:
    with pytest.raises(WeightsUnavailableError, match="does not exist"):
        build_model("rsitmd", "/nonexistent/weights.bin", arch=str(tiny_arch_path))
    with pytest.raises(WeightsUnavailableError, match="neither"):
        build_model("rsitmd", "no_such_tag", arch="ViT-B-32")


def test_broken_checkpoints_give_clear_errors(tmp_path, tiny_model) -> None:
    with pytest.raises(CheckpointError, match="config.json is missing"):
        load_checkpoint(tmp_path)
    save_checkpoint(tiny_model, tmp_path / "c")
    (tmp_path / "c" / "adapters.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="adapter weights"):
        load_checkpoint(tmp_path / "c")
    save_checkpoint(tiny_model, tmp_path / "d")
    meta = json.loads((tmp_path / "d" / "config.json").read_text())
    meta["fingerprint"] = "0" * 64
    (tmp_path / "d" / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="fingerprint"):
        load_checkpoint(tmp_path / "d")


def test_zero_shot_model_is_base_clip_and_truncates(tiny_arch_path) -> None:
    model = load_model(None, "random", arch=str(tiny_arch_path))
    assert model.config.text_adapter_causal and model.truncation_is_exact()
