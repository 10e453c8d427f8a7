"""Every command loads a checkpoint from its path alone: the base model (architecture and weights) is the one
its config.json names, here a tiny architecture with `random` weights, not the default open_clip tag."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import torch
from index_helpers import copy_images, rsicd_names

from index.store import open_version
from posapl.checkpoint import CheckpointError, load_model, save_checkpoint
from posapl.model import build_model


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory, tiny_arch_path: Path) -> tuple[Path, str]:
    """What `posapl train --pretrained random --arch tiny.json` saves: non-zero adapters on a random base."""
    model = build_model("rsicd", "random", arch=str(tiny_arch_path))
    with torch.no_grad():
        for parameter in model.adapters.parameters():
            parameter.add_(0.01)
    path = save_checkpoint(model, tmp_path_factory.mktemp("run") / "best")
    assert json.loads((path / "config.json").read_text())["base"]["pretrained"] == "random"
    return path, model.fingerprint()


def _env(tmp: Path) -> dict[str, str]:
    """No model setting from the environment, and offline: the default tag would fail at once."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSAPL_")}
    return {**env, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp / "hf"), "XDG_CACHE_HOME": str(tmp / "cache")}


def test_index_build_and_serve_need_only_the_checkpoint_path(checkpoint: tuple[Path, str], tmp_path: Path) -> None:
    path, fingerprint = checkpoint
    images = tmp_path / "archive"
    copy_images(rsicd_names(3), images)
    root = tmp_path / "store"
    build = subprocess.run(
        [sys.executable, "-m", "posapl.cli", "index", "build", "--images", str(images), "--out", str(root),
         "--checkpoint", str(path), "--no-progress", "--num-workers", "0", "--device", "cpu"],
        cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=600,
    )
    assert build.returncode == 0, build.stderr
    with open_version(root) as version:
        assert version.manifest.fingerprint == fingerprint
    copy_images(rsicd_names(1, start=10), images)
    update = subprocess.run(  # the nightly update loads the model from the store's config.json: the path only
        [sys.executable, "-m", "posapl.cli", "index", "update", "--root", str(root), "--no-progress",
         "--num-workers", "0", "--device", "cpu"],
        cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=600,
    )
    assert update.returncode == 0, update.stderr
    with open_version(root) as version:
        assert version.number == 2 and version.manifest.fingerprint == fingerprint

    port = _free_port()
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "posapl.cli", "serve", "--root", str(root), "--checkpoint", str(path),
             "--device", "cpu", "--port", str(port)],
            cwd=tmp_path, env=_env(tmp_path), stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 300
        ready = False
        while not ready and server.poll() is None and time.monotonic() < deadline:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
            except httpx.TransportError:
                time.sleep(0.5)
        assert ready, log.read_text()
        found = httpx.post(f"http://127.0.0.1:{port}/v1/search/text", json={"query": "a plane", "k": 4}, timeout=60)
        assert found.status_code == 200 and len(found.json()["results"]) == 4
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_explicit_settings_still_apply_to_a_checkpoint(
    checkpoint: tuple[Path, str], tmp_path: Path, tiny_arch_path: Path
) -> None:
    path, fingerprint = checkpoint
    assert load_model(path).fingerprint() == fingerprint  # the path alone
    assert load_model(path, arch=str(tiny_arch_path)).fingerprint() == fingerprint  # its own arch, named again
    with pytest.raises(CheckpointError, match="not 'ViT-B-32'"):
        load_model(path, arch="ViT-B-32")
    # An explicit weights file still says where the base weights come from (an offline copy of the tag's).
    donor = build_model("rsicd", "random", arch=str(tiny_arch_path), seed=3)
    weights = tmp_path / "copy.bin"
    torch.save(donor.clip.state_dict(), weights)
    loaded = load_model(path, pretrained=str(weights))
    assert loaded.fingerprint() == fingerprint
    assert all(torch.equal(a, b) for a, b in zip(loaded.clip.state_dict().values(), donor.clip.state_dict().values()))


def test_a_relative_arch_file_names_one_model_for_index_and_service(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`posapl serve --images DIR --arch my.json` builds with the index settings and serves with the service's:
    both must name the file alike, or the fingerprints differ and the server refuses the index it just built."""
    from index.settings import IndexSettings
    from service.settings import ServiceSettings

    repo = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(repo)
    relative = "examples/tiny-vit.json"
    served = ServiceSettings(arch=relative, pretrained="random")
    indexed = IndexSettings(root=tmp_path, images=[tmp_path], arch=relative, pretrained="random").store_config()
    assert served.arch == indexed.arch == str(repo / relative)
    assert load_model(None, served.pretrained, served.preset, served.arch).fingerprint() == load_model(
        indexed.checkpoint, indexed.pretrained, indexed.preset, indexed.arch
    ).fingerprint()
