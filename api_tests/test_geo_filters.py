"""Footprints near and across the antimeridian, a coarse scene covering the world, and what the API does with
them: RFC 7946 winding on every way a footprint leaves the server (JSON hits, GeoJSON read back by GDAL,
scene metadata), bboxes across ±180°, and the GSD and scene filters, all against a real server over a store the
real indexer built from rasters written with rasterio."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pyogrio
import pytest
import rasterio
import shapely
import shapely.geometry
from api_support import DATA, LiveServer, build_index, model_env, start_server
from PIL import Image
from rasterio.transform import from_origin

from index.layout import content_id, file_sha256

QUERY = "many buildings and green trees near a road"
# name: (CRS, top-left x, top-left y, pixel size, width, height)
RASTERS = {
    "dateline.tif": ("EPSG:32660", 820000.0, 1110000.0, 312.5, 64, 64),  # UTM 60N, crosses 180° at x ≈ 829 km
    "east.tif": ("EPSG:4326", 179.5, 10.0, 0.001, 64, 64),
    "west.tif": ("EPSG:4326", -179.6, 10.0, 0.001, 64, 64),
    "world.tif": ("EPSG:4326", -180.0, 90.0, 5.625, 64, 32),  # the whole Earth at 626 km a pixel
    "fine.tif": ("EPSG:32633", 500000.0, 4000000.0, 10.0, 64, 64),
}
NEAR_DATELINE = {"dateline.tif", "east.tif", "west.tif"}


def write_raster(path: Path, source: Path, crs: str, x: float, y: float, pixel: float, width: int, height: int):
    pixels = np.asarray(Image.open(source).convert("RGB").resize((width, height))).transpose(2, 0, 1)
    profile = {
        "driver": "GTiff", "width": width, "height": height, "count": 3, "dtype": "uint8", "crs": crs,
        "transform": from_origin(x, y, pixel, pixel),
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(pixels)


@pytest.fixture(scope="module")
def places(tmp_path_factory: pytest.TempPathFactory, tiny_arch_file: Path) -> Iterator[tuple[LiveServer, Path]]:
    """(server, images folder): the RASTERS and one plain JPEG, indexed by the indexer's own job."""
    tmp = tmp_path_factory.mktemp("places")
    images = tmp / "images"
    images.mkdir()
    entries = json.loads((DATA / "rsicd" / "rsicd_test.json").read_text())[: len(RASTERS) + 1]
    for entry, (name, spec) in zip(entries, RASTERS.items(), strict=False):
        write_raster(images / name, DATA / "rsicd" / entry["image"], *spec)
    shutil.copy2(DATA / "rsicd" / entries[-1]["image"], images / "plain.jpg")
    captions = tmp / "captions.json"
    captions.write_text(json.dumps(entries))
    build_index(tmp / "index", images, captions, tiny_arch_file)
    env = {**model_env(tiny_arch_file), "POSAPL_INDEX_ROOT": str(tmp / "index"), "POSAPL_RERANK_DEFAULT": "none"}
    live = start_server(tmp, "places", env)
    yield live, images
    live.stop()


@pytest.fixture()
def api(places: tuple[LiveServer, Path]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=places[0].url, timeout=60) as http:
        yield http


def search(client: httpx.Client, **filters) -> list[str]:
    response = client.post("/v1/search/text", json={"query": QUERY, "k": 20, "filters": filters})
    assert response.status_code == 200, response.text
    return sorted(hit["path"] for hit in response.json()["results"])


def listed(client: httpx.Client, **params) -> list[str]:
    response = client.get("/v1/search/text", params={"q": QUERY, "k": 20, **params})
    assert response.status_code == 200, response.text
    return sorted(hit["path"] for hit in response.json()["results"])


def scene_id(images: Path, name: str) -> int:
    return content_id(file_sha256(images / name))


def assert_rfc7946_winding(geometry: dict) -> int:
    """Every exterior ring counter-clockwise and every hole clockwise; returns how many rings were checked."""
    shape = shapely.geometry.shape(geometry)
    rings = 0
    for polygon in shapely.get_parts(shape):
        assert polygon.geom_type == "Polygon", geometry["type"]
        assert polygon.exterior.is_ccw, f"clockwise exterior ring in {geometry}"
        assert not any(hole.is_ccw for hole in polygon.interiors), f"counter-clockwise hole in {geometry}"
        rings += 1 + len(polygon.interiors)
    return rings


def test_every_footprint_leaves_the_server_with_rfc7946_winding(
    api: httpx.Client, places: tuple[LiveServer, Path], tmp_path: Path
) -> None:
    hits = api.post("/v1/search/text", json={"query": QUERY, "k": 20}).json()["results"]
    assert len(hits) == len(RASTERS) + 1
    footprints = {hit["path"]: hit["footprint"] for hit in hits}
    assert footprints["plain.jpg"] is None
    assert footprints["dateline.tif"]["type"] == "MultiPolygon"  # split at 180°: both parts are checked
    assert sum(assert_rfc7946_winding(footprints[name]) for name in RASTERS) == len(RASTERS) + 1
    for name in RASTERS:
        scene = api.get(f"/v1/scenes/{scene_id(places[1], name)}").json()
        assert_rfc7946_winding(scene["footprint"])
    response = api.post("/v1/search/text?format=geojson", json={"query": QUERY, "k": 20})
    features = response.json()["features"]
    for feature in features:
        if feature["geometry"] is not None:
            assert_rfc7946_winding(feature["geometry"])
    saved = tmp_path / "results.geojson"
    saved.write_bytes(response.content)
    frame = pyogrio.read_dataframe(saved)  # GDAL's GeoJSON driver reads it as it is
    assert len(frame) == len(RASTERS) + 1
    assert sorted(frame["path"]) == sorted([*RASTERS, "plain.jpg"])
    assert int(frame.geometry.notna().sum()) == len(RASTERS)
    dateline = frame.geometry[list(frame["path"]).index("dateline.tif")]
    assert dateline.geom_type == "MultiPolygon" and dateline.is_valid


def test_bbox_with_west_greater_than_east_crosses_the_antimeridian(api: httpx.Client) -> None:
    across = [179.0, 5.0, -179.0, 15.0]
    assert search(api, bbox=across) == sorted([*NEAR_DATELINE, "world.tif"])
    assert listed(api, bbox="179,5,-179,15") == sorted([*NEAR_DATELINE, "world.tif"])
    # only the dateline scene's two parts reach within 0.05° of 180° there
    assert search(api, bbox=[179.95, 9.9, -179.95, 10.0], gsd_max=1000.0) == ["dateline.tif"]
    # the same numbers west <= east: the long way round, through Greenwich
    assert search(api, bbox=[-179.0, 5.0, 179.0, 15.0]) == ["world.tif"]
    # [2, 0, 1, 1] was refused as "min > max": it is the box from 2°E eastwards across 180° to 1°E
    assert search(api, bbox=[2.0, 0.0, 1.0, 1.0]) == ["world.tif"]
    # each side alone
    assert search(api, bbox=[179.4, 9.9, 179.6, 10.0]) == ["east.tif", "world.tif"]
    assert search(api, bbox=[-179.6, 9.9, -179.5, 10.0]) == ["west.tif", "world.tif"]


@pytest.mark.parametrize(
    "bbox",
    [[10.0, 0.0, 10.0, 1.0], [180.0, 0.0, -180.0, 1.0], [0.0, 5.0, 1.0, 5.0]],
    ids=["no-width", "no-width-across-180", "no-height"],
)
def test_zero_area_bbox_is_422_suggesting_a_point(api: httpx.Client, bbox: list[float]) -> None:
    response = api.post("/v1/search/text", json={"query": QUERY, "filters": {"bbox": bbox}})
    assert response.status_code == 422, response.text
    assert "zero area" in response.json()["message"] and "Point" in response.json()["message"]
    response = api.get("/v1/search/text", params={"q": QUERY, "bbox": ",".join(map(str, bbox))})
    assert response.status_code == 422 and "zero area" in response.json()["message"], response.text


def test_gsd_filters_keep_a_coarse_world_scene_from_burying_the_results(api: httpx.Client) -> None:
    georeferenced = sorted(RASTERS)
    assert search(api, bbox=[-180, -90, 180, 90]) == georeferenced
    assert search(api, gsd_max=1000.0) == sorted(set(RASTERS) - {"world.tif"})
    assert search(api, gsd_min=1000.0) == ["world.tif"]
    assert search(api, gsd_min=100.0, gsd_max=400.0) == sorted(NEAR_DATELINE)  # 110 m, 110 m and 312.5 m
    assert search(api, gsd_max=20.0) == ["fine.tif"]
    assert listed(api, gsd_max="1000") == sorted(set(RASTERS) - {"world.tif"})
    assert listed(api, gsd_min="100", gsd_max="400", bbox="179.4,9.9,179.6,10") == ["east.tif"]


def test_scene_filters_include_and_exclude_exactly(api: httpx.Client, places: tuple[LiveServer, Path]) -> None:
    images = places[1]
    world, fine, plain = (scene_id(images, name) for name in ("world.tif", "fine.tif", "plain.jpg"))
    everything = sorted([*RASTERS, "plain.jpg"])
    assert search(api, scenes=[fine]) == ["fine.tif"]
    assert search(api, scenes=[str(fine), plain]) == ["fine.tif", "plain.jpg"]  # decimal strings for JavaScript
    assert search(api, exclude_scenes=[world]) == sorted(set(everything) - {"world.tif"})
    assert search(api, bbox=[-1, -1, 20, 40], exclude_scenes=[str(world)]) == ["fine.tif"]
    assert listed(api, scenes=f"{fine},{plain}") == ["fine.tif", "plain.jpg"]
    assert listed(api, exclude_scenes=str(world)) == sorted(set(everything) - {"world.tif"})


@pytest.mark.parametrize(
    ("filters", "needle"),
    [
        ({"gsd_min": 5.0, "gsd_max": 1.0}, "gsd_min is greater than gsd_max"),
        ({"gsd_min": -1.0}, "greater than or equal to 0"),
        ({"gsd_max": "10"}, "without quotes"),
        ({"scenes": ["012"]}, "decimal strings without sign or leading zeros"),
        ({"scenes": [-1]}, "scene ids are between 0"),
        ({"scenes": []}, "at least 1"),
        ({"exclude_scenes": [True]}, "scene ids are integers"),
    ],
)
def test_bad_gsd_and_scene_filters_are_422_naming_the_problem(api: httpx.Client, filters: dict, needle: str) -> None:
    response = api.post("/v1/search/text", json={"query": QUERY, "filters": filters})
    assert response.status_code == 422, response.text
    assert needle in response.json()["message"]


@pytest.mark.parametrize(
    ("params", "needle"),
    [({"gsd_min": "1_0"}, "plain decimal"), ({"gsd_max": "inf"}, "plain decimal"), ({"scenes": "1,+2"}, "scenes")],
)
def test_bad_get_gsd_and_scene_filters_are_422(api: httpx.Client, params: dict, needle: str) -> None:
    response = api.get("/v1/search/text", params={"q": QUERY, **params})
    assert response.status_code == 422, response.text
    assert needle in response.json()["message"]
