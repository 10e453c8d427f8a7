"""Fixtures for black-box HTTP tests: a small real index (RSICD test images, tiny random model) and a real
uvicorn server process per scenario."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from api_support import ADMIN_TOKEN, DATA, N_IMAGES, REPO, LiveServer, build_index, model_env, start_server

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _unit_test_helpers():
    """tests/conftest.py owns the tiny architecture; load it by path (both folders are rootless test dirs)."""
    spec = importlib.util.spec_from_file_location("posapl_unit_conftest", REPO / "tests" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def tiny_arch_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _unit_test_helpers().write_tiny_arch(tmp_path_factory.mktemp("arch"))


@pytest.fixture(scope="session")
def archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The first N_IMAGES RSICD test images and an annotation file with their captions (the caption bank)."""
    rsicd = DATA / "rsicd"
    if not (rsicd / "rsicd_test.json").is_file():
        pytest.fail(f"shared test data not found at {rsicd}")
    entries = json.loads((rsicd / "rsicd_test.json").read_text())[:N_IMAGES]
    folder = tmp_path_factory.mktemp("archive")
    images = folder / "images"
    images.mkdir()
    for entry in entries:
        shutil.copy2(rsicd / entry["image"], images / Path(entry["image"]).name)
    captions = folder / "captions.json"
    captions.write_text(json.dumps(entries))
    return images, captions


@pytest.fixture(scope="session")
def index_root(tmp_path_factory: pytest.TempPathFactory, archive: tuple[Path, Path], tiny_arch_file: Path) -> Path:
    root = tmp_path_factory.mktemp("index")
    build_index(root, *archive, tiny_arch_file)
    return root


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, index_root: Path, tiny_arch_file: Path) -> Iterator[LiveServer]:
    env = {
        **model_env(tiny_arch_file),
        "POSAPL_INDEX_ROOT": str(index_root),
        "POSAPL_ADMIN_TOKEN": ADMIN_TOKEN,
        "POSAPL_RELOAD_POLL_S": "0.5",
        "POSAPL_RERANK_DEFAULT": "multivariate",
    }
    live = start_server(tmp_path_factory.mktemp("server"), "main", env)
    yield live
    live.stop()


@pytest.fixture()
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as http:
        yield http


@pytest.fixture(scope="session")
def indexed_image(index_root: Path, archive: tuple[Path, Path]) -> tuple[int, Path]:
    """(id, file) of one archive image, from the index's own metadata."""
    from index.store import open_version

    with open_version(index_root) as version:
        image_id = int(version.image_ids()[0])
        return image_id, version.image_path(image_id)
