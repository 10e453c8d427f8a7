"""Scene overviews over HTTP: warped to Web Mercator so a Leaflet image overlay on `overview_bounds` puts every
pixel at its latitude, nodata transparent, and rendered once per index version."""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import rasterio
from api_support import DATA, LiveServer, build_index, model_env, start_server
from PIL import Image
from rasterio.transform import from_bounds, from_origin
from rasterio.warp import transform

from index.layout import OVERVIEW_CACHE, content_id, file_sha256

# 40°N to 80°N in 1000 rows: drawn between its corners without warping, the stripe at 60°N (row 500, halfway
# down) would land where Mercator is halfway between 40°N and 80°N, near 67.4°N.
NORTH, SOUTH, WEST, EAST = 80.0, 40.0, 0.0, 20.0
ROWS, COLS = 1000, 500
STRIPE_LAT = 60.0
NODATA_LON = 4.0  # columns west of this are nodata


def _write_north(path: Path, seed: int) -> None:
    data = np.random.default_rng(seed).integers(30, 90, size=(3, ROWS, COLS), dtype=np.uint8)
    data[1] += 100  # green land
    row = round((NORTH - STRIPE_LAT) / ((NORTH - SOUTH) / ROWS))
    data[:, row - 3 : row + 3] = np.array([255, 0, 0], dtype=np.uint8)[:, None, None]  # a red line along 60°N
    data[:, :, : round(NODATA_LON / ((EAST - WEST) / COLS))] = 0
    with rasterio.open(
        path, "w", driver="GTiff", width=COLS, height=ROWS, count=3, dtype="uint8", crs="EPSG:4326", nodata=0,
        transform=from_origin(WEST, NORTH, (EAST - WEST) / COLS, (NORTH - SOUTH) / ROWS),
    ) as out:
        out.write(data)


@pytest.fixture(scope="module")
def overview_server(
    tmp_path_factory: pytest.TempPathFactory, tiny_arch_file: Path
) -> Iterator[tuple[LiveServer, Path]]:
    tmp = tmp_path_factory.mktemp("overviews-api")
    images = tmp / "images"
    images.mkdir()
    _write_north(images / "north.tif", 1)
    _write_north(images / "north-twin.tif", 2)
    shutil.copy(sorted((DATA / "rsicd" / "test").glob("*.jpg"))[0], images / "chip.jpg")
    captions = tmp / "captions.json"
    captions.write_text('[{"image": "chip.jpg", "caption": ["many buildings and green trees ."]}]')
    build_index(tmp / "index", images, captions, tiny_arch_file)
    env = {**model_env(tiny_arch_file), "POSAPL_INDEX_ROOT": str(tmp / "index"), "POSAPL_RERANK_DEFAULT": "none"}
    live = start_server(tmp, "overviews", env)
    yield live, tmp
    live.stop()


def _png(response: httpx.Response) -> np.ndarray:
    assert response.status_code == 200 and response.headers["content-type"] == "image/png", response.text
    image = Image.open(io.BytesIO(response.content))
    assert image.mode == "RGBA"
    return np.asarray(image)


def test_overview_is_web_mercator_on_its_bounds_with_nodata_transparent(
    overview_server: tuple[LiveServer, Path],
) -> None:
    live, tmp = overview_server
    scene_id = content_id(file_sha256(tmp / "images" / "north.tif"))
    with httpx.Client(base_url=live.url, timeout=120) as client:
        info = client.get(f"/v1/scenes/{scene_id}").json()
        pixels = _png(client.get(info["overview_url"]))
    west, south, east, north = info["overview_bounds"]
    assert (west, south, east, north) == pytest.approx((WEST, SOUTH, EAST, NORTH), abs=1e-6)
    # Leaflet stretches the image linearly in Mercator between those corners: row <-> latitude is this grid.
    (x0, x1), (y0, y1) = transform("EPSG:4326", "EPSG:3857", [west, east], [south, north])
    height, width = pixels.shape[:2]
    grid = from_bounds(x0, y0, x1, y1, width, height)

    def lonlat(col: float, row: float) -> tuple[float, float]:
        x, y = grid @ (col, row)
        (lon,), (lat,) = transform("EPSG:3857", "EPSG:4326", [x], [y])
        return lon, lat

    red = (pixels[..., 0] > 200) & (pixels[..., 1] < 60) & (pixels[..., 3] == 255)
    rows = np.flatnonzero(red.sum(axis=1) > width // 2)
    assert rows.size > 0
    assert lonlat(width / 2, rows.mean() + 0.5)[1] == pytest.approx(STRIPE_LAT, abs=0.15)
    row_size = lonlat(0, height / 2)[1] - lonlat(0, height / 2 + 1)[1]
    assert (rows.max() - rows.min() + 1) * row_size < 0.24 + 2 * row_size  # 0.24° wide, not smeared
    lons = np.array([lonlat(col + 0.5, 0)[0] for col in range(width)])
    assert (pixels[:, lons < NODATA_LON - 0.1, 3] == 0).all()  # nodata: transparent
    assert (pixels[:, lons > NODATA_LON + 0.1, 3] == 255).all()  # data: opaque


def test_an_image_without_georeferencing_has_no_overview_bounds(overview_server: tuple[LiveServer, Path]) -> None:
    live, tmp = overview_server
    scene_id = content_id(file_sha256(tmp / "images" / "chip.jpg"))
    with httpx.Client(base_url=live.url, timeout=120) as client:
        info = client.get(f"/v1/scenes/{scene_id}").json()
        assert info["overview_bounds"] is None
        pixels = _png(client.get(info["overview_url"]))
    chip = np.asarray(Image.open(tmp / "images" / "chip.jpg").convert("RGB"))
    assert pixels.shape[:2] == chip.shape[:2] and (pixels[..., 3] == 255).all()
    assert np.array_equal(pixels[..., :3], chip)


def test_an_overview_is_rendered_once_even_by_concurrent_first_requests(
    overview_server: tuple[LiveServer, Path],
) -> None:
    live, tmp = overview_server
    scene_id = content_id(file_sha256(tmp / "images" / "north-twin.tif"))
    url = f"{live.url}/v1/scenes/{scene_id}/overview"
    with ThreadPoolExecutor(6) as pool:
        first = list(pool.map(lambda _: httpx.get(url, timeout=300), range(6)))
    assert all(r.status_code == 200 for r in first)
    assert sorted(r.headers["x-cache"] for r in first) == ["hit"] * 5 + ["miss"]
    assert len({r.content for r in first}) == 1
    cached = tmp / "index" / OVERVIEW_CACHE / "1" / f"{scene_id}.png"
    assert cached.read_bytes() == first[0].content
    before = cached.stat()
    again = httpx.get(url, timeout=60)
    assert again.headers["x-cache"] == "hit" and again.content == first[0].content
    after = cached.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert live.log_path.read_text().count(f"rendered the overview of scene {scene_id} ") == 1
    assert not [p for p in cached.parent.iterdir() if p.suffix == ".tmp"]  # no half-written file left
