"""`posapl serve` refuses clearly, with exit code 2, when it cannot start."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
from api_support import free_port


def serve(*args: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp / "hf"), "XDG_CACHE_HOME": str(tmp / "cache")}
    return subprocess.run(
        [sys.executable, "-m", "posapl.cli", "serve", *args],
        cwd=tmp,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_offline_without_weights_explains_how_to_pass_them(tmp_path: Path) -> None:
    result = serve("--images", str(tmp_path), "--root", str(tmp_path / "index"), tmp=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "--pretrained /path/to/" in result.stderr and "--pretrained random" in result.stderr
    assert not (tmp_path / "index" / "CURRENT").exists()


def test_missing_weights_file(tmp_path: Path) -> None:
    result = serve("--pretrained", str(tmp_path / "nope.bin"), "--root", str(tmp_path / "index"), tmp=tmp_path)
    assert result.returncode == 2
    assert "nope.bin" in result.stderr and "does not exist" in result.stderr


def test_no_index_and_no_images(tmp_path: Path, tiny_arch_file: Path) -> None:
    result = serve(
        "--pretrained", "random", "--arch", str(tiny_arch_file), "--root", str(tmp_path / "index"), tmp=tmp_path
    )
    assert result.returncode == 2
    assert "pass --images DIR" in result.stderr


def test_serve_takes_the_model_from_the_store_and_says_how_to_add_a_folder(
    tmp_path: Path, index_root: Path, archive: tuple[Path, Path]
) -> None:
    """No model flags, offline: the store's config.json (random tiny model) is served, not the default tag
    (which would need a download); a new --images folder gets the exact command that adds it."""
    new_folder = tmp_path / "new-imagery"
    new_folder.mkdir()
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "POSAPL_DEVICE": "cpu"}
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "posapl.cli", "serve", "--root", str(index_root), "--images", str(archive[0]),
             "--images", str(new_folder), "--port", str(port)],
            cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 300
        ready = False
        while time.monotonic() < deadline and process.poll() is None and not ready:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
            except httpx.TransportError:
                time.sleep(0.5)
        assert ready, log.read_text()
    finally:
        process.terminate()
        process.wait(timeout=30)
    text = log.read_text()
    assert f"posapl index update --root {index_root} --add-images {new_folder.resolve()}" in text
    assert str(archive[0].resolve()) not in text.split("does not include")[1].split(";")[0]


def test_serve_refuses_a_model_setting_that_contradicts_the_store(tmp_path: Path, index_root: Path) -> None:
    result = serve("--root", str(index_root), "--preset", "rsicd", tmp=tmp_path)
    assert result.returncode == 2
    assert "built with another model" in result.stderr and "preset 'rsicd'" in result.stderr
    assert "'rsitmd'" in result.stderr


def test_unreachable_hub_gives_the_message_at_once_without_retries(tmp_path: Path) -> None:
    """Network down (the hub endpoint is a closed local port) and no offline flag: the first command must
    not retry the download for a minute; it prints the way out straight away."""
    closed = free_port()  # nothing listens there once the probe socket is closed
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(HF_ENDPOINT=f"http://127.0.0.1:{closed}", HF_HOME=str(tmp_path / "hf"), XDG_CACHE_HOME=str(tmp_path))
    result = subprocess.run(
        [sys.executable, "-m", "posapl.cli", "serve", "--images", str(tmp_path), "--root", str(tmp_path / "index")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 2, result.stderr
    assert f"127.0.0.1:{closed} is unreachable" in result.stderr
    assert "--pretrained /path/to/" in result.stderr and "--pretrained random" in result.stderr
    assert "retry" not in (result.stdout + result.stderr).lower()
