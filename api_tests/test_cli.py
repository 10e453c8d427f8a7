"""`posapl serve` refuses clearly, with exit code 2, when it cannot start."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


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
