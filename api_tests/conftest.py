"""Fixtures for black-box HTTP tests: a small real index (RSICD test images, tiny random model) and a real
uvicorn server process per scenario."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from api_support import ADMIN_TOKEN, DATA, N_IMAGES, LiveServer, build_index, model_env, start_server, unit_test_module

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_arch_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return unit_test_module("conftest.py").write_tiny_arch(tmp_path_factory.mktemp("arch"))


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


@pytest.fixture(scope="session")
def stac_store(tmp_path_factory: pytest.TempPathFactory, tiny_arch_file: Path) -> tuple[Path, Path]:
    """(index root, images folder) for export and the STAC API: plain RSICD JPEGs (no georeferencing), small
    GeoTIFFs in three CRSs with acquisition times, and one scene large enough to be cut into windows."""
    from test_geo_search import RASTERS, write_raster

    tmp = tmp_path_factory.mktemp("stac")
    images = tmp / "images"
    images.mkdir()
    entries = json.loads((DATA / "rsicd" / "rsicd_test.json").read_text())[:10]
    for entry in entries[:4]:
        shutil.copy2(DATA / "rsicd" / entry["image"], images / Path(entry["image"]).name)
    for entry, (name, spec) in zip(entries[4:9], list(RASTERS.items())[1:], strict=True):
        write_raster(images / name, DATA / "rsicd" / entry["image"], *spec)
    write_raster(images / "scene.tif", DATA / "rsicd" / entries[9]["image"], "EPSG:32633", 520000.0, 4050000.0, 10.0,
                 "2018:03:01 09:00:00", size=448)
    captions = tmp / "captions.json"
    captions.write_text(json.dumps(entries))
    build_index(tmp / "index", images, captions, tiny_arch_file)
    return tmp / "index", images


@pytest.fixture(scope="session")
def stac_server(tmp_path_factory: pytest.TempPathFactory, stac_store, tiny_arch_file: Path) -> Iterator[LiveServer]:
    env = {
        **model_env(tiny_arch_file), "POSAPL_INDEX_ROOT": str(stac_store[0]), "POSAPL_RERANK_DEFAULT": "multivariate"
    }
    live = start_server(tmp_path_factory.mktemp("stac-server"), "stac", env)
    yield live
    live.stop()
