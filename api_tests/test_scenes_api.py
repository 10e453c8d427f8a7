"""Scenes over HTTP: hits carry scene, window, footprint, GSD and time; a tile's view is its window; a scene has
metadata and an overview."""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import rasterio
import shapely
from api_support import DATA, LiveServer, build_index, model_env, start_server
from PIL import Image
from rasterio.transform import from_origin
from rasterio.warp import transform_bounds
from rasterio.windows import Window, bounds

from index.layout import content_id, file_sha256

# A GDAL VRT over the scene's top-left 200 x 150 px (sources relative to the VRT, as gdalbuildvrt writes them).
PART_VRT = (
    '<VRTDataset rasterXSize="200" rasterYSize="150"><SRS>EPSG:32633</SRS>'
    "<GeoTransform>500000, 2, 0, 4000000, 0, -2</GeoTransform>"
    + "".join(
        f'<VRTRasterBand dataType="Byte" band="{b}"><ColorInterp>{colour}</ColorInterp><SimpleSource>'
        f'<SourceFilename relativeToVRT="1">scene.tif</SourceFilename><SourceBand>{b}</SourceBand>'
        '<SrcRect xOff="0" yOff="0" xSize="200" ySize="150"/><DstRect xOff="0" yOff="0" xSize="200" ySize="150"/>'
        "</SimpleSource></VRTRasterBand>"
        for b, colour in ((1, "Red"), (2, "Green"), (3, "Blue"))
    )
    + "</VRTDataset>"
)


@pytest.fixture(scope="module")
def scene_server(tmp_path_factory: pytest.TempPathFactory, tiny_arch_file: Path) -> Iterator[tuple[LiveServer, Path]]:
    tmp = tmp_path_factory.mktemp("scenes-api")
    images = tmp / "images"
    images.mkdir()
    rsicd = sorted((DATA / "rsicd" / "test").glob("*.jpg"))
    shutil.copy(rsicd[0], images / "chip.jpg")
    rows = [[np.asarray(Image.open(p).convert("RGB")) for p in rsicd[r * 3 : r * 3 + 3]] for r in (1, 2)]
    mosaic = np.concatenate([np.concatenate(row, 1) for row in rows])  # 448 x 672 px of real imagery
    with rasterio.open(
        images / "scene.tif", "w", driver="GTiff", width=672, height=448, count=3, dtype="uint8",
        crs="EPSG:32633", transform=from_origin(500000, 4000000, 2, 2), tiled=True, compress="deflate",
    ) as out:
        out.write(np.moveaxis(mosaic, -1, 0))
    (images / "part.vrt").write_text(PART_VRT)
    captions = tmp / "captions.json"
    captions.write_text('[{"image": "chip.jpg", "caption": ["many buildings and green trees ."]}]')
    build_index(tmp / "index", images, captions, tiny_arch_file)
    env = {**model_env(tiny_arch_file), "POSAPL_INDEX_ROOT": str(tmp / "index"), "POSAPL_RERANK_DEFAULT": "none"}
    live = start_server(tmp, "scenes", env)
    yield live, images
    live.stop()


def test_hits_carry_scene_window_footprint(scene_server: tuple[LiveServer, Path]) -> None:
    live, images = scene_server
    scene_id = content_id(file_sha256(images / "scene.tif"))
    with httpx.Client(base_url=live.url, timeout=60) as client:
        params = {"q": "buildings", "k": 100, "dedupe_overlaps": "false"}  # every tile, overlapping ones too
        hits = client.get("/v1/search/text", params=params).json()["results"]
        tiles = [h for h in hits if h["scene"]["id"] == scene_id]
        chip = next(h for h in hits if h["path"] == "chip.jpg")
        assert len(tiles) == 8 and len(hits) == 10  # and part.vrt
        assert chip["window"] == {"x": 0, "y": 0, "width": 224, "height": 224, "size": None}
        assert chip["footprint"] is None and chip["gsd"] is None and chip["scene"]["id"] == chip["id"]
        with rasterio.open(images / "scene.tif") as dataset:
            for tile in tiles:
                w = tile["window"]
                assert w["size"] == 256 and tile["gsd"] == pytest.approx(2.0 / 0.9996, rel=1e-5) and tile["time"]
                expected = transform_bounds(
                    dataset.crs, "EPSG:4326", *bounds(Window(w["x"], w["y"], w["width"], w["height"]),
                                                      dataset.transform), densify_pts=15,
                )
                assert shapely.geometry.shape(tile["footprint"]).bounds == pytest.approx(expected, abs=1e-9)
                view = client.get(tile["view_url"])
                assert view.status_code == 200 and view.headers["content-type"] == "image/png"
                shown = np.asarray(Image.open(io.BytesIO(view.content)).convert("RGB"))
                window = dataset.read(window=Window(w["x"], w["y"], w["width"], w["height"]))
                assert np.array_equal(shown, np.moveaxis(window, 0, -1)), "a tile's view is its window, unchanged"
                thumb = Image.open(io.BytesIO(client.get(tile["thumbnail_url"]).content))
                assert thumb.format == "JPEG" and thumb.size == (256, 256)


def test_scene_metadata_and_overview(scene_server: tuple[LiveServer, Path]) -> None:
    live, images = scene_server
    scene_id = content_id(file_sha256(images / "scene.tif"))
    with httpx.Client(base_url=live.url, timeout=60) as client:
        info = client.get(f"/v1/scenes/{scene_id}").json()
        assert (info["width"], info["height"], info["items"], info["crs"]) == (672, 448, 8, "EPSG:32633")
        assert info["bounds"] == pytest.approx([500000, 4000000 - 896, 500000 + 1344, 4000000])
        assert shapely.geometry.shape(info["footprint"]).is_valid
        # no date in its metadata or name: its time is the file's, and the scene says so
        assert info["time_source"] == "file_mtime" and info["time"]
        overview = client.get(info["overview_url"])
        assert overview.status_code == 200 and overview.headers["content-type"] == "image/png"
        image = Image.open(io.BytesIO(overview.content))  # warped to Web Mercator, transparent outside the scene
        assert image.mode == "RGBA" and max(image.size) <= 1024
        assert overview.headers["x-cache"] in ("hit", "miss")
        lonlat = transform_bounds("EPSG:32633", "EPSG:4326", *info["bounds"], densify_pts=21)
        assert info["overview_bounds"] == pytest.approx(lonlat, abs=1e-9)
        assert client.get(info["image_url"]).content == (images / "scene.tif").read_bytes()
        missing = client.get("/v1/scenes/12345")
        assert missing.status_code == 404 and str(images) not in missing.text


def test_a_vrt_item_is_viewed_but_its_xml_never_sent(scene_server: tuple[LiveServer, Path]) -> None:
    live, images = scene_server
    with httpx.Client(base_url=live.url, timeout=60) as client:
        hits = client.get("/v1/search/text", params={"q": "buildings", "k": 100, "dedupe_overlaps": "false"})
        (part,) = [h for h in hits.json()["results"] if h["path"] == "part.vrt"]
        assert part["crs"] == "EPSG:32633" and part["bbox"] == pytest.approx([500000, 3999700, 500400, 4000000])
        view = client.get(part["view_url"])
        assert view.status_code == 200 and view.headers["content-type"] == "image/png"
        with rasterio.open(images / "scene.tif") as dataset:
            expected = np.moveaxis(dataset.read(window=Window(0, 0, 200, 150)), 0, -1)
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(view.content)).convert("RGB")), expected)
        for url in (part["image_url"], f"{part['scene']['url']}/original"):
            refused = client.get(url)
            assert refused.status_code == 404 and refused.json()["error"] == "no_original_file", url
            assert "GDAL VRT" in refused.json()["message"] and "scene.tif" not in refused.text
            assert str(images) not in refused.text
