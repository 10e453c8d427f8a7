"""Scenes: large rasters are cut into windows, each an index item with its WGS84 footprint; geo queries are
exact; a nightly update replaces a changed scene's tiles; bad scenes are reported and never stop the job."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from index_helpers import RSICD_TEST, rsicd_names, tiny_settings
from PIL import Image
from rasterio.shutil import copy as raster_copy
from rasterio.transform import from_origin
from rasterio.warp import transform_bounds
from rasterio.windows import bounds as window_bounds

from index.job import run_update
from index.layout import content_id, file_sha256, item_id
from index.store import open_version
from index.tiles import tile_count, tile_windows

GEOTIFF = RSICD_TEST.parents[1] / "geotiff"
TILE = 256


def write_scene(
    path: Path,
    data: np.ndarray,
    crs: str | None,
    transform=None,
    nodata: float | None = None,
    **options: object,
) -> None:
    count, height, width = data.shape
    profile = dict(driver="GTiff", width=width, height=height, count=count, dtype=data.dtype, nodata=nodata)
    if crs is not None:
        profile.update(crs=crs, transform=transform)
    with rasterio.open(path, "w", **profile, **options) as out:
        out.write(data)


def _texture(bands: int, height: int, width: int, seed: int, scale: int = 255) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width]
    base = np.stack([np.sin(xs / (7 + b) + b) + np.cos(ys / (11 + b)) for b in range(bands)])
    noisy = (base + 2.0) / 4.0 + rng.normal(0.0, 0.05, size=base.shape)
    return np.clip(noisy * scale, 1, scale).astype(np.uint16 if scale > 255 else np.uint8)


def write_scenes(folder: Path) -> dict[str, Path]:
    """UTM, EPSG:4326, 16-bit 4-band with a nodata border, a COG with overviews, one without georeferencing, and
    the shared corrupt / all-nodata / whole-world GeoTIFFs."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {name: folder / f"{name}.tif" for name in ("utm", "wgs84", "border16", "cog", "plain")}
    write_scene(files["utm"], _texture(3, 500, 600, 1), "EPSG:32633", from_origin(500000, 4000000, 10, 10))
    write_scene(files["wgs84"], _texture(3, 300, 400, 2), "EPSG:4326", from_origin(10.0, 50.0, 0.001, 0.001))
    border = _texture(4, 300, 700, 3, scale=40000)
    border[:, :, :200] = 0
    write_scene(
        files["border16"], border, "EPSG:32633", from_origin(600000, 4100000, 5, 5), nodata=0,
        tiled=True, blockxsize=128, blockysize=128, compress="deflate",
    )
    tiled = folder / "cog-source.tif"
    write_scene(tiled, _texture(3, 768, 768, 4), "EPSG:3857", from_origin(1_000_000, 6_000_000, 2, 2), tiled=True)
    with rasterio.open(tiled, "r+") as dataset:
        dataset.build_overviews([2, 4], rasterio.enums.Resampling.average)
    raster_copy(tiled, files["cog"], driver="GTiff", tiled=True, copy_src_overviews=True, compress="deflate")
    tiled.unlink()
    write_scene(files["plain"], _texture(3, 300, 300, 5), None)
    for name in ("corrupt.tif", "all-nodata.tif", "world.rgb.tif"):
        files[name] = Path(shutil.copy(GEOTIFF / name, folder / name))
    return files


@pytest.fixture(scope="module")
def scene_store(tmp_path_factory: pytest.TempPathFactory, tiny_arch_path: Path) -> tuple[Path, dict[str, Path]]:
    tmp = tmp_path_factory.mktemp("scenes")
    files = write_scenes(tmp / "archive")
    root = tmp / "store"
    settings = tiny_settings(root, tiny_arch_path, [tmp / "archive"])
    run_update(root, settings, settings.store_config())
    return root, files


def _tiles(version, path: Path) -> list:
    sha = file_sha256(path)
    return [r for r in version.all_images() if r.sha256 == sha]


def test_windows_cover_the_scene_with_the_overlap() -> None:
    windows = tile_windows(600, 500, [256], 0.25)
    assert len(windows) == tile_count(600, 500, [256], 0.25) == 9
    assert {w[0] for w, _ in windows} == {0, 192, 344} and {w[1] for w, _ in windows} == {0, 192, 244}
    assert all(w[2] == w[3] == 256 for w, _ in windows)
    two = tile_windows(600, 500, [256, 512], 0.0)
    assert sum(1 for _, size in two if size == 512) == 2 and sum(1 for _, size in two if size == 256) == 6


def test_utm_and_wgs84_footprints_match_transform_bounds(scene_store) -> None:
    root, files = scene_store
    with open_version(root) as version:
        for name in ("utm", "wgs84", "border16", "cog"):
            tiles = _tiles(version, files[name])
            assert tiles, name
            with rasterio.open(files[name]) as dataset:
                for record in tiles:
                    x, y, width, height = record.window
                    native = window_bounds(rasterio.windows.Window(x, y, width, height), dataset.transform)
                    expected = transform_bounds(dataset.crs, "EPSG:4326", *native, densify_pts=15)
                    got = shapely.from_geojson(record.footprint).bounds
                    assert got == pytest.approx(expected, abs=1e-9), (name, record.window)
                    assert record.bbox == pytest.approx(native)
                    assert record.crs == dataset.crs.to_string()
            scene = version.scene(content_id(file_sha256(files[name])))
            assert scene.items == len(tiles) and scene.width == dataset.width
        utm = _tiles(version, files["utm"])[0]
        assert utm.gsd == pytest.approx(10.0 / 0.9996, rel=1e-5) and utm.window_size == TILE  # central meridian
        wgs84 = _tiles(version, files["wgs84"])[0]
        assert 60 < wgs84.gsd < 100  # 0.001 degrees at 50 N: 111 m north-south, 72 m east-west
        for tile in _tiles(version, files["cog"]):  # 2 m Web Mercator units: ground metres at each tile's centre
            centre_lat = shapely.from_geojson(tile.footprint).centroid.y
            assert tile.gsd == pytest.approx(2.0 * math.cos(math.radians(centre_lat)), rel=2e-3)
        assert utm.time is not None and utm.time.endswith("+00:00")


def test_nodata_tiles_are_skipped_and_16_bit_stretched_once(scene_store) -> None:
    root, files = scene_store
    with open_version(root) as version:
        tiles = _tiles(version, files["border16"])
        windows = {r.window[0] for r in tiles}
        assert 0 not in windows, "a window that is 78% nodata is not indexed"
        assert windows == {192, 384, 444}
        assert len({r.preprocessing for r in tiles}) == 1 and "per-scene percentiles" in tiles[0].preprocessing
        assert len(_tiles(version, files["cog"])) == 16


def test_bad_and_odd_scenes(scene_store) -> None:
    root, files = scene_store
    with open_version(root) as version:
        skipped = dict(version.skipped())
        assert "unreadable raster" in skipped[str(files["corrupt.tif"])]
        assert "every pixel is nodata" in skipped[str(files["all-nodata.tif"])]
        plain = _tiles(version, files["plain"])
        assert len(plain) == 4 and all(r.footprint is None and r.crs is None for r in plain)
        world = _tiles(version, files["world.rgb.tif"])
        union = shapely.union_all([shapely.from_geojson(r.footprint) for r in world])
        assert union.bounds == pytest.approx((-180.0, -90.0, 180.0, 90.0))
        everything = version.ids_in_area(bbox=(-180.0, -90.0, 180.0, 90.0))
        assert not {r.id for r in plain} & set(everything.tolist()), "items without a footprint never match"
        assert {r.id for r in world} <= set(everything.tolist())
        acquired = version.scene(content_id(file_sha256(files["plain"])))
        assert acquired.footprint is None and acquired.items == 4


def test_ids_in_area_is_exact(scene_store) -> None:
    root, _ = scene_store
    with open_version(root) as version:
        records = [r for r in version.all_images() if r.footprint is not None]
        shapes = {r.id: shapely.from_geojson(r.footprint) for r in records}
        rng = np.random.default_rng(0)
        utm = [s for s in shapes.values() if 14 < s.centroid.x < 16]
        checked = 0
        for _ in range(40):
            around = utm[int(rng.integers(len(utm)))].bounds
            lon = rng.uniform(around[0] - 0.002, around[2] + 0.002)
            lat = rng.uniform(around[1] - 0.002, around[3] + 0.002)
            box = (lon, lat, lon + rng.uniform(1e-5, 3e-3), lat + rng.uniform(1e-5, 3e-3))
            expected = {i for i, s in shapes.items() if s.intersects(shapely.box(*box))}
            assert set(version.ids_in_area(bbox=box).tolist()) == expected
            checked += len(expected)
        assert checked > 0
        triangle = {"type": "Polygon", "coordinates": [[[10.0, 50.0], [10.03, 50.0], [10.0, 49.97], [10.0, 50.0]]]}
        expected = {i for i, s in shapes.items() if s.intersects(shapely.geometry.shape(triangle))}
        got = set(version.ids_in_area(geometry=triangle).tolist())
        corner = {r.id for r in _tiles(version, root.parent / "archive" / "wgs84.tif") if r.window[:2] == (0, 0)}
        wgs84 = {r.id for r in _tiles(version, root.parent / "archive" / "wgs84.tif")}
        assert got == expected and got & wgs84 == corner and len(wgs84) == 4


def test_changed_scene_tiles_replaced_removed_scene_dropped(
    tmp_path: Path, scene_store, tiny_arch_path: Path
) -> None:
    source_root, files = scene_store
    archive = tmp_path / "archive"
    shutil.copytree(files["utm"].parent, archive)
    root = tmp_path / "store"
    shutil.copytree(source_root, root)
    config = json.loads((root / "config.json").read_text())
    config["sources"] = [str(archive)]
    (root / "config.json").write_text(json.dumps(config))
    with open_version(root) as version:
        before = {r.id: r for r in version.all_images()}
    old_utm = {r.id for r in before.values() if r.sha256 == file_sha256(files["utm"])}
    write_scene(archive / "utm.tif", _texture(3, 500, 600, 99), "EPSG:32633", from_origin(500000, 4000000, 10, 10))
    (archive / "wgs84.tif").unlink()
    report = run_update(root, tiny_settings(root, tiny_arch_path, num_workers=2))  # windows read by workers
    counts = report.counts
    assert report.status == "published" and counts["files_removed"] == 1 and counts["files_changed"] == 1
    assert counts["skipped"] == 2, report.skipped  # corrupt.tif and all-nodata.tif, nothing else
    assert counts["items_embedded"] == 9, "only the changed scene's tiles are embedded: every one of them changed"
    assert counts["items_reused"] == 0 and counts["items_removed"] == 4, "the wgs84 scene's four tiles"
    new_sha = file_sha256(archive / "utm.tif")
    with open_version(root) as version:
        after = {r.id: r for r in version.all_images()}
        new_utm = {i for i, r in after.items() if r.sha256 == new_sha}
        assert len(new_utm) == len(old_utm) == 9 and not new_utm & set(after) & old_utm
        assert {after[i].window for i in new_utm} == {before[i].window for i in old_utm}
        assert not any(r.path == "wgs84.tif" for r in after.values())
        kept = {i for i, r in before.items() if r.path not in ("utm.tif", "wgs84.tif")}
        assert kept <= set(after)
        with pytest.raises(KeyError):
            version.scene(content_id(file_sha256(files["utm"])))


def test_band_beyond_the_scene_and_too_many_tiles_are_reported(tmp_path: Path, tiny_arch_path: Path) -> None:
    archive = tmp_path / "archive"
    archive.mkdir()
    write_scene(archive / "four.tif", _texture(4, 200, 200, 6, scale=4000), "EPSG:32633", from_origin(0, 0, 1, 1))
    write_scene(archive / "three.tif", _texture(3, 200, 200, 7), "EPSG:32633", from_origin(0, 0, 1, 1))
    write_scene(archive / "big.tif", _texture(4, 900, 900, 8), None)
    root = tmp_path / "store"
    settings = tiny_settings(root, tiny_arch_path, [archive], bands=[4, 3, 2], max_tiles_per_scene=10)
    report = run_update(root, settings, settings.store_config())
    skipped = dict(report.skipped)
    assert "band 4 requested but the file has 3 bands" in skipped[str(archive / "three.tif")]
    assert "more than the limit of 10 per scene" in skipped[str(archive / "big.tif")]
    with open_version(root) as version:
        (four,) = version.all_images()
        assert four.window is None and four.preprocessing.startswith("bands 4,3,2 of 4")
        assert version.manifest.raw["decode"]["bands"] == [4, 3, 2]


def test_mosaic_tiles_embed_exactly_as_their_source_images(tmp_path: Path, tiny_arch_path: Path) -> None:
    """A 4x4 mosaic of RSICD test images with a made-up UTM transform, cut at the image size with no overlap:
    each tile is its source image, pixel for pixel, so it must get the same vector and be found by it."""
    names = rsicd_names(16, start=300)
    grid = 4
    size = 224
    originals = tmp_path / "originals"
    originals.mkdir()
    mosaic = np.zeros((3, grid * size, grid * size), dtype=np.uint8)
    for n, name in enumerate(names):
        shutil.copy(RSICD_TEST / name, originals / name)
        row, col = divmod(n, grid)
        pixels = np.asarray(Image.open(RSICD_TEST / name).convert("RGB"))
        mosaic[:, row * size : (row + 1) * size, col * size : (col + 1) * size] = np.moveaxis(pixels, -1, 0)
    scenes = tmp_path / "scenes"
    scenes.mkdir()
    transform = from_origin(400000, 5000000, 0.5, 0.5)
    write_scene(scenes / "mosaic.tif", mosaic, "EPSG:32633", transform, tiled=True, compress="deflate")
    stores = {}
    for name, folder in (("mosaic", scenes), ("originals", originals)):
        root = tmp_path / f"store-{name}"
        settings = tiny_settings(root, tiny_arch_path, [folder], tile_sizes=[size], tile_overlap=0.0)
        run_update(root, settings, settings.store_config())
        stores[name] = root
    sha = file_sha256(scenes / "mosaic.tif")
    with open_version(stores["mosaic"]) as tiles, open_version(stores["originals"]) as whole:
        assert tiles.manifest.counts["images"] == 16
        for n, name in enumerate(names):
            row, col = divmod(n, grid)
            window = (col * size, row * size, size, size)
            tile_id = item_id(sha, window, size)
            original = whole.image_vectors([content_id(file_sha256(originals / name))])
            assert np.allclose(tiles.image_vectors([tile_id]), original, atol=1e-5), name
            scores, ids = tiles.search_images(original, 1)
            assert ids[0, 0] == tile_id and scores[0, 0] >= 0.999
            record = tiles.image(tile_id)
            assert record.window == window
            native = window_bounds(rasterio.windows.Window(*window), transform)
            expected = transform_bounds("EPSG:32633", "EPSG:4326", *native, densify_pts=15)
            assert shapely.from_geojson(record.footprint).bounds == pytest.approx(expected, abs=1e-9)
