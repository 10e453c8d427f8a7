"""STAC items whose assets are http(s) URLs: read through GDAL's /vsicurl/ from a local range server, never the
internet; a replaced remote file is noticed by its HEAD answer (ETag, Last-Modified, size)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from index_helpers import tiny_settings
from range_server import serve_folder
from stac_helpers import SIZE, band_data, tiles_by_item, write_catalog, write_cog

from index.decode import BadImageError, decode_image
from index.job import run_update
from index.sources.stac import STAC_FOLDER, read_items
from index.sources.stac import write_catalog as write_catalog_scenes
from index.store import open_version

RGB = ["red", "green", "blue"]
ITEMS = ("S2A_T33_20200513", "LC08_T33_20190801")  # a stack with a 20 m band, and one keyed red, green, blue


def _listing(catalog: Path, path: Path, base: str) -> None:
    """The ITEMS as newline-delimited items whose asset hrefs are `base` + the file's path in the catalog."""
    lines = []
    for item, folder in read_items(catalog)[0]:
        if item.id in ITEMS:
            document = item.to_dict(transform_hrefs=False)
            for asset in document["assets"].values():
                asset["href"] = f"{base}/{(folder / asset['href']).resolve().relative_to(catalog.parent).as_posix()}"
            lines.append(json.dumps(document))
    path.write_text("\n".join(lines) + "\n")


def _scenes(folder: Path) -> dict[str, Path]:
    """STAC item id -> its stacked VRT in a folder written by index.sources.stac."""
    return {vrt.name.rsplit("-", 1)[0]: vrt for vrt in folder.rglob("*.vrt")}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, tiny_arch_path: Path):
    """The catalog's files on a local HTTP server; a store built from items pointing there, and the same items
    with local paths stacked the same way."""
    tmp = tmp_path_factory.mktemp("remote")
    catalog = write_catalog(tmp / "catalog")
    with serve_folder(catalog.parent) as url:
        _listing(catalog, tmp / "local.ndjson", str(catalog.parent))
        _listing(catalog, tmp / "remote.ndjson", url)
        write_catalog_scenes(tmp / "local.ndjson", tmp / "local", tuple(RGB))
        root = tmp / "store"
        settings = tiny_settings(root, tiny_arch_path, stac=[tmp / "remote.ndjson"], stac_assets=RGB, tile_sizes=[64])
        report = run_update(root, settings, settings.store_config())
        yield catalog, url, root, report, tmp


def _tiles(root: Path) -> dict[str, list]:
    with open_version(root) as version:
        return tiles_by_item(version)


def test_http_assets_give_the_pixels_of_the_local_files(served) -> None:
    catalog, url, root, report, tmp = served
    assert report.status == "published" and report.skipped == []
    tiles = _tiles(root)
    assert set(tiles) == set(ITEMS) and all(len(records) == 9 for records in tiles.values())
    remote, local = _scenes(root / STAC_FOLDER / "0"), _scenes(tmp / "local")
    for item, records in tiles.items():
        assert f"/vsicurl/{url}/" in remote[item].read_text() and url not in local[item].read_text()
        for record in records:
            here = decode_image(local[item], 10**6, window=record.window)
            there = decode_image(remote[item], 10**6, window=record.window)
            assert np.array_equal(np.asarray(there.image), np.asarray(here.image)), (item, record.window)
            assert there.crs == here.crs == record.crs == "EPSG:32633"


def test_only_the_stores_own_vrts_may_read_the_network(served, tmp_path: Path) -> None:
    """The same XML copied into an archive folder is a user's VRT: refused before any request."""
    _, _, root, _, _ = served
    vrt = _scenes(root / STAC_FOLDER / "0")["S2A_T33_20200513"]
    copy = tmp_path / "archive" / "scene.vrt"
    copy.parent.mkdir()
    shutil.copy(vrt, copy)
    with pytest.raises(BadImageError, match="not a local file"):
        decode_image(copy, 10**6)


def test_update_replaces_the_item_whose_remote_file_changed(served, tiny_arch_path: Path) -> None:
    """Runs last: it changes the served catalog. The item's JSON and VRT are unchanged; only the server's HEAD
    answer (a new ETag and Last-Modified) says the green band was replaced."""
    catalog, _, root, _, _ = served
    before = {item: {r.sha256 for r in records} for item, records in _tiles(root).items()}
    vrt = _scenes(root / STAC_FOLDER / "0")["LC08_T33_20190801"]
    xml = vrt.read_text()
    changed = catalog.parent / "landsat-c2-l2" / "LC08_T33_20190801" / "green.tif"
    write_cog(changed, band_data(99, SIZE), 10.0)
    os.utime(changed, ns=(10**9, 10**9))
    report = run_update(root, tiny_settings(root, tiny_arch_path))
    counts = {k: report.counts[k] for k in ("files_new", "files_changed", "files_removed")}
    assert report.status == "published" and counts == {"files_new": 0, "files_changed": 1, "files_removed": 0}
    assert vrt.read_text() == xml
    after = {item: {r.sha256 for r in records} for item, records in _tiles(root).items()}
    assert after["S2A_T33_20200513"] == before["S2A_T33_20200513"]
    assert after["LC08_T33_20190801"].isdisjoint(before["LC08_T33_20190801"])
    with rasterio.open(vrt) as stacked, rasterio.open(changed) as green:
        assert np.array_equal(stacked.read(2), green.read(1))
