"""Sentinel-2 SAFE folders in a band folder: one scene of the true-colour 10 m bands, read through GDAL's
SENTINEL2 driver (in rasterio's wheel) from a minimal fake product the driver accepts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from index_helpers import tiny_settings
from stac_helpers import SIZE, band_data, write_safe

from index.job import run_update
from index.sources.catalogs import prepare_catalogs
from index.store import open_version
from index.vrt import vrt_sha256


def test_a_safe_folder_is_one_scene_of_its_red_green_blue_bands(tmp_path: Path, tiny_arch_path: Path) -> None:
    folder = tmp_path / "products"
    safe = write_safe(folder / "2020")
    (folder / "2020" / "readme.txt").write_text("not a band")
    root = tmp_path / "store"
    settings = tiny_settings(root, tiny_arch_path, band_folders=[folder], tile_sizes=[64])  # no --band-files
    report = run_update(root, settings, settings.store_config())
    vrt = root / "bands" / "0" / "2020" / f"{safe.stem}.vrt"
    with open_version(root) as version:
        records = version.all_images()
        assert len(records) == 9 and {r.path for r in records} == {f"2020/{safe.stem}.vrt"}
        assert {r.crs for r in records} == {"EPSG:32633"}
        assert {(r.time, r.time_source) for r in records} == {("2020-05-13T10:00:31+00:00", "filename")}
    assert [reason for _, reason in report.skipped] == [
        "matches no band file pattern (no --band-files given) and is in no .SAFE folder"
    ]
    granule = next((safe / "GRANULE").iterdir()) / "IMG_DATA" / "R10m"
    with rasterio.open(vrt) as scene:
        assert (scene.count, scene.width, scene.transform.a) == (3, SIZE, 10.0)
        stack = scene.read()
    for band, name in enumerate(("B04", "B03", "B02")):  # red, green, blue: the driver's colour marks
        with rasterio.open(next(granule.glob(f"*_{name}_10m.jp2"))) as file:
            assert np.array_equal(stack[band], file.read(1)), name


def test_a_changed_band_file_changes_the_scene_hash(tmp_path: Path, tiny_arch_path: Path) -> None:
    """The VRT names the driver's subdataset, not the JPEG 2000 files; its hash still covers them."""
    folder = tmp_path / "products"
    safe = write_safe(folder)
    root = tmp_path / "store"
    settings = tiny_settings(root, tiny_arch_path, band_folders=[folder], tile_sizes=[64])
    prepare_catalogs(root, settings.store_config())
    (vrt,) = (root / "bands" / "0").glob("*.vrt")
    before = vrt_sha256(vrt)
    green = next(safe.rglob("*_B03_10m.jp2"))
    with rasterio.open(green) as file:
        profile = {**file.profile, "QUALITY": 100, "REVERSIBLE": "YES"}
    with rasterio.open(green, "w", **profile) as file:
        file.write(band_data(99, SIZE))
    assert vrt_sha256(vrt) != before
