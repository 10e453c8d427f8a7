"""`posapl index export`: every item of the live version as GeoParquet (validated), FlatGeobuf and GeoJSON, read
back with geopandas/pyogrio and compared with the store and with the server's scenes listing."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import geopandas as gpd
import geoparquet_validator
import httpx
import numpy as np
import pyarrow.parquet as pq
import pyogrio
import pytest
import shapely
from api_support import REPO

from index.store import open_version


def export(root: Path, out: Path, fmt: str, *extra: str) -> None:
    command = [sys.executable, "-m", "posapl.cli", "index", "export", "--root", str(root), "--format", fmt, str(out)]
    done = subprocess.run([*command, *extra], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def exported(stac_store, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("export")
    files = {"geoparquet": out / "items.parquet", "flatgeobuf": out / "items.fgb", "geojson": out / "items.geojson"}
    export(stac_store[0], files["geoparquet"], "geoparquet", "--embeddings")
    export(stac_store[0], files["flatgeobuf"], "flatgeobuf")
    export(stac_store[0], files["geojson"], "geojson")
    return files


@pytest.fixture()
def client(stac_server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stac_server.url, timeout=60) as http:
        yield http


def stored_footprints(root: Path) -> dict[str, shapely.Geometry | None]:
    with open_version(root) as version:
        return {
            str(r.id): None if r.footprint is None else shapely.from_geojson(r.footprint) for r in version.all_images()
        }


def test_geoparquet_is_valid_1_1_and_matches_the_store(exported, stac_store) -> None:
    report = geoparquet_validator.check(str(exported["geoparquet"]))
    assert geoparquet_validator.failed(report) == [], report
    assert b'"version": "1.1.0"' in pq.read_schema(exported["geoparquet"]).metadata[b"geo"]
    frame = gpd.read_parquet(exported["geoparquet"])
    stored = stored_footprints(stac_store[0])
    assert sorted(frame["id"]) == sorted(stored) and len(frame) == len(stored)
    assert (frame["item_id"].astype(str) == frame["id"]).all()
    assert frame.crs.to_epsg() == 4326
    for item_id, geometry in zip(frame["id"], frame.geometry, strict=True):
        if stored[item_id] is None:
            assert geometry is None
        else:
            assert geometry.equals(stored[item_id])
            assert shapely.is_ccw(geometry.exterior)  # RFC 7946 winding
    assert frame.geometry.isna().sum() == 4  # the plain JPEGs have no georeferencing
    assert (frame.loc[frame["window_width"] < 448, "path"] == "scene.tif").any()  # windows of the large scene
    assert set(frame["time_source"]) <= {"metadata", "filename", "file_mtime"}
    assert frame["gsd"].notna().sum() == len(frame) - 4


def test_embeddings_round_trip_equal_to_the_stored_vectors(exported, stac_store) -> None:
    table = pq.read_table(exported["geoparquet"], columns=["item_id", "embedding"])
    assert str(table.schema.field("embedding").type).startswith("fixed_size_list<element: float>")
    ids = table.column("item_id").to_numpy()
    vectors = np.asarray(table.column("embedding").combine_chunks().flatten()).reshape(len(ids), -1)
    with open_version(stac_store[0]) as version:
        np.testing.assert_array_equal(vectors, version.image_vectors(ids))


def test_footprints_agree_with_the_scenes_listing(exported, client: httpx.Client) -> None:
    frame = gpd.read_parquet(exported["geoparquet"])
    scenes = client.get("/v1/scenes", params={"limit": 1000}).json()["scenes"]
    assert {str(s["id"]) for s in scenes} == set(frame["scene_id"].astype(str))
    for scene in scenes:
        rows = frame[frame["scene_id"] == scene["id"]]
        assert len(rows) == scene["items"]
        if scene["footprint"] is None:
            assert rows.geometry.isna().all()
        else:  # every tile lies within its scene (up to the curvature of reprojected edges)
            outline = shapely.geometry.shape(scene["footprint"])
            assert all(g.difference(outline).area <= 1e-6 * g.area for g in rows.geometry)


def test_flatgeobuf_and_geojson_open_with_pyogrio(exported) -> None:
    parquet = gpd.read_parquet(exported["geoparquet"]).set_index("id")
    for fmt in ("flatgeobuf", "geojson"):
        frame = pyogrio.read_dataframe(exported[fmt]).set_index("id")
        assert sorted(frame.index) == sorted(parquet.index)
        for item_id, geometry in frame.geometry.items():
            expected = parquet.geometry[item_id]
            assert (geometry is None) == (expected is None), fmt
            if geometry is not None:
                assert geometry.equals_exact(expected, 1e-7), fmt


def test_embeddings_need_geoparquet(stac_store, tmp_path: Path) -> None:
    command = [sys.executable, "-m", "posapl.cli", "index", "export", "--root", str(stac_store[0]),
               "--format", "geojson", str(tmp_path / "x.geojson"), "--embeddings"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 1 and "--embeddings needs --format geoparquet" in done.stderr
