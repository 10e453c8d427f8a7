"""Filters are exact: they select every matching image before ranking, on an approximate (IVF) index too.

The probe this guards against: with `min_mtime` matching 5 new images that rank outside the top K' of the
whole archive, k=10 returned 0 of them (filters used to see only the top K' candidates)."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tifffile
from api_support import DATA, LiveServer, model_env, start_server
from rasterio.warp import transform_bounds

COUNT = 400  # RSICD images: well above K' = 100, so an image can rank outside every query's top K'
OLD, GEO_A, GEO_B, NEW = 1.0e9, 1.2e9, 1.3e9, 1.7e9  # mtimes
QUERIES = [
    "Many green trees are around a white building near a river.",
    "an airport with many planes parked next to a long building",
    "a bare land with some roads",
]


def write_geotiff(path: Path, east: float, seed: int) -> tuple[float, float, float, float]:
    """A 64x48 4-band uint16 GeoTIFF in UTM 33N, 10 m pixels, top-left at (east, 4000000); returns its bounds."""
    data = np.random.default_rng(seed).integers(0, 60000, size=(4, 48, 64), dtype=np.uint16)
    tifffile.imwrite(
        path,
        data,
        photometric="minisblack",
        planarconfig="separate",
        extratags=[
            (33550, "d", 3, (10.0, 10.0, 0.0), False),
            (33922, "d", 6, (0.0, 0.0, 0.0, east, 4000000.0, 0.0), False),
            (34735, "H", 16, (1, 1, 0, 3, 1024, 0, 1, 1, 1025, 0, 1, 1, 3072, 0, 1, 32633), False),
        ],
    )
    return (east, 4000000.0 - 480.0, east + 640.0, 4000000.0)


def index_settings(root: Path, images: Path, arch: Path, captions: Path | None, **store: object):
    from index.settings import IndexSettings

    return IndexSettings(
        root=root, images=[images], captions=[captions] if captions else [], pretrained="random", arch=str(arch),
        preset="rsitmd", device="cpu", num_workers=0, progress=False, **store,
    )


def wait_for_version(client: httpx.Client, number: int, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while client.get("/v1/index").json()["version"] != number:
        assert time.monotonic() < deadline, f"server did not switch to version {number}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def filtered_store(
    tmp_path_factory: pytest.TempPathFactory, tiny_arch_file: Path
) -> Iterator[tuple[LiveServer, Path, Path, Path]]:
    """COUNT old RSICD images + 3 GeoTIFFs in a store on an IVF index (auto would choose exact search here)."""
    from index.job import run_update

    tmp = tmp_path_factory.mktemp("filters")
    images = tmp / "images"
    images.mkdir()
    entries = json.loads((DATA / "rsicd" / "rsicd_test.json").read_text())[:COUNT]
    for entry in entries:
        target = images / Path(entry["image"]).name
        shutil.copy2(DATA / "rsicd" / entry["image"], target)
        os.utime(target, (OLD, OLD))
    for n, (east, mtime) in enumerate([(500000.0, GEO_A), (520000.0, GEO_B), (540000.0, GEO_B)]):
        write_geotiff(images / f"geo{n}.tif", east, n)
        os.utime(images / f"geo{n}.tif", (mtime, mtime))
    captions = tmp / "captions.json"
    captions.write_text(json.dumps(entries))
    root = tmp / "index"
    settings = index_settings(root, images, tiny_arch_file, captions, index_kind="ivf")
    run_update(root, settings, settings.store_config())
    env = {**model_env(tiny_arch_file), "POSAPL_INDEX_ROOT": str(root), "POSAPL_RELOAD_POLL_S": "0.2"}
    live = start_server(tmp, "filters", env)
    yield live, root, images, tiny_arch_file
    live.stop()


@pytest.fixture(scope="module")
def client(filtered_store) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=filtered_store[0].url, timeout=60) as http:
        yield http


def search(client: httpx.Client, query: str, **body) -> dict:
    response = client.post("/v1/search/text", json={"query": query, **body})
    assert response.status_code == 200, response.text
    return response.json()


def test_index_is_approximate_with_recorded_recall(client: httpx.Client, filtered_store) -> None:
    from index.store import open_version

    info = client.get("/v1/index").json()["image_index"]
    assert info["kind"] == "ivf" and info["reason"] == "requested 'ivf'"
    assert info["nlist"] >= 2 and 1 <= info["nprobe"] <= info["nlist"]
    assert info["recall"] >= 0.99 and info["recall_k"] == 100
    assert "caption-bank" in info["tuning_queries"]
    with open_version(filtered_store[1]) as version:
        assert version.manifest.index["recall"] == info["recall"]
        assert version.manifest.index["nprobe"] == info["nprobe"]


def test_min_mtime_returns_every_new_image_even_outside_the_top_candidates(client: httpx.Client, filtered_store):
    """The probe: 5 images that rank outside every query's top 100 get a new mtime; k=10 returns all 5."""
    from index.job import run_update

    _, root, images, arch = filtered_store
    ranked: set[int] = set()
    for query in QUERIES:
        ranked |= {hit["id"] for hit in search(client, query, k=100, rerank="none")["results"]}
    paths = {hit["id"]: hit["path"] for hit in search(client, QUERIES[0], k=100, rerank="none")["results"]}
    from index.store import open_version

    with open_version(root) as version:
        outside = [r for r in version.all_images() if r.id not in ranked and r.path.endswith(".jpg")]
        before = version.number
    assert len(outside) >= 5, "the archive is too small for the probe"
    chosen = outside[:5]
    for record in chosen:
        os.utime(images / record.path, (NEW, NEW))
    run_update(root, index_settings(root, images, arch, None))
    wait_for_version(client, before + 1)
    assert not {r.id for r in chosen} & set(paths)
    want = {r.id for r in chosen}
    for query in QUERIES:
        for method in ("none", "multivariate"):
            body = search(client, query, k=10, rerank=method, filters={"min_mtime": 1.5e9})
            assert {hit["id"] for hit in body["results"]} == want
            assert body["matched"] == 5
            assert body["rerank"] == method and body["rerank_note"] is None
    unfiltered = search(client, QUERIES[0], k=10)
    assert unfiltered["matched"] is None and len(unfiltered["results"]) == 10


def test_bbox_and_combined_filters_select_exactly(client: httpx.Client) -> None:
    def ids(**filters) -> tuple[list[str], int]:
        body = search(client, QUERIES[1], k=10, filters=filters)
        return sorted(hit["path"] for hit in body["results"]), body["matched"]

    # native bounds: geo0 x 500000-500640, geo1 520000-520640, geo2 540000-540640; y 3999520-4000000 (UTM 33N);
    # the filter takes lon/lat
    def lonlat(min_x: float, max_x: float) -> list[float]:
        return list(transform_bounds("EPSG:32633", "EPSG:4326", min_x, 3999000, max_x, 4001000))

    assert ids(bbox=lonlat(519000, 545000)) == (["geo1.tif", "geo2.tif"], 2)
    assert ids(bbox=lonlat(499000, 521000), min_mtime=1.25e9) == (["geo1.tif"], 1)
    assert ids(bbox=lonlat(499000, 545000), max_mtime=1.25e9) == (["geo0.tif"], 1)
    assert ids(bbox=[0, 0, 10, 10]) == ([], 0)
    in_window = search(client, QUERIES[1], k=10, filters={"min_mtime": 1.1e9, "max_mtime": 1.4e9})
    assert in_window["matched"] == 3 and len(in_window["results"]) == 3


def test_rerank_note_says_why_no_rerank_was_applied(client: httpx.Client) -> None:
    body = search(client, QUERIES[0], k=5, rerank="multivariate", filters={"max_mtime": 1.0})
    assert body["results"] == [] and body["matched"] == 0
    assert body["rerank"] == "none" and "no candidates" in body["rerank_note"]
    assert search(client, QUERIES[0], k=5, rerank="none")["rerank_note"] is None


def test_rerank_note_without_a_caption_bank(tmp_path: Path, tiny_arch_file: Path, filtered_store) -> None:
    from index.job import run_update

    images = tmp_path / "images"
    images.mkdir()
    for path in sorted(filtered_store[2].glob("*.jpg"))[:12]:
        shutil.copy2(path, images / path.name)
    root = tmp_path / "index"
    settings = index_settings(root, images, tiny_arch_file, None)
    run_update(root, settings, settings.store_config())
    live = start_server(tmp_path, "no-bank", {**model_env(tiny_arch_file), "POSAPL_INDEX_ROOT": str(root)})
    try:
        with httpx.Client(base_url=live.url, timeout=60) as http:
            body = search(http, QUERIES[0], k=5, rerank="multivariate")
            assert len(body["results"]) == 5 and body["rerank"] == "none"
            assert "no caption bank" in body["rerank_note"]
            assert http.get("/v1/index").json()["image_index"]["kind"] == "flat"
    finally:
        live.stop()
