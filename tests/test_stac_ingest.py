"""`posapl index build|update --stac`: items become scenes of their stacked assets, with their STAC facts."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
from index_helpers import tiny_settings
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from stac_helpers import SIZE, band_data, tiles_by_item, write_catalog, write_cog

from index.job import PAUSE_MARKER, run_update
from index.layout import STAGING_PREFIX
from index.sources.stac import STAC_FOLDER, read_items
from index.sources.stac import write_catalog as write_catalog_scenes
from index.store import open_version
from posapl.cli import main as posapl_main

RGB = ["red", "green", "blue"]
S2 = "sentinel-2-l2a"


@pytest.fixture(scope="module")
def stacked(tmp_path_factory: pytest.TempPathFactory, tiny_arch_path: Path):
    """A store built from the catalog with red,green,blue: by eo:bands common names (Sentinel-2) or keys (Landsat)."""
    tmp = tmp_path_factory.mktemp("stac")
    catalog = write_catalog(tmp / "catalog")
    root = tmp / "store"
    settings = tiny_settings(root, tiny_arch_path, stac=[catalog], stac_assets=RGB, tile_sizes=[64])
    report = run_update(root, settings, settings.store_config())
    return catalog, root, report


def test_items_become_scenes_with_their_stac_facts(stacked) -> None:
    catalog, root, report = stacked
    with open_version(root) as version:
        grouped = tiles_by_item(version)
        assert set(grouped) == {"S2A_T33_20200513", "S2B_T33_20210701", "LC08_T33_20190801"}
        assert all(len(records) == 9 for records in grouped.values())  # 128 px in 64 px tiles, overlap 0.25
        facts = {record.item: record for record in version.stac([r[0].scene_id for r in grouped.values()]).values()}
    first = facts["S2A_T33_20200513"]
    assert (first.collection, first.cloud_cover, first.platform) == (S2, 12.5, "sentinel-2a")
    assert first.datetime == "2020-05-13T10:00:00+00:00"
    assert first.self_href == str(catalog.parent / S2 / "S2A_T33_20200513" / "S2A_T33_20200513.json")
    landsat = facts["LC08_T33_20190801"]
    assert (landsat.collection, landsat.platform) == ("landsat-c2-l2", "landsat-8")
    for records in grouped.values():
        for record in records:
            assert record.time_source == "stac" and record.crs == "EPSG:32633" and record.footprint is not None
    assert {r.time for r in grouped["S2B_T33_20210701"]} == {"2021-07-01T10:00:00+00:00"}


def test_unusable_items_are_reported_and_skipped(stacked) -> None:
    catalog, root, report = stacked
    skipped = dict(report.skipped)
    missing = catalog.parent / S2 / "S2A_T33_MISSING"
    assert f"asset file {missing / 'B03.tif'} does not exist" in skipped[str(missing / "S2A_T33_MISSING.json")]
    aerial = catalog.parent / "aerial" / "aerial-rgb" / "aerial-1" / "aerial-1.json"
    assert "item has no asset 'red' (assets: visual)" in skipped[str(aerial)]
    assert report.status == "published" and report.counts["skipped"] == 2


def test_the_stacked_scene_equals_a_stack_read_by_hand(stacked) -> None:
    """B04 and B03 are read as they are; B02 (20 m) is resampled onto the 10 m grid exactly as GDAL's own
    warp (WarpedVRT) and resampled read do."""
    catalog, root, _ = stacked
    folder = catalog.parent / S2 / "S2A_T33_20200513"
    (vrt,) = (root / STAC_FOLDER / "0" / S2).glob("S2A_T33_20200513-*.vrt")
    with rasterio.open(vrt) as scene:
        stack = scene.read()
        assert (scene.crs.to_epsg(), scene.transform.a, scene.width) == (32633, 10.0, SIZE)
    with rasterio.open(folder / "B04.tif") as red, rasterio.open(folder / "B03.tif") as green:
        assert np.array_equal(stack[0], red.read(1)) and np.array_equal(stack[1], green.read(1))
        grid = dict(crs=red.crs, transform=red.transform, width=red.width, height=red.height)
    with rasterio.open(folder / "B02.tif") as blue:
        assert blue.width == SIZE // 2
        with WarpedVRT(blue, resampling=Resampling.bilinear, **grid) as warped:
            assert np.array_equal(stack[2], warped.read(1))
        assert np.array_equal(stack[2], blue.read(1, out_shape=(SIZE, SIZE), resampling=Resampling.bilinear))


def test_the_visual_asset_by_default_and_a_sub_catalog_by_relative_href(tmp_path: Path, tiny_arch_path: Path) -> None:
    catalog = write_catalog(tmp_path / "catalog")
    sub = json.loads(catalog.read_text())
    assert any(link["href"].startswith("./aerial/") for link in sub["links"] if link["rel"] == "child")
    root = tmp_path / "store"
    argv = ["index", "build", "--stac", str(catalog.parent), "--out", str(root), "--pretrained", "random"]
    argv += ["--arch", str(tiny_arch_path), "--device", "cpu", "--num-workers", "0", "--no-progress"]
    assert posapl_main([*argv, "--tile-sizes", "64"]) == 0  # the catalog's folder stands for its catalog.json
    assert json.loads((root / "config.json").read_text())["stac"] == [str(catalog)]
    with open_version(root) as version:
        grouped = tiles_by_item(version)
        assert set(grouped) == {"aerial-1"}
        (row,) = version.stac([grouped["aerial-1"][0].scene_id]).values()
        assert (row.collection, row.platform, row.cloud_cover) == ("aerial-rgb", "survey-plane", None)
        assert {r.time for r in grouped["aerial-1"]} == {"2022-03-04T08:00:00+00:00"}  # start_datetime
        reasons = dict(version.skipped())
    assert "no asset 'visual'" in reasons[str(catalog.parent / S2 / "S2A_T33_20200513" / "S2A_T33_20200513.json")]


def test_stac_filters_are_exact(stacked) -> None:
    _, root, _ = stacked
    with open_version(root) as version:
        grouped = tiles_by_item(version)
        ids = {item: {r.id for r in records} for item, records in grouped.items()}

        def selected(collections=None, cloud=None, platforms=None) -> set[int]:
            return set(version.image_ids_by_stac(collections, cloud, platforms).tolist())

        assert selected([S2]) == ids["S2A_T33_20200513"] | ids["S2B_T33_20210701"]
        assert selected(["landsat-c2-l2"]) == ids["LC08_T33_20190801"]
        assert selected(cloud=30.0) == ids["S2A_T33_20200513"] | ids["LC08_T33_20190801"]  # at most, inclusive
        assert selected(cloud=12.4) == set()
        assert selected([S2], 50.0, ["sentinel-2a"]) == ids["S2A_T33_20200513"]
        assert selected(platforms=["sentinel-2"]) == set()  # exact names, no prefix match
        assert selected(["Sentinel-2-L2A"]) == set()


def test_items_in_one_file_and_one_item_a_line(tmp_path: Path) -> None:
    catalog = write_catalog(tmp_path / "catalog")
    items = [item for item, _ in read_items(catalog)[0]]
    for item in items:
        item.make_asset_hrefs_absolute()
    collection = pystac.ItemCollection(items)
    listing = tmp_path / "items.json"
    listing.write_text(json.dumps(collection.to_dict(transform_hrefs=False)))
    lines = tmp_path / "items.ndjson"
    lines.write_text("\n".join(json.dumps(i.to_dict(transform_hrefs=False)) for i in items) + "\n{not json\n")
    found, skipped = read_items(listing)
    assert [item.id for item, _ in found] == [item.id for item in items]
    found, skipped = read_items(lines)
    assert [item.id for item, _ in found] == [item.id for item in items]
    assert skipped and "malformed STAC item" in skipped[0][1] and skipped[0][0].endswith("line 6")


def test_file_url_and_unsupported_scheme_assets(tmp_path: Path) -> None:
    """A file:// href is a local file; an s3:// asset (no GDAL name for it without credentials) is skipped."""
    visual = tmp_path / "photo" / "visual.tif"
    write_cog(visual, (band_data(5, SIZE)[[0, 0, 0]] // 64).astype(np.uint8), 10.0, nodata=None)
    local = {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": "local",
        "geometry": None,
        "properties": {"datetime": "2020-01-01T00:00:00Z"},
        "links": [],
        "assets": {"visual": {"href": visual.as_uri()}},
    }
    remote = {**local, "id": "remote", "assets": {"visual": {"href": "s3://bucket/visual.tif"}}}
    (tmp_path / "garbage.tif").write_bytes(b"not a raster at all")
    garbage = {**local, "id": "garbage", "assets": {"visual": {"href": "garbage.tif"}}}  # relative to the listing
    lines = tmp_path / "items.ndjson"
    lines.write_text("".join(json.dumps(item) + "\n" for item in (local, remote, garbage)))
    result = write_catalog_scenes(lines, tmp_path / "scenes", None)
    assert [facts.item for facts in result.scenes.values()] == ["local"]
    reasons = [reason for _, reason in result.skipped]
    assert "STAC item remote: asset href s3://bucket/visual.tif has an unsupported scheme 's3'" in reasons[0]
    assert f"STAC item garbage: unreadable asset {tmp_path / 'garbage.tif'}" in reasons[1]
    (vrt,) = (tmp_path / "scenes").rglob("*.vrt")
    assert str(visual) in vrt.read_text()


def test_an_asset_that_fails_to_decode_is_reported_by_its_item(tmp_path: Path, tiny_arch_path: Path) -> None:
    """A real COG whose tiles are truncated (shared data corrupt.tif) passes the header read and fails a window."""
    from index_helpers import DATA

    item = {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": "broken-tiles",
        "geometry": None,
        "links": [],
        "properties": {"datetime": "2020-01-01T00:00:00Z"},
        "assets": {"visual": {"href": str(DATA / "geotiff" / "corrupt.tif")}},
    }
    good = {**item, "id": "fine", "assets": {"visual": {"href": str(DATA / "geotiff" / "RGB.byte.tif")}}}
    lines = tmp_path / "items.ndjson"
    lines.write_text(f"{json.dumps(item)}\n{json.dumps(good)}\n")
    root = tmp_path / "store"
    settings = tiny_settings(root, tiny_arch_path, stac=[lines])
    report = run_update(root, settings, settings.store_config())
    (reason,) = [reason for _, reason in report.skipped]
    assert reason.startswith("STAC item broken-tiles: window at") and "unreadable raster" in reason
    with open_version(root) as version:
        assert set(tiles_by_item(version)) == {"fine"}


def test_update_drops_removed_items_and_replaces_changed_ones(tmp_path: Path, tiny_arch_path: Path) -> None:
    catalog = write_catalog(tmp_path / "catalog")
    root = tmp_path / "store"
    settings = tiny_settings(root, tiny_arch_path, stac=[catalog], stac_assets=RGB, tile_sizes=[64])
    run_update(root, settings, settings.store_config())
    with open_version(root) as version:
        before = {item: {r.sha256 for r in records} for item, records in tiles_by_item(version).items()}

    s2 = pystac.read_file(str(catalog.parent / S2 / "collection.json"))
    s2.remove_item("S2B_T33_20210701")
    s2.save_object(include_self_link=False)
    shutil.rmtree(catalog.parent / S2 / "S2B_T33_20210701")
    changed = catalog.parent / "landsat-c2-l2" / "LC08_T33_20190801" / "green.tif"
    write_cog(changed, band_data(99, SIZE), 10.0)
    os.utime(changed, ns=(10**9, 10**9))  # a modification time the first scan cannot have seen
    (catalog.parent / S2 / "broken").mkdir()
    (catalog.parent / S2 / "broken" / "broken.json").write_text("{not json")
    links = json.loads((catalog.parent / S2 / "collection.json").read_text())
    links["links"].append({"rel": "item", "href": "./broken/broken.json", "type": "application/json"})
    (catalog.parent / S2 / "collection.json").write_text(json.dumps(links))

    report = run_update(root, tiny_settings(root, tiny_arch_path))
    # files: the dropped item's scene removed, the replaced item's scene changed (same place, new pixels);
    # items: the dropped item's 9 tiles removed, the replaced item's 9 tiles embedded again (its green band changed)
    counts = {k: report.counts[k] for k in ("files_new", "files_changed", "files_removed")}
    assert report.status == "published" and counts == {"files_new": 0, "files_changed": 1, "files_removed": 1}
    assert (report.counts["items_embedded"], report.counts["items_reused"], report.counts["items_removed"]) == (9, 0, 9)
    with open_version(root) as version:
        after = {item: {r.sha256 for r in records} for item, records in tiles_by_item(version).items()}
        assert all(r.time_source == "stac" for r in version.all_images())
    assert set(after) == {"S2A_T33_20200513", "LC08_T33_20190801"}
    assert after["S2A_T33_20200513"] == before["S2A_T33_20200513"]
    assert after["LC08_T33_20190801"] != before["LC08_T33_20190801"]
    skipped = dict(report.skipped)
    assert "malformed STAC item" in skipped[str(catalog.parent / S2 / "broken" / "broken.json")]
    assert not list((root / STAC_FOLDER / "0" / S2).glob("S2B_T33_20210701-*.vrt"))

    again = run_update(root, tiny_settings(root, tiny_arch_path))
    assert again.status == "unchanged"  # the catalog read again, nothing changed: nothing is published


def test_a_killed_catalog_update_leaves_the_live_version_whole(tmp_path: Path, tiny_arch_path: Path) -> None:
    """SIGKILL after staging the new version: the live one still opens with every item; the next run publishes."""
    catalog = write_catalog(tmp_path / "catalog")
    root = tmp_path / "store"
    settings = tiny_settings(root, tiny_arch_path, stac=[catalog], stac_assets=RGB, tile_sizes=[64])
    run_update(root, settings, settings.store_config())
    s2 = pystac.read_file(str(catalog.parent / S2 / "collection.json"))
    s2.remove_item("S2B_T33_20210701")
    s2.save_object(include_self_link=False)

    command = [sys.executable, "-m", "posapl.cli", "index", "update", "--num-workers", "0", "--no-progress"]
    command += ["--device", "cpu", "--root", str(root)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "POSAPL_FAULT_PAUSE_AT": "staged"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 180
    while not (root / PAUSE_MARKER).is_file():
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline, "the update never reached the staged version"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert list(root.glob(f"{STAGING_PREFIX}*"))
    with open_version(root) as version:
        assert version.number == 1 and len(tiles_by_item(version)) == 3

    assert run_update(root, tiny_settings(root, tiny_arch_path)).status == "published"
    with open_version(root) as version:
        assert version.number == 2 and set(tiles_by_item(version)) == {"S2A_T33_20200513", "LC08_T33_20190801"}
    assert not list(root.glob(f"{STAGING_PREFIX}*"))


def test_a_folder_of_per_band_files_is_stacked_by_file_name_pattern(tmp_path: Path, tiny_arch_path: Path) -> None:
    bands = tmp_path / "bands"
    scene = "T33UUP_20200513T100031"
    for number, band in enumerate(("B02", "B03", "B04")):
        half = band == "B02"
        write_cog(
            bands / "2020" / f"{scene}_{band}.tif",
            band_data(number, SIZE // 2 if half else SIZE),
            20.0 if half else 10.0,
        )
    write_cog(bands / "T33UUP_20210101T100031_B04.tif", band_data(7, SIZE), 10.0)  # its B03 and B02 are missing
    (bands / "2020" / "notes.txt").write_text("not a band")
    root = tmp_path / "store"
    patterns = ["*_B04.tif", "*_B03.tif", "*_B02.tif"]
    settings = tiny_settings(root, tiny_arch_path, band_folders=[bands], band_files=patterns, tile_sizes=[64])
    report = run_update(root, settings, settings.store_config())
    with open_version(root) as version:
        records = version.all_images()
        assert len(records) == 9 and {r.path for r in records} == {f"2020/{scene}.vrt"}
        assert {(r.time, r.time_source) for r in records} == {("2020-05-13T10:00:31+00:00", "filename")}
        assert version.stac([r.scene_id for r in records]) == {}
    skipped = dict(report.skipped)
    assert "none matches *_B03.tif, *_B02.tif" in skipped[str(bands / "T33UUP_20210101T100031")]
    assert "matches no band file pattern" in skipped[str(bands / "2020" / "notes.txt")]
    with (
        rasterio.open(root / "bands" / "0" / "2020" / f"{scene}.vrt") as stacked,
        rasterio.open(bands / "2020" / f"{scene}_B04.tif") as red,
        rasterio.open(bands / "2020" / f"{scene}_B02.tif") as blue,
    ):
        assert np.array_equal(stacked.read(1), red.read(1))
        assert np.array_equal(stacked.read(3), blue.read(1, out_shape=(SIZE, SIZE), resampling=Resampling.bilinear))


def test_a_band_in_another_crs_is_warped_onto_the_first_bands_grid(tmp_path: Path) -> None:
    """B02 delivered in Web Mercator next to B04 and B03 in UTM: the stack holds it warped onto the UTM grid.

    The reference is rasterio.warp.reproject of the same file onto the same grid, bilinear. The tolerance is
    zero: both are GDAL's warper with the same kernel and the same transformer (the approximate one, within
    0.125 px of exact, sampled along the same rows), so they compute the same values. A window read alone gives
    the same values as the whole band: the warp is done window by window.
    """
    from rasterio.warp import calculate_default_transform, reproject

    from index.sources.stack import stack_vrt

    for number, band in enumerate(("B04", "B03")):
        write_cog(tmp_path / f"{band}.tif", band_data(number, SIZE), 10.0)
    with rasterio.open(tmp_path / "B04.tif") as red:
        grid = dict(crs=red.crs, transform=red.transform, width=red.width, height=red.height)
        utm = band_data(2, SIZE)[0]
        transform, width, height = calculate_default_transform(red.crs, "EPSG:3857", SIZE, SIZE, *red.bounds)
    mercator = np.zeros((height, width), np.uint16)
    reproject(
        utm,
        mercator,
        src_transform=grid["transform"],
        src_crs=grid["crs"],
        dst_transform=transform,
        dst_crs="EPSG:3857",
        resampling=Resampling.bilinear,
    )
    profile = dict(
        driver="GTiff",
        width=width,
        height=height,
        count=1,
        dtype="uint16",
        crs="EPSG:3857",
        transform=transform,
        nodata=0,
    )
    with rasterio.open(tmp_path / "B02.tif", "w", **profile) as blue:
        blue.write(mercator, 1)
    vrt = tmp_path / "stack.vrt"
    vrt.write_text(stack_vrt([str(tmp_path / f"{band}.tif") for band in ("B04", "B03", "B02")]))
    expected = np.zeros((SIZE, SIZE), np.uint16)
    reproject(
        mercator,
        expected,
        src_transform=transform,
        src_crs="EPSG:3857",
        src_nodata=0,
        dst_transform=grid["transform"],
        dst_crs=grid["crs"],
        dst_nodata=0,
        resampling=Resampling.bilinear,
    )
    with rasterio.open(vrt) as scene, rasterio.open(tmp_path / "B04.tif") as red:
        assert (scene.crs, scene.transform, scene.count) == (grid["crs"], grid["transform"], 3)
        assert np.array_equal(scene.read(1), red.read(1))
        window = rasterio.windows.Window(32, 32, 64, 64)
        assert np.array_equal(scene.read(3, window=window), expected[32:96, 32:96])  # a window read alone
        assert np.array_equal(scene.read(3), expected) and expected.min() > 0  # no nodata inside the grid
