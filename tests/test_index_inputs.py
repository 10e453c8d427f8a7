"""Nothing in an image folder is left out silently: VRTs are read as scenes, sidecars are listed as ignored,
other files as skipped with what they are, and a run that would publish an empty index fails, saying why."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from index_helpers import RSICD_TEST, rsicd_names, tiny_settings
from rasterio.transform import from_origin

from index.decode import BadImageError, decode_image
from index.job import run_update
from index.layout import CURRENT, LAST_RUN, file_sha256
from index.report import NothingToIndexError
from index.store import IndexStore, open_version
from posapl.cli import main as posapl_main

TILE_W, TILE_H = 100, 80
ORIGIN = (500_000.0, 4_000_000.0)
STAC_CATALOG = {"type": "Catalog", "stac_version": "1.0.0", "id": "scenes", "description": "d", "links": []}


def write_tiles(folder: Path, seed: int) -> None:
    """Two UTM tiles side by side (west, east) with different pixels."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for n, name in enumerate(("west", "east")):
        with rasterio.open(
            folder / f"{name}.tif", "w", driver="GTiff", width=TILE_W, height=TILE_H, count=3, dtype="uint8",
            crs="EPSG:32633", transform=from_origin(ORIGIN[0] + n * TILE_W * 10, ORIGIN[1], 10, 10),
        ) as out:
            out.write(rng.integers(0, 255, size=(3, TILE_H, TILE_W), dtype=np.uint8))


def vrt_text(west: str, east: str, relative: bool = True) -> str:
    """A VRT mosaic of the two tiles, as gdalbuildvrt writes one."""
    bands = ""
    for band in (1, 2, 3):
        sources = "".join(
            f'<SimpleSource><SourceFilename relativeToVRT="{int(relative)}">{name}</SourceFilename>'
            f"<SourceBand>{band}</SourceBand>"
            f'<SrcRect xOff="0" yOff="0" xSize="{TILE_W}" ySize="{TILE_H}"/>'
            f'<DstRect xOff="{n * TILE_W}" yOff="0" xSize="{TILE_W}" ySize="{TILE_H}"/></SimpleSource>'
            for n, name in enumerate((west, east))
        )
        colour = ("Red", "Green", "Blue")[band - 1]
        bands += (
            f'<VRTRasterBand dataType="Byte" band="{band}"><ColorInterp>{colour}</ColorInterp>{sources}'
            "</VRTRasterBand>"
        )
    return (
        f'<VRTDataset rasterXSize="{2 * TILE_W}" rasterYSize="{TILE_H}"><SRS>EPSG:32633</SRS>'
        f"<GeoTransform>{ORIGIN[0]}, 10, 0, {ORIGIN[1]}, 0, -10</GeoTransform>{bands}</VRTDataset>"
    )


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory, tiny_arch_path: Path) -> tuple[Path, Path, object]:
    """An archive with a VRT over tiles kept outside it, a remote VRT, a chip with sidecars, a STAC catalog,
    a caption file and a text file."""
    tmp = tmp_path_factory.mktemp("inputs")
    write_tiles(tmp / "tiles", seed=1)
    archive = tmp / "archive"
    (archive / "mosaics").mkdir(parents=True)
    (archive / "mosaics" / "mosaic.vrt").write_text(vrt_text("../../tiles/west.tif", "../../tiles/east.tif"))
    remote = "/vsicurl/http://127.0.0.1:9"
    (archive / "remote.vrt").write_text(vrt_text(f"{remote}/w.tif", f"{remote}/e.tif", relative=False))
    chip = rsicd_names(1)[0]
    shutil.copy(RSICD_TEST / chip, archive / chip)
    for sidecar in (f"{chip}.aux.xml", "chip.jgw", ".DS_Store"):
        (archive / sidecar).write_text("x")
    (archive / "catalog.json").write_text(json.dumps(STAC_CATALOG))
    (archive / "captions.json").write_text(json.dumps([{"image": chip, "caption": ["a chip ."]}]))
    (archive / "notes.txt").write_text("flight notes\n")
    root = tmp / "store"
    settings = tiny_settings(root, tiny_arch_path, [archive])
    report = run_update(root, settings, settings.store_config())
    return root, archive, report


def test_a_vrt_is_read_as_one_scene_of_its_sources(mixed) -> None:
    root, archive, report = mixed
    vrt = archive / "mosaics" / "mosaic.vrt"
    with open_version(root) as version:
        (record,) = [r for r in version.all_images() if r.path == "mosaics/mosaic.vrt"]
        assert (record.width, record.height, record.crs) == (2 * TILE_W, TILE_H, "EPSG:32633")
        east, south = ORIGIN[0] + 2 * TILE_W * 10, ORIGIN[1] - TILE_H * 10
        assert record.bbox == pytest.approx((ORIGIN[0], south, east, ORIGIN[1]))
        assert record.footprint is not None and record.gsd == pytest.approx(10.0 / 0.9996, rel=1e-4)
    pixels = np.asarray(decode_image(vrt, 10**6).image)
    for n, name in enumerate(("west", "east")):
        with rasterio.open(archive.parent / "tiles" / f"{name}.tif") as tile:
            expected = np.moveaxis(tile.read(), 0, -1)
        assert np.array_equal(pixels[:, n * TILE_W : (n + 1) * TILE_W], expected), name
    with pytest.raises(BadImageError, match="not an image"):
        decode_image(vrt.read_bytes(), 10**6)  # an uploaded VRT is never given to GDAL: it could name server files


def test_every_other_file_is_skipped_or_ignored_with_its_reason(mixed) -> None:
    root, archive, report = mixed
    skipped = dict(report.skipped)
    assert "not a local file" in skipped[str(archive / "remote.vrt")]
    assert "STAC catalog, not an image: STAC catalogs are indexed with --stac" in skipped[str(archive / "catalog.json")]
    assert "--captions" in skipped[str(archive / "captions.json")]
    assert "unsupported file type .txt" in skipped[str(archive / "notes.txt")]
    assert len(skipped) == 4 and report.counts["images"] == 2
    chip = rsicd_names(1)[0]
    ignored = dict(report.ignored)
    assert set(ignored) == {str(archive / f"{chip}.aux.xml"), str(archive / "chip.jgw"), str(archive / ".DS_Store")}
    assert "GDAL auxiliary metadata" in ignored[str(archive / f"{chip}.aux.xml")]
    assert "world file" in ignored[str(archive / "chip.jgw")]
    assert report.counts["ignored"] == 3
    last = json.loads((root / LAST_RUN).read_text())
    assert {entry["path"] for entry in last["ignored"]} == set(ignored) and last["counts"]["ignored"] == 3
    with open_version(root) as version:
        assert dict(version.skipped()) == skipped


def test_a_vrt_is_identified_by_what_it_reads(mixed, tmp_path: Path, tiny_arch_path: Path) -> None:
    """The same VRT text over other tiles is another scene; a changed tile under an unchanged VRT is new content."""
    source_root, archive, _ = mixed
    write_tiles(tmp_path / "tiles", seed=2)
    other = tmp_path / "archive" / "mosaics"
    other.mkdir(parents=True)
    shutil.copy(archive / "mosaics" / "mosaic.vrt", other / "mosaic.vrt")
    assert file_sha256(other / "mosaic.vrt") == file_sha256(archive / "mosaics" / "mosaic.vrt")
    root = tmp_path / "store"
    settings = tiny_settings(root, tiny_arch_path, [archive, tmp_path / "archive"])
    report = run_update(root, settings, settings.store_config())
    assert report.counts["duplicates"] == 0 and report.counts["images"] == 3
    with open_version(root) as version:
        before = {(r.source, r.path): r.sha256 for r in version.all_images()}
    write_tiles(tmp_path / "tiles", seed=3)  # same names and sizes, new pixels
    for tile in (tmp_path / "tiles").iterdir():
        os.utime(tile, ns=(10**9, 10**9))  # a modification time the first scan cannot have seen
    report = run_update(root, tiny_settings(root, tiny_arch_path))
    assert report.status == "published" and (report.counts["files_changed"], report.counts["files_new"]) == (1, 0)
    with open_version(root) as version:
        after = {(r.source, r.path): r.sha256 for r in version.all_images()}
    assert after[(1, "mosaics/mosaic.vrt")] != before[(1, "mosaics/mosaic.vrt")]
    assert after[(0, "mosaics/mosaic.vrt")] == before[(0, "mosaics/mosaic.vrt")]


def _build(images: list[str], root: Path, arch: Path) -> int:
    argv = ["index", "build", "--images", *images, "--out", str(root), "--pretrained", "random"]
    return posapl_main([*argv, "--arch", str(arch), "--device", "cpu", "--num-workers", "0", "--no-progress"])


def test_a_stac_catalog_folder_fails_saying_so(tmp_path: Path, tiny_arch_path: Path, capsys) -> None:
    stac = tmp_path / "stac"
    (stac / "item-1").mkdir(parents=True)
    (stac / "catalog.json").write_text(json.dumps(STAC_CATALOG))
    item = {"type": "Feature", "stac_version": "1.0.0", "id": "item-1", "assets": {}, "links": []}
    (stac / "item-1" / "item-1.json").write_text(json.dumps(item))
    assert _build([str(stac)], tmp_path / "store", tiny_arch_path) == 1
    err = capsys.readouterr().err
    assert f"it holds a STAC catalog ({stac / 'catalog.json'} and 1 more STAC files)" in err
    assert "STAC catalogs are indexed with --stac PATH" in err and "An empty index is never published" in err
    assert f"skipped {stac / 'item-1' / 'item-1.json'}: a STAC item" in err
    assert not (tmp_path / "store" / CURRENT).exists()


def test_files_given_as_image_folders_name_the_right_option(tmp_path: Path, tiny_arch_path: Path, capsys) -> None:
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps(STAC_CATALOG))
    captions = tmp_path / "captions.json"
    captions.write_text("[]")
    chip = tmp_path / "chip.jpg"
    shutil.copy(RSICD_TEST / rsicd_names(1)[0], chip)
    root = tmp_path / "store"
    assert _build([str(catalog)], root, tiny_arch_path) == 1
    expected = "is a STAC catalog, not an image folder: --images takes image folders; STAC catalogs are indexed with"
    assert expected in capsys.readouterr().err
    assert _build([str(captions)], root, tiny_arch_path) == 1
    assert "is a JSON file, not an image folder: caption and annotation files go to --captions" in (
        capsys.readouterr().err
    )
    assert _build([str(chip)], root, tiny_arch_path) == 1
    assert f"--images takes folders (its folder is {tmp_path})" in capsys.readouterr().err
    assert _build([str(tmp_path / "nope")], root, tiny_arch_path) == 1
    assert "not found" in capsys.readouterr().err
    assert not (root / "config.json").exists()


def test_empty_or_unindexable_folders_publish_nothing(tmp_path: Path, tiny_arch_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    settings = tiny_settings(tmp_path / "a", tiny_arch_path, [empty])
    with pytest.raises(NothingToIndexError, match="the folders hold no files at all"):
        run_update(tmp_path / "a", settings, settings.store_config())
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    (junk / "broken.jpg.aux.xml").write_text("x")
    settings = tiny_settings(tmp_path / "b", tiny_arch_path, [junk])
    with pytest.raises(NothingToIndexError, match="all 1 image files were skipped") as info:
        run_update(tmp_path / "b", settings, settings.store_config())
    assert [path for path, _ in info.value.skipped] == [str(junk / "broken.jpg")] and len(info.value.ignored) == 1
    (junk / "broken.jpg").unlink()
    with pytest.raises(NothingToIndexError, match=r"no image files \(1 ignored\)"):
        run_update(tmp_path / "b", settings, settings.store_config())


def test_an_update_that_would_empty_the_store_keeps_the_live_version(
    tmp_path: Path, tiny_arch_path: Path, capsys
) -> None:
    archive = tmp_path / "archive"
    archive.mkdir()
    for name in rsicd_names(2):
        shutil.copy(RSICD_TEST / name, archive / name)
    root = tmp_path / "store"
    assert _build([str(archive)], root, tiny_arch_path) == 0
    for path in archive.iterdir():
        path.unlink()  # e.g. the share holding the archive is not mounted
    argv = ["index", "update", "--root", str(root), "--device", "cpu", "--num-workers", "0", "--no-progress"]
    code = posapl_main(argv)
    assert code == 1 and "An empty index is never published; live version 1 stays" in capsys.readouterr().err
    assert IndexStore(root).current_version() == 1
    with open_version(root) as version:
        assert version.manifest.counts["images"] == 2
