"""Every file of an image folder that is not indexed is accounted for, with its reason.

Files come in three kinds: images and rasters (index.decode.IMAGE_SUFFIXES), which are indexed or skipped
with the reason they could not be; files on the ignore list below, which belong beside a raster (GDAL and GIS
sidecars) or to the operating system, and are counted and listed as *ignored*, not as errors; and anything
else, which is *skipped* with what it is: a STAC catalog, collection or item (it belongs to ``--stac``,
which reads its items and assets), another JSON file (perhaps a caption file, which belongs to
``--captions``), or an unsupported type.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

WORLD_FILE = "world file (georeferencing of the image beside it)"
# Name endings (lower case) of files that are never indexed and never an error.
IGNORED: dict[str, str] = {
    ".aux.xml": "GDAL auxiliary metadata (statistics, georeferencing) of the raster beside it",
    ".aux": "ERDAS auxiliary metadata of the raster beside it",
    ".ovr": "external overviews of the raster beside it",
    ".rrd": "ERDAS reduced-resolution overviews of the raster beside it",
    ".msk": "external nodata mask of the raster beside it",
    ".prj": "projection (CRS) of the raster beside it",
    ".tfw": WORLD_FILE,
    ".tifw": WORLD_FILE,
    ".tiffw": WORLD_FILE,
    ".jgw": WORLD_FILE,
    ".jpgw": WORLD_FILE,
    ".pgw": WORLD_FILE,
    ".pngw": WORLD_FILE,
    ".gfw": WORLD_FILE,
    ".j2w": WORLD_FILE,
    ".bpw": WORLD_FILE,
    ".wld": WORLD_FILE,
    ".rpb": "RPC camera model of the raster beside it",
    "_rpc.txt": "RPC camera model of the raster beside it",
    ".imd": "image metadata of the raster beside it",
    ".ds_store": "operating-system folder metadata",
    "thumbs.db": "operating-system folder metadata",
    "desktop.ini": "operating-system folder metadata",
}
STAC_FILE_NAMES = frozenset({"catalog.json", "collection.json"})
JSON_SNIFF_BYTES = 16 << 20  # larger JSON files are not parsed to look for a STAC document
STAC_TYPES = {
    "Catalog": "catalog", "Collection": "collection", "Feature": "item", "FeatureCollection": "item collection"
}
STAC_OPTION = "STAC catalogs are indexed with --stac PATH (posapl index build|update)"


@dataclass(frozen=True)
class NotIndexed:
    path: str
    reason: str
    ignored: bool  # on the ignore list (not an error)


def ignored_reason(name: str) -> str | None:
    """Why a file of this name is on the ignore list; None if it is not."""
    lower = name.lower()
    return next((reason for ending, reason in IGNORED.items() if lower.endswith(ending)), None)


def stac_kind(path: Path) -> str | None:
    """"catalog", "collection", "item" or "item collection" for a STAC document, else None."""
    if path.suffix.lower() != ".json":
        return None
    try:
        if path.stat().st_size > JSON_SNIFF_BYTES:
            return path.stem.lower() if path.name.lower() in STAC_FILE_NAMES else None
        document = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(document, dict) or "stac_version" not in document:
        return None
    return STAC_TYPES.get(document.get("type"), "catalog")


def not_indexed(path: Path) -> NotIndexed:
    """The reason a file that is not an image is left out, and whether that is on the ignore list."""
    reason = ignored_reason(path.name)
    if reason is not None:
        return NotIndexed(str(path), reason, ignored=True)
    kind = stac_kind(path)
    if kind is not None:
        reason = f"a STAC {kind}, not an image: {STAC_OPTION}"
    elif path.suffix.lower() == ".json":
        reason = "a JSON file, not an image (caption and annotation files belong to --captions)"
    else:
        reason = f"not an image: unsupported file type {path.suffix.lower() or '(no extension)'}"
    return NotIndexed(str(path), reason, ignored=False)


def image_folder_problem(path: Path) -> str | None:
    """Why `path` cannot be an image folder (`--images`), naming the option a file belongs to; None for a folder."""
    if path.is_dir():
        return None
    if not path.exists():
        return f"not found: {path}"
    kind = stac_kind(path)
    if kind is not None:
        return f"{path} is a STAC {kind}, not an image folder: --images takes image folders; {STAC_OPTION}"
    if path.suffix.lower() == ".json":
        return f"{path} is a JSON file, not an image folder: caption and annotation files go to --captions"
    return f"{path} is a file, not an image folder: --images takes folders (its folder is {path.parent})"
