"""Every item says where its acquisition time comes from: the file's metadata, its product name, or its mtime."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import rasterio
from index_helpers import RSICD_TEST, rsicd_names, tiny_settings
from rasterio.transform import from_origin

from index.acquired import acquisition, filename_time
from index.job import run_update
from index.layout import MANIFEST, META, file_sha256
from index.store import IndexStore, open_version

SENTINEL2 = "S2A_MSIL1C_20200513T184921_N0209_R113_T10SEG_20200520T220301"
LANDSAT = "LC08_L1TP_044034_20200513_20200820_02_T1"
MTIME = 1_600_000_000.0  # 2020-09-13T12:26:40Z


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (f"{SENTINEL2}.jp2", "2020-05-13T18:49:21+00:00"),  # sensing time, not the later product time
        ("T10SEG_20200513T184921_B02.jp2", "2020-05-13T18:49:21+00:00"),
        (f"{LANDSAT}.tif", "2020-05-13T00:00:00+00:00"),  # acquisition first, processing (0820) second
        (f"{LANDSAT}_B4.TIF", "2020-05-13T00:00:00+00:00"),
        ("20200513_184921_1014_3B_AnalyticMS.tif", "2020-05-13T00:00:00+00:00"),
        ("scene-20191231.tif", "2019-12-31T00:00:00+00:00"),
        ("tile_20201399_20200101.tif", "2020-01-01T00:00:00+00:00"),  # month 13 is no date: the next token is
        ("airport_12.jpg", None),
        ("x20200513_a.tif", None),  # glued to a letter: part of another token
        ("id_120200513.tif", None),  # nine digits
        ("frame_12345678.tif", None),  # year 1234
        ("LC08_L1TP_044034_2020-05-13.tif", None),  # not the compact form
    ],
)
def test_dates_in_product_file_names(name: str, expected: str | None) -> None:
    assert filename_time(name) == expected


def test_metadata_then_file_name_then_mtime() -> None:
    assert acquisition("2021-01-01T00:00:00+00:00", f"{LANDSAT}.tif", MTIME).time_source == "metadata"
    by_name = acquisition(None, f"{LANDSAT}.tif", MTIME)
    assert (by_name.time, by_name.time_source) == ("2020-05-13T00:00:00+00:00", "filename")
    by_mtime = acquisition(None, "airport_12.jpg", MTIME)
    assert (by_mtime.time, by_mtime.time_source) == ("2020-09-13T12:26:40+00:00", "file_mtime")


def _dated_tiff(path: Path, stamp: str) -> None:
    data = np.random.default_rng(3).integers(0, 255, size=(3, 64, 64), dtype=np.uint8)
    with rasterio.open(
        path, "w", driver="GTiff", width=64, height=64, count=3, dtype="uint8", crs="EPSG:32633",
        transform=from_origin(500000, 4000000, 10, 10),
    ) as out:
        out.write(data)
        out.update_tags(TIFFTAG_DATETIME=stamp)


@pytest.fixture(scope="module")
def dated_store(tmp_path_factory: pytest.TempPathFactory, tiny_arch_path: Path) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("acquired")
    archive = tmp / "archive"
    archive.mkdir()
    _dated_tiff(archive / f"{SENTINEL2}.tif", "2023:06:01 10:00:00")  # metadata beats the name
    first, second = rsicd_names(2)
    (archive / f"{LANDSAT}.jpg").write_bytes((RSICD_TEST / first).read_bytes())
    (archive / "plain.jpg").write_bytes((RSICD_TEST / second).read_bytes())
    for path in archive.iterdir():
        os.utime(path, (MTIME, MTIME))
    root = tmp / "store"
    settings = tiny_settings(root, tiny_arch_path, [archive])
    run_update(root, settings, settings.store_config())
    return root, archive


def test_items_and_scenes_record_the_time_source(dated_store: tuple[Path, Path]) -> None:
    root, _ = dated_store
    with open_version(root) as version:
        assert version.has_time_sources
        found = {r.path: (r.time, r.time_source) for r in version.all_images()}
        scenes = {r.path: (version.scene(r.scene_id).time, version.scene(r.scene_id).time_source)
                  for r in version.all_images()}
    assert found == scenes == {
        f"{SENTINEL2}.tif": ("2023-06-01T10:00:00+00:00", "metadata"),
        f"{LANDSAT}.jpg": ("2020-05-13T00:00:00+00:00", "filename"),
        "plain.jpg": ("2020-09-13T12:26:40+00:00", "file_mtime"),
    }


def _strip_time_source(version_dir: Path) -> None:
    """Make a version look as versions did before time sources: no time_source columns, checksums updated."""
    db = sqlite3.connect(version_dir / META)
    db.execute("ALTER TABLE images DROP COLUMN time_source")
    db.execute("ALTER TABLE scenes DROP COLUMN time_source")
    db.commit()
    db.close()
    manifest = json.loads((version_dir / MANIFEST).read_text())
    manifest["files"][META] = {"sha256": file_sha256(version_dir / META), "bytes": (version_dir / META).stat().st_size}
    (version_dir / MANIFEST).write_text(json.dumps(manifest))


def test_older_versions_still_read_and_an_update_rebuilds_them(
    dated_store: tuple[Path, Path], tmp_path: Path, tiny_arch_path: Path
) -> None:
    source_root, archive = dated_store
    root = tmp_path / "store"
    shutil.copytree(source_root, root)
    live = IndexStore(root).current_version()
    _strip_time_source(IndexStore(root).version_path(live))
    with open_version(root) as version:
        assert not version.has_time_sources
        records = version.all_images()
        assert len(records) == 3 and all(r.time is not None and r.time_source is None for r in records)
        assert version.scene(records[0].scene_id).time_source is None
    report = run_update(root, tiny_settings(root, tiny_arch_path))
    assert report.status == "published" and "predates time sources" in report.full_rebuild
    with open_version(root) as version:
        assert {r.time_source for r in version.all_images()} == {"metadata", "filename", "file_mtime"}
