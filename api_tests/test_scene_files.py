"""Scene files over HTTP: tile downloads, byte ranges, absolute links, unambiguous paths, the scenes listing and
uploads of chips cut from an indexed scene.

One store for all of them, with two archive folders: `a/images` holds a 4-band uint16 scene (8 tiles) and
`same.jpg`; `b/images` holds another `same.jpg` (other pixels) and a small georeferenced uint8 image far away.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import rasterio
import shapely
from api_support import DATA, LiveServer, build_index, free_port, model_env, start_server
from PIL import Image
from rasterio.io import MemoryFile
from rasterio.transform import from_origin
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

from index.layout import content_id, file_sha256

SCENE_CRS = "EPSG:32633"
SCENE_TRANSFORM = from_origin(500000, 4000000, 2, 2)
FAR_BBOX = (99.0, 9.0, 101.0, 11.0)  # around the far image (lon 100, lat 10)


def _write_scene(path: Path, tiles: list[Path]) -> None:
    """672 x 448 px of real imagery as 4 bands of uint16, brighter to the east: a chip's own percentiles differ
    from the scene's."""
    rows = [[np.asarray(Image.open(p).convert("RGB")) for p in tiles[r * 3 : r * 3 + 3]] for r in (0, 1)]
    rgb = np.concatenate([np.concatenate(row, 1) for row in rows]).astype(np.uint16)
    ramp = np.linspace(0, 20000, rgb.shape[1], dtype=np.float64)[None, :, None]
    bands = (rgb * 120 + 3000 + ramp).astype(np.uint16)
    nir = bands.mean(axis=2, keepdims=True).astype(np.uint16)
    data = np.moveaxis(np.concatenate([bands, nir], axis=2), -1, 0)
    with rasterio.open(
        path, "w", driver="GTiff", width=672, height=448, count=4, dtype="uint16", crs=SCENE_CRS,
        transform=SCENE_TRANSFORM, tiled=True, compress="deflate",
    ) as out:
        out.write(data)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, tiny_arch_file: Path) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("scene-files")
    rsicd = sorted((DATA / "rsicd" / "test").glob("*.jpg"))
    a, b = tmp / "a" / "images", tmp / "b" / "images"
    a.mkdir(parents=True)
    b.mkdir(parents=True)
    shutil.copy(rsicd[0], a / "same.jpg")
    shutil.copy(rsicd[1], b / "same.jpg")
    _write_scene(a / "scene16.tif", rsicd[2:8])
    far = np.moveaxis(np.asarray(Image.open(rsicd[8]).convert("RGB")), -1, 0)
    with rasterio.open(
        b / "far.tif", "w", driver="GTiff", width=224, height=224, count=3, dtype="uint8", crs="EPSG:4326",
        transform=from_origin(99.9, 10.1, 0.001, 0.001),
    ) as out:
        out.write(far)
    captions = tmp / "captions.json"
    captions.write_text('[{"image": "same.jpg", "caption": ["many buildings and green trees ."]}]')
    build_index(tmp / "index", [a, b], captions, tiny_arch_file)
    return {"root": tmp / "index", "a": a, "b": b, "tmp": tmp}


@pytest.fixture(scope="module")
def live(store: dict[str, Path], tiny_arch_file: Path) -> Iterator[LiveServer]:
    env = {**model_env(tiny_arch_file), "POSAPL_INDEX_ROOT": str(store["root"]), "POSAPL_RERANK_DEFAULT": "none"}
    server = start_server(store["tmp"], "scene-files", env)
    yield server
    server.stop()


def _scene_id(path: Path) -> int:
    return content_id(file_sha256(path))


def _all_hits(live: LiveServer) -> list[dict]:
    params = {"q": "buildings", "k": 100, "dedupe_overlaps": "false"}
    return httpx.get(f"{live.url}/v1/search/text", params=params, timeout=60).json()["results"]


def _urls(hit: dict) -> list[str]:
    urls = [hit["image_url"], hit["thumbnail_url"], hit["view_url"], hit["scene"]["url"]]
    return urls + ([hit["scene_url"]] if hit["scene_url"] is not None else [])


def test_tile_download_is_its_window_as_geotiff(live: LiveServer, store: dict[str, Path]) -> None:
    scene = store["a"] / "scene16.tif"
    with httpx.Client(base_url=live.url, timeout=60) as client:
        tiles = [h for h in _all_hits(live) if h["scene"]["id"] == _scene_id(scene)]
        assert len(tiles) == 8
        with rasterio.open(scene) as source:
            for tile in tiles:
                w = tile["window"]
                box = Window(w["x"], w["y"], w["width"], w["height"])
                response = client.get(tile["image_url"])
                assert response.status_code == 200, response.text
                assert response.headers["content-type"] == "image/tiff; application=geotiff"
                assert len(response.content) < scene.stat().st_size
                name = f"scene16_x{w['x']}_y{w['y']}_{w['width']}x{w['height']}.tif"
                disposition = f"attachment; filename=\"{name}\"; filename*=UTF-8''{name}"
                assert response.headers["content-disposition"] == disposition
                with MemoryFile(response.content) as memory, memory.open() as got:
                    assert got.crs == source.crs
                    assert got.transform == window_transform(box, source.transform)
                    assert (got.count, got.dtypes, got.width, got.height) == (4, ("uint16",) * 4, 256, 256)
                    assert np.array_equal(got.read(), source.read(window=box)), "native pixels, no stretch"
                assert tile["scene_url"] == f"{live.url}/v1/scenes/{_scene_id(scene)}/original"


def test_scene_original_answers_byte_ranges(live: LiveServer, store: dict[str, Path]) -> None:
    scene = store["a"] / "scene16.tif"
    whole = scene.read_bytes()
    url = f"{live.url}/v1/scenes/{_scene_id(scene)}/original"
    response = httpx.get(url, headers={"Range": "bytes=100-1099"}, timeout=60)
    assert response.status_code == 206
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["content-range"] == f"bytes 100-1099/{len(whole)}"
    assert response.content == whole[100:1100]
    tail = httpx.get(url, headers={"Range": "bytes=-10"}, timeout=60)
    assert tail.status_code == 206 and tail.content == whole[-10:]
    full = httpx.get(url, timeout=60)
    assert full.status_code == 200 and full.headers["accept-ranges"] == "bytes" and full.content == whole
    beyond = httpx.get(url, headers={"Range": f"bytes={len(whole)}-"}, timeout=60)
    assert beyond.status_code == 416 and beyond.headers["content-range"] == f"bytes */{len(whole)}"
    assert "beyond the end of the file" in beyond.json()["message"]
    malformed = httpx.get(url, headers={"Range": "lines=1-2"}, timeout=60)
    assert malformed.status_code == 400 and "bytes" in malformed.json()["message"]


def test_links_are_absolute_and_fetch_with_plain_httpx(live: LiveServer) -> None:
    hits = _all_hits(live)
    assert len(hits) == 11  # 8 tiles + 3 whole images
    for hit in hits:
        for url in _urls(hit):
            assert url.startswith(f"{live.url}/v1/"), url
            assert httpx.get(url, timeout=60).status_code == 200, url
        assert (hit["scene_url"] is None) == (hit["window"]["size"] is None)
    geojson = httpx.get(f"{live.url}/v1/search/text", params={"q": "buildings", "k": 3, "format": "geojson"}).json()
    for feature in geojson["features"]:
        for key in ("image_url", "thumbnail_url", "view_url"):
            assert feature["properties"][key].startswith(f"{live.url}/v1/images/")


def test_public_url_setting_bases_every_link(store: dict[str, Path], tiny_arch_file: Path) -> None:
    port = free_port()
    public = f"http://localhost:{port}"  # another spelling of the server's address than the one requested
    env = {
        **model_env(tiny_arch_file), "POSAPL_INDEX_ROOT": str(store["root"]), "POSAPL_PUBLIC_URL": public + "/",
    }
    server = LiveServer(env, store["tmp"] / "public.log", store["tmp"] / "public-tmp", port=port).start()
    try:
        hits = httpx.get(f"{server.url}/v1/search/text", params={"q": "trees", "k": 20}, timeout=60).json()
        for hit in hits["results"]:
            for url in _urls(hit):
                assert url.startswith(f"{public}/v1/"), url
                assert httpx.get(url, timeout=60).status_code == 200, url
        listing = httpx.get(f"{server.url}/v1/scenes", params={"limit": 1}, timeout=60).json()
        assert listing["next_url"] == f"{public}/v1/scenes?limit=1&offset=1"
        assert listing["scenes"][0]["image_url"].startswith(f"{public}/v1/scenes/")
    finally:
        server.stop()


def test_same_file_name_in_two_folders_gives_distinct_paths(live: LiveServer, store: dict[str, Path]) -> None:
    hits = _all_hits(live)
    by_path = {hit["path"]: hit for hit in hits}
    assert {"a/images/same.jpg", "b/images/same.jpg", "b/images/far.tif"} <= set(by_path)
    assert by_path["a/images/same.jpg"]["id"] != by_path["b/images/same.jpg"]["id"]
    for name in ("a", "b"):
        got = httpx.get(by_path[f"{name}/images/same.jpg"]["image_url"], timeout=60).content
        assert got == (store[name] / "same.jpg").read_bytes()
    tile = next(hit for hit in hits if hit["window"]["size"] is not None)
    assert tile["path"] == tile["scene"]["path"] == "a/images/scene16.tif"


def test_scenes_listing_pages_through_every_scene(live: LiveServer, store: dict[str, Path]) -> None:
    expected = {
        _scene_id(store["a"] / "same.jpg"): "a/images/same.jpg",
        _scene_id(store["a"] / "scene16.tif"): "a/images/scene16.tif",
        _scene_id(store["b"] / "far.tif"): "b/images/far.tif",
        _scene_id(store["b"] / "same.jpg"): "b/images/same.jpg",
    }
    seen: list[dict] = []
    url: str | None = f"{live.url}/v1/scenes?limit=3"
    while url is not None:
        page = httpx.get(url, timeout=60).json()
        assert page["matched"] == 4 and page["limit"] == 3
        seen += page["scenes"]
        url = page["next_url"]
    assert [s["path"] for s in seen] == sorted(expected.values()), "archive order: folder, then path"
    assert {s["id"]: s["path"] for s in seen} == expected
    scene = next(s for s in seen if s["path"].endswith("scene16.tif"))
    assert (scene["width"], scene["height"], scene["bands"], scene["dtype"]) == (672, 448, 4, "uint16")
    # ground metres: 2 m of UTM grid on the central meridian is 2 / 0.9996 m on the ground (the scale factor)
    assert scene["crs"] == SCENE_CRS and scene["items"] == 8 and scene["gsd"] == pytest.approx(2 / 0.9996, rel=1e-4)
    assert scene["time"] and shapely.geometry.shape(scene["footprint"]).is_valid
    for key in ("url", "image_url", "overview_url"):
        assert httpx.get(scene[key], timeout=60).status_code == 200
    assert httpx.get(scene["url"], timeout=60).json() == scene


def test_scenes_listing_bbox_selects_by_footprint(live: LiveServer, store: dict[str, Path]) -> None:
    def listed(bbox: str) -> list[str]:
        response = httpx.get(f"{live.url}/v1/scenes", params={"bbox": bbox}, timeout=60)
        assert response.status_code == 200, response.text
        return [scene["path"] for scene in response.json()["scenes"]]

    assert listed(",".join(map(str, FAR_BBOX))) == ["b/images/far.tif"]
    info = httpx.get(f"{live.url}/v1/scenes/{_scene_id(store['a'] / 'scene16.tif')}", timeout=60).json()
    west, south, east, north = shapely.geometry.shape(info["footprint"]).bounds
    centre = f"{(west + east) / 2},{(south + north) / 2}"
    assert listed(f"{centre},{east + 1},{north + 1}") == ["a/images/scene16.tif"]
    assert listed("-10,-10,-9,-9") == []
    both = f"{west - 1},{FAR_BBOX[1]},{FAR_BBOX[2]},{north + 1}"
    assert listed(both) == ["a/images/scene16.tif", "b/images/far.tif"]


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ({"bbox": "1,2,3"}, "bbox must be four numbers"),
        ({"bbox": "0,0,1,95"}, "latitudes"),
        ({"limit": "0"}, "limit"),
        ({"limit": "1001"}, "limit"),
        ({"offset": "-1"}, "offset"),
    ],
)
def test_scenes_listing_refuses_bad_parameters(live: LiveServer, params: dict[str, str], problem: str) -> None:
    response = httpx.get(f"{live.url}/v1/scenes", params=params, timeout=60)
    assert response.status_code == 422
    assert problem in json.dumps(response.json())


def _chip(scene: Path, window: Window, georeferenced: bool) -> bytes:
    """The window cut from the scene with rasterio, as a GIS user would export it."""
    with rasterio.open(scene) as source:
        profile = {**source.profile, "width": window.width, "height": window.height, "tiled": False}
        if georeferenced:
            profile["transform"] = window_transform(window, source.transform)
        else:
            profile.pop("crs")
            profile.pop("transform")
        with MemoryFile() as memory:
            with memory.open(**profile) as chip:
                chip.write(source.read(window=window))
            return memory.read()


def test_chip_of_an_indexed_scene_uses_the_scene_stretch(live: LiveServer, store: dict[str, Path]) -> None:
    scene = store["a"] / "scene16.tif"
    window = Window(192, 192, 256, 256)  # one of the scene's tiles
    chip = _chip(scene, window, georeferenced=True)
    form = {"k_images": "20", "rerank": "none"}
    response = httpx.post(f"{live.url}/v1/search/image", files={"file": ("chip.tif", chip)}, data=form, timeout=60)
    assert response.status_code == 200, response.text
    body = response.json()
    stretch = body["stretch"]
    assert stretch["source"] == "scene" and stretch["scene_id"] == _scene_id(scene)
    assert stretch["scene_url"] == f"{live.url}/v1/scenes/{_scene_id(scene)}"
    best = body["images"][0]
    assert best["window"] == {"x": 192, "y": 192, "width": 256, "height": 256, "size": 256}
    assert best["path"] == "a/images/scene16.tif" and best["score"] >= 0.999


def test_chip_without_georeferencing_uses_its_own_stretch(live: LiveServer, store: dict[str, Path]) -> None:
    chip = _chip(store["a"] / "scene16.tif", Window(192, 192, 256, 256), georeferenced=False)
    response = httpx.post(f"{live.url}/v1/search/image", files={"file": ("chip.tif", chip)}, timeout=60)
    assert response.status_code == 200, response.text
    stretch = response.json()["stretch"]
    assert stretch["source"] == "own" and stretch["scene_id"] is None and stretch["low"] < stretch["high"]
    jpeg = (store["a"] / "same.jpg").read_bytes()
    plain = httpx.post(f"{live.url}/v1/search/image", files={"file": ("same.jpg", jpeg)}, timeout=60)
    assert plain.json()["stretch"] == {"source": "none", "scene_id": None, "scene_url": None, "low": None,
                                       "high": None}
