"""Shared fixtures: a tiny open_clip architecture with random weights, so no test downloads anything."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
# The shared data is found at ../shared/data, which may be a folder or a symlink; POSAPL_TEST_DATA points the
# tests at another copy (e.g. through a symlink, to check that no test compares resolved with unresolved paths).
DATA = Path(os.environ.get("POSAPL_TEST_DATA") or REPO.parent / "shared" / "data")

# Eight blocks so Side Fusion taps the reference's pattern (blocks L-7, L-5, L-3, L-1); the full CLIP
# vocabulary and context length so the real tokenizer applies. The same file is the README's smoke-run model.
TINY_ARCH_FILE = REPO / "examples" / "tiny-vit.json"
TINY_ARCH = json.loads(TINY_ARCH_FILE.read_text())


def write_tiny_arch(directory: Path) -> Path:
    path = directory / "posapl-tiny.json"
    path.write_text(json.dumps(TINY_ARCH))
    return path


@pytest.fixture(scope="session")
def tiny_arch_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_arch(tmp_path_factory.mktemp("arch"))


@pytest.fixture(scope="session")
def tiny_model(tiny_arch_path: Path):
    from posapl.model import build_model

    return build_model("rsicd", "random", arch=str(tiny_arch_path))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA.is_dir():
        pytest.fail(f"shared test data not found at {DATA}")
    return DATA


@pytest.fixture(scope="session")
def pos_tagger():
    from posapl.pos import PosTagger

    return PosTagger()
