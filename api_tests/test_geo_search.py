"""Geographic search against a real server: lon/lat bbox and GeoJSON geometry filters over WGS84 footprints,
acquisition-time filters, GeoJSON output (validated, footprints checked against rasterio), and suppression of
overlapping tiles of one scene. The store is built by the real indexer from rasters written with rasterio."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import rasterio
import shapely
import shapely.geometry
from api_support import DATA, LiveServer, build_index, model_env, start_server
from geojson_pydantic import FeatureCollection
from PIL import Image
from rasterio.transform import from_origin
from rasterio.warp import transform_bounds
from test_browser import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    CORNERS_JS,
    WATCH_CSP,
    PageWatch,
    drag_on_map,
    start_drawing,
)

QUERY = "many buildings and green trees near a road"
# name: (CRS, top-left x, top-left y, pixel size, acquisition time in the TIFF DateTime tag)
RASTERS = {
    "utm_a.tif": ("EPSG:32633", 500000.0, 4000000.0, 10.0, "2019:05:01 10:00:00"),
    "utm_b.tif": ("EPSG:32633", 500640.0, 4000000.0, 10.0, "2020:05:01 10:00:00"),
    "utm_c.tif": ("EPSG:32633", 560000.0, 4100000.0, 10.0, "2021:05:01 10:00:00"),
    "wgs_d.tif": ("EPSG:4326", 10.0, 50.01, 0.0001, "2021:07:01 10:00:00"),
    "wgs_e.tif": ("EPSG:4326", 10.02, 50.01, 0.0001, "2022:07:01 10:00:00"),
    "merc_f.tif": ("EPSG:3857", -330000.0, 4865000.0, 20.0, "2022:09:01 10:00:00"),
}
PLAIN = 12  # RSICD JPEGs without georeferencing
PLAIN_MTIME = 1262304000.0  # 2010-01-01: a JPEG's time is its file time
SIZE = 64


def write_raster(
    path: Path, source: Path, crs: str, x: float, y: float, pixel: float, when: str, size: int = SIZE
) -> None:
    """A size x size RGB GeoTIFF with the pixels of a real RSICD image (so that embeddings differ)."""
    pixels = np.asarray(Image.open(source).convert("RGB").resize((size, size))).transpose(2, 0, 1)
    profile = {
        "driver": "GTiff", "width": size, "height": size, "count": 3, "dtype": "uint8", "crs": crs,
        "transform": from_origin(x, y, pixel, pixel),
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(pixels)
        dst.update_tags(TIFFTAG_DATETIME=when)


def wgs84_bounds(path: Path) -> tuple[float, float, float, float]:
    with rasterio.open(path) as src:
        return transform_bounds(src.crs, "EPSG:4326", *src.bounds, densify_pts=21)


def build_geo_archive(tmp: Path, rasters: dict, tiny_arch_file: Path) -> tuple[Path, Path]:
    """(index root, images folder) under `tmp`: PLAIN RSICD JPEGs dated 2010 by their file time, and `rasters`
    (name: write_raster's CRS, origin, pixel size and time) with the pixels of the next RSICD images, indexed by
    the indexer's own job."""
    images = tmp / "images"
    images.mkdir()
    entries = json.loads((DATA / "rsicd" / "rsicd_test.json").read_text())[: PLAIN + len(rasters)]
    for entry in entries[:PLAIN]:
        shutil.copy2(DATA / "rsicd" / entry["image"], images / Path(entry["image"]).name)
        os.utime(images / Path(entry["image"]).name, (PLAIN_MTIME, PLAIN_MTIME))  # their time: 2010, before all
    for entry, (name, spec) in zip(entries[PLAIN:], rasters.items(), strict=True):
        write_raster(images / name, DATA / "rsicd" / entry["image"], *spec)
    captions = tmp / "captions.json"
    captions.write_text(json.dumps(entries))
    build_index(tmp / "index", images, captions, tiny_arch_file)
    return tmp / "index", images


@pytest.fixture(scope="module")
def geo_archive(tmp_path_factory: pytest.TempPathFactory, tiny_arch_file: Path) -> tuple[Path, Path]:
    """(index root, images folder): PLAIN RSICD images and the RASTERS."""
    return build_geo_archive(tmp_path_factory.mktemp("geo"), RASTERS, tiny_arch_file)


@pytest.fixture(scope="module")
def geo_server(tmp_path_factory: pytest.TempPathFactory, geo_archive, tiny_arch_file: Path) -> Iterator[LiveServer]:
    env = {**model_env(tiny_arch_file), "POSAPL_INDEX_ROOT": str(geo_archive[0]), "POSAPL_RERANK_DEFAULT": "none"}
    live = start_server(tmp_path_factory.mktemp("geo-server"), "geo", env)
    yield live
    live.stop()


@pytest.fixture()
def geo(geo_server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=geo_server.url, timeout=60) as http:
        yield http


def search(client: httpx.Client, **body) -> dict:
    response = client.post("/v1/search/text", json={"query": QUERY, "k": 30, **body})
    assert response.status_code == 200, response.text
    return response.json()


def paths(body: dict) -> list[str]:
    return sorted(hit["path"] for hit in body["results"])


def test_geojson_output_is_valid_and_footprints_match_rasterio(geo: httpx.Client, geo_archive) -> None:
    images = geo_archive[1]
    response = geo.post(
        "/v1/search/text", json={"query": QUERY, "k": 30}, headers={"Accept": "application/geo+json"}
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/geo+json")
    collection = FeatureCollection.model_validate(response.json())
    features = response.json()["features"]
    assert len(collection.features) == PLAIN + len(RASTERS)
    assert [f["properties"]["rank"] for f in features] == list(range(1, len(features) + 1))
    scores = [f["properties"]["score"] for f in features]
    assert scores == sorted(scores, reverse=True)
    by_path = {f["properties"]["path"]: f for f in features}
    for name in RASTERS:
        feature = by_path[name]
        footprint = shapely.geometry.shape(feature["geometry"])
        assert footprint.bounds == pytest.approx(wgs84_bounds(images / name), abs=1e-7), name
        props = feature["properties"]
        assert props["image_url"] == f"{str(geo.base_url).rstrip('/')}/v1/images/{feature['id']}"
        assert props["view_url"].endswith("/view")
        assert props["thumbnail_url"].endswith("/thumbnail") and props["scene_id"]
        assert (props["window_x"], props["window_y"], props["window_width"]) == (0, 0, SIZE)
        assert props["time"].startswith(RASTERS[name][4][:4]) and props["gsd"] > 0
        assert props["time_source"] == "metadata"
    plain = [f for f in features if not f["properties"]["path"].endswith(".tif")]
    assert len(plain) == PLAIN and all(f["geometry"] is None for f in plain)
    by_mtime = [f["properties"]["time"] for f in plain if f["properties"]["time_source"] == "file_mtime"]
    assert by_mtime and set(by_mtime) == {"2010-01-01T00:00:00+00:00"}, "no date in RSICD names: EXIF, else mtime"
    sources = {hit["path"]: hit["time_source"] for hit in search(geo)["results"]}  # the JSON hits say it too
    assert sources == {f["properties"]["path"]: f["properties"]["time_source"] for f in features}
    # the same through format=geojson, on GET and on the upload endpoint
    listed = geo.get("/v1/search/text", params={"q": QUERY, "k": 5, "format": "geojson"})
    assert listed.headers["content-type"].startswith("application/geo+json")
    assert len(FeatureCollection.model_validate(listed.json()).features) == 5
    with open(images / "utm_a.tif", "rb") as handle:
        uploaded = geo.post("/v1/search/image?format=geojson", files={"file": ("a.tif", handle, "image/tiff")},
                            data={"k_images": "3"})
    assert uploaded.status_code == 200, uploaded.text
    first = FeatureCollection.model_validate(uploaded.json()).features[0]
    assert first.properties["path"] == "utm_a.tif" and first.geometry is not None
    assert geo.get("/v1/search/text", params={"q": QUERY, "format": "kml"}).status_code == 422
    assert "results" in geo.get("/v1/search/text", params={"q": QUERY}).json()  # JSON stays the default


def test_bbox_and_geometry_filters_select_by_wgs84_footprint(geo: httpx.Client, geo_archive) -> None:
    images = geo_archive[1]
    a, b = wgs84_bounds(images / "utm_a.tif"), wgs84_bounds(images / "utm_b.tif")
    # a box inside utm_a only (utm_b starts where utm_a ends)
    inside_a = [a[0] + 1e-4, a[1] + 1e-4, a[2] - 1e-3, a[3] - 1e-4]
    body = search(geo, filters={"bbox": inside_a})
    assert paths(body) == ["utm_a.tif"] and body["matched"] == 1
    both = [a[0], a[1], b[2], b[3]]
    assert paths(search(geo, filters={"bbox": both})) == ["utm_a.tif", "utm_b.tif"]
    europe = {"type": "Polygon", "coordinates": [[[5, 45], [20, 45], [20, 55], [5, 55], [5, 45]]]}
    assert paths(search(geo, filters={"intersects": europe})) == ["wgs_d.tif", "wgs_e.tif"]
    point_e = {"type": "Point", "coordinates": [10.0232, 50.0068]}
    assert paths(search(geo, filters={"intersects": point_e})) == ["wgs_e.tif"]
    # bbox and geometry together: their intersection
    assert paths(search(geo, filters={"intersects": europe, "bbox": [10.0, 49.0, 10.01, 51.0]})) == ["wgs_d.tif"]
    # the whole world holds every georeferenced item and no plain JPEG
    world = search(geo, filters={"bbox": [-180, -90, 180, 90]})
    assert paths(world) == sorted(RASTERS) and world["matched"] == len(RASTERS)
    # GET carries the same filter
    listed = geo.get("/v1/search/text", params={"q": QUERY, "k": 30, "bbox": ",".join(map(str, inside_a))})
    assert paths(listed.json()) == ["utm_a.tif"] and listed.json()["matched"] == 1


def test_time_filters_select_by_acquisition_time(geo: httpx.Client) -> None:
    assert paths(search(geo, filters={"time_from": "2021-01-01", "time_to": "2021-12-31"})) == [
        "utm_c.tif", "wgs_d.tif"
    ]
    # a date alone as time_to includes its whole day; a date-time with an offset is an instant
    assert paths(search(geo, filters={"time_from": "2022-07-01T11:00:00+01:00", "time_to": "2022-09-01"})) == [
        "merc_f.tif", "wgs_e.tif"
    ]
    assert paths(search(geo, filters={"time_from": "2022-07-01T11:00:01+01:00"})) == ["merc_f.tif"]
    combined = search(geo, filters={"time_to": "2020-12-31", "bbox": [-180, -90, 180, 90], "max_mtime": 4e9})
    assert paths(combined) == ["utm_a.tif", "utm_b.tif"] and combined["matched"] == 2
    listed = geo.get("/v1/search/text", params={"q": QUERY, "k": 30, "time_from": "2022-01-01"})
    assert paths(listed.json()) == ["merc_f.tif", "wgs_e.tif"]


@pytest.mark.parametrize(
    ("filters", "needle"),
    [
        ({"bbox": [200, 0, 201, 1]}, "longitudes"),
        ({"bbox": [0, -95, 1, 1]}, "latitudes"),
        ({"bbox": [0, 2, 1, 1]}, "south must be <= north"),
        ({"intersects": {"type": "Polygon", "coordinates": [[[0, 0], [1, 1]]]}}, "intersects"),
        ({"intersects": {"type": "Point", "coordinates": [0, 91]}}, "lat in [-90, 90]"),
        ({"intersects": {"type": "Circle", "coordinates": [0, 0]}}, "intersects"),
        ({"time_from": "last tuesday"}, "ISO-8601"),
        ({"time_from": "2022-01-02", "time_to": "2022-01-01"}, "time_from is after time_to"),
    ],
)
def test_bad_geo_filters_are_422_naming_the_problem(geo: httpx.Client, filters: dict, needle: str) -> None:
    response = geo.post("/v1/search/text", json={"query": QUERY, "filters": filters})
    assert response.status_code == 422, response.text
    assert needle in response.json()["message"]


def zig_zag(vertices: int) -> dict:
    """A closed ring of `vertices` random points: it crosses itself many times (the repair that used to run on
    such input took 15 s for 4.5 KB and 96 s for 7.5 KB)."""
    points = np.random.default_rng(7).uniform([10.0, 50.0], [10.05, 50.05], (vertices - 1, 2)).round(5).tolist()
    return {"type": "Polygon", "coordinates": [[*points, points[0]]]}


def circle(vertices: int) -> dict:
    """A valid polygon of `vertices` coordinates (the ring closes on its first point)."""
    angles = np.linspace(0.0, 2 * np.pi, vertices - 1, endpoint=False)
    ring = np.column_stack([10.0 + 0.01 * np.cos(angles), 50.0 + 0.01 * np.sin(angles)]).round(6).tolist()
    return {"type": "Polygon", "coordinates": [[*ring, ring[0]]]}


@pytest.mark.parametrize(
    ("geometry", "needle"),
    [
        ({"type": "Polygon", "coordinates": [[[10, 50], [10.1, 50.1], [10.1, 50], [10, 50.1], [10, 50]]]},
         "not a valid geometry: Self-intersection[10.05 50.05]"),
        (zig_zag(1500), "not a valid geometry: Self-intersection"),
        ({"type": "MultiPolygon", "coordinates": [circle(5)["coordinates"], circle(9)["coordinates"]]},
         "not a valid geometry: "),  # one part inside the other
        (circle(2001), "2001 coordinates, more than the limit of 2000"),
        ({"type": "MultiPoint", "coordinates": [[10 + i / 1000, 50] for i in range(101)]},
         "101 parts, more than the limit of 100"),
        ({"type": "GeometryCollection", "geometries": [{"type": "MultiPoint", "coordinates": [[10, 50]] * 60}] * 2},
         "120 parts, more than the limit of 100"),
    ],
    ids=["bow-tie", "zig-zag", "overlapping-parts", "vertices", "parts", "nested-parts"],
)
def test_unusable_geometry_is_422_naming_the_reason(geo: httpx.Client, geometry: dict, needle: str) -> None:
    """Invalid geometry is refused with GEOS's reason instead of being repaired at unbounded cost."""
    response = geo.post("/v1/search/text", json={"query": QUERY, "filters": {"intersects": geometry}})
    assert response.status_code == 422, response.text
    assert needle in response.json()["message"]


def test_geometries_at_the_limits_are_searched(geo: httpx.Client) -> None:
    assert paths(search(geo, filters={"intersects": circle(2000)})) == ["wgs_d.tif"]
    points = {"type": "MultiPoint", "coordinates": [[10.0001 + i / 1e6, 50.005] for i in range(100)]}
    assert paths(search(geo, filters={"intersects": points})) == ["wgs_d.tif"]


def test_non_finite_bbox_is_422(geo: httpx.Client) -> None:
    """1e999 is valid JSON that parses to infinity: a box must be finite."""
    body = json.dumps({"query": QUERY, "filters": {"bbox": [0, 0, "INF", 1]}}).replace('"INF"', "1e999")
    response = geo.post("/v1/search/text", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 422 and "finite" in response.json()["message"], response.text


def test_bad_get_filters_are_422(geo: httpx.Client) -> None:
    for params, needle in [({"bbox": "1,2,3"}, "four numbers"), ({"bbox": "a,b,c,d"}, "four numbers"),
                           ({"bbox": "0,0,500,1"}, "longitudes"), ({"time_to": "soon"}, "ISO-8601")]:
        response = geo.get("/v1/search/text", params={"q": QUERY, **params})
        assert response.status_code == 422 and needle in response.json()["message"], response.text


def republish_as_tiles(root: Path, target: Path, tile_ids: list[int]) -> None:
    """A copy of the store whose newest version makes `tile_ids` pixel windows of one scene (same vectors): the
    first three overlap the first by 75%, the fourth lies apart."""
    from index.publish import VersionContent, publish
    from index.store import open_version

    shutil.copytree(root, target)
    windows = [(0, 0, 256, 256), (64, 0, 256, 256), (0, 64, 256, 256), (1024, 1024, 256, 256)]
    with open_version(target) as version:
        records = version.all_images()
        tiles = dict(zip(tile_ids, windows, strict=True))
        records = [
            dataclasses.replace(
                r, path="mosaic.tif", sha256="ab" * 32, window=tiles[r.id], window_size=256, footprint=None, crs=None,
                bbox=None,
            )
            if r.id in tiles else r
            for r in records
        ]
        ids = np.array([r.id for r in records], dtype=np.int64)
        captions = version.all_captions()
        caption_ids = np.array([c.id for c in captions], dtype=np.int64)
        raw = {k: v for k, v in version.manifest.raw.items() if k not in ("version", "created", "counts", "files")}
        content = VersionContent(
            records, version.image_vectors(ids), version.image_index, [(c.text, c.source) for c in captions],
            version.caption_index,
            {"image_ids": ids, "image_profiles": version.image_profiles(ids), "caption_ids": caption_ids,
             "caption_profiles": version.caption_profiles(caption_ids)},
            version.skipped(), raw,
        )
        publish(target, content, keep=5, pause=lambda stage: None)


def test_overlapping_tiles_of_one_scene_do_not_crowd_the_top_k(
    geo: httpx.Client, geo_archive, tmp_path: Path, tiny_arch_file: Path
) -> None:
    def top(client: httpx.Client, k: int, dedupe: bool) -> list[int]:
        body = client.post(
            "/v1/search/text", json={"query": QUERY, "k": k, "rerank": "none", "dedupe_overlaps": dedupe}
        ).json()
        return [hit["id"] for hit in body["results"]]

    ranked = top(geo, 14, False)
    assert top(geo, 14, True) == ranked  # untiled images never suppress each other
    republish_as_tiles(geo_archive[0], tmp_path / "index", ranked[:4])
    env = {**model_env(tiny_arch_file), "POSAPL_INDEX_ROOT": str(tmp_path / "index"),
           "POSAPL_DEDUPE_MAX_CANDIDATES": "12"}
    live = start_server(tmp_path, "tiles", env)
    try:
        with httpx.Client(base_url=live.url, timeout=60) as tiles:
            assert top(tiles, 10, False) == ranked[:10]
            # ranks 2 and 3 overlap rank 1 of the same scene by 75%: gone, and k is filled from further down
            assert top(tiles, 10, True) == [ranked[0], ranked[3], *ranked[4:12]]
            # a tile that is not crowding (rank 4, apart) stays; with k=2 the list reaches past the first K'
            assert top(tiles, 2, True) == [ranked[0], ranked[3]]
            body = tiles.post("/v1/search/text", json={"query": QUERY, "k": 3, "rerank": "none"}).json()
            assert body["results"][0]["window"] == {"x": 0, "y": 0, "width": 256, "height": 256, "size": 256}
            assert body["dedupe_note"] is None
            # k=11 needs the 13 best, but suppression ranks at most 12 here: 10 come back, and the answer says why
            body = tiles.post("/v1/search/text", json={"query": QUERY, "k": 11, "rerank": "none"}).json()
            assert [hit["id"] for hit in body["results"]] == [ranked[0], ranked[3], *ranked[4:12]]
            assert "kept 10 of the 12 best" in body["dedupe_note"]
    finally:
        live.stop()


def is_text_search(message) -> bool:
    """A POST /v1/search/text, as a Playwright request or response."""
    request = getattr(message, "request", message)
    return request.url.endswith("/v1/search/text") and request.method == "POST"


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium is not installed at /usr/bin/chromium")
def test_map_draws_footprints_and_a_drawn_box_filters(geo_server: LiveServer) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 1100})
            context.add_init_script(WATCH_CSP)
            page = context.new_page()
            watch = PageWatch(page)
            searches: list[dict] = []  # every text search the page sends, in order
            page.on("request", lambda r: searches.append(r.post_data_json) if is_text_search(r) else None)
            page.set_default_timeout(60_000)
            page.goto(geo_server.url + "/")
            page.wait_for_function("() => window.posaplMap && posaplMap.map && document.querySelector('#map path')")
            page.fill("#query", QUERY)
            page.click("button[type=submit]")
            # every georeferenced result is drawn (k=20 holds all 18 items), with its scene overview under it
            page.wait_for_function(f"() => document.querySelectorAll('#map path.footprint').length === {len(RASTERS)}")
            assert page.locator("#results .result-card").count() == PLAIN + len(RASTERS)
            page.wait_for_function(
                f"() => [...document.querySelectorAll('#map img.leaflet-image-layer')].filter("
                f"img => img.complete && img.naturalWidth > 0).length === {len(RASTERS)}"
            )
            assert page.locator("#map-count").inner_text().startswith(f"{len(RASTERS)} of {PLAIN + len(RASTERS)}")
            # each footprint carries its result's rank, at its centre
            ranks_of_paths = {
                card.get_attribute("title"): card.locator(".rank").inner_text().lstrip("#")
                for card in page.locator("#results .result-card").all()
            }
            labels = sorted(page.locator("#map .rank-label").all_inner_texts(), key=int)
            assert labels == sorted((ranks_of_paths[name] for name in RASTERS), key=int)
            page.locator("#map path.footprint").first.dispatch_event("click")
            page.wait_for_selector("#lightbox:not([hidden]) #lightbox-image")
            page.keyboard.press("Escape")
            page.wait_for_selector("#lightbox", state="hidden")

            # the map's scale bar, labelled graticule and cursor position
            page.evaluate("() => posaplMap.map.fitBounds([[49.98, 9.98], [50.03, 10.05]], {animate: false})")
            page.locator("#map").scroll_into_view_if_needed()
            assert page.locator("#map .leaflet-control-scale-line").inner_text().endswith(("m", "km"))
            degrees = page.locator("#map .graticule-label").all_inner_texts()
            assert "10.00°E" in degrees and "10.05°E" in degrees and "50.00°N" in degrees, degrees
            at = page.evaluate(CORNERS_JS, [[50.005, 10.01]])[0]
            page.mouse.move(*at)
            # the shown lon/lat is the pointed place, within a pixel or two
            page.wait_for_function(
                "() => { const text = document.querySelector('#map-cursor').textContent;"
                " const m = /^lon (\\S+)°, lat (\\S+)°$/.exec(text);"
                " return m !== null && Math.abs(m[1] - 10.01) < 1e-3 && Math.abs(m[2] - 50.005) < 1e-3; }"
            )

            # a click without a drag is no area: no search, a short note instead
            start_drawing(page)
            page.mouse.click(*page.evaluate(CORNERS_JS, [[50.005, 10.01]])[0])
            page.wait_for_selector("#map-note:not([hidden])")
            assert "drag a box" in page.locator("#map-note").inner_text()
            assert page.locator("#map.drawing").count() == 0 and page.locator("#map-clear").is_hidden()
            searched = len(searches)

            # draw a box around the two EPSG:4326 rasters (lon 10.00-10.03, lat 50.00-50.01)
            drag_on_map(page, (50.0125, 9.995), (49.995, 10.03))
            with page.expect_response(is_text_search) as got:
                page.mouse.up()
            sent = got.value.request.post_data_json["filters"]["bbox"]
            assert sent == pytest.approx([9.995, 49.995, 10.03, 50.0125], abs=1e-3)  # within a few pixels
            assert len(searches) == searched + 1  # the click above sent nothing
            hits = got.value.json()["results"]
            area = shapely.box(*sent)
            assert sorted(hit["path"] for hit in hits) == ["wgs_d.tif", "wgs_e.tif"]
            assert all(shapely.geometry.shape(hit["footprint"]).intersects(area) for hit in hits)
            page.wait_for_function("() => document.querySelectorAll('#map path.footprint').length === 2")
            page.wait_for_function("() => document.querySelectorAll('#results .result-card').length === 2")
            assert page.locator("#map-note").is_hidden()

            # the acquisition-time range narrows the same area to 2022
            assert page.locator("#time-kind").input_value() == "acquired"
            page.fill("#date-from", "2022-01-01")
            with page.expect_response(is_text_search) as got:
                page.click("button[type=submit]")
            assert got.value.request.post_data_json["filters"] == {"time_from": "2022-01-01", "bbox": sent}
            assert [hit["path"] for hit in got.value.json()["results"]] == ["wgs_e.tif"]
            page.wait_for_function("() => document.querySelectorAll('#map path.footprint').length === 1")
            page.wait_for_function("() => [...document.images].every(img => img.complete)")
            watch.assert_clean()
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "map-page.png"), full_page=True)
            assert (ARTIFACTS / "map-page.png").stat().st_size > 10_000
        finally:
            browser.close()
