"""GDAL virtual rasters (``.vrt``) in an archive: read as scenes, identified by what they read.

A VRT is a small XML file that mosaics, subsets or restacks other rasters (its sources, usually given relative
to the VRT). GDAL reads it like any raster, so it is a scene like a GeoTIFF, with two differences:

- its bytes do not hold its pixels. Two folders can hold the same ``mosaic.vrt`` over different tiles, and a
  tile can change under an unchanged VRT. So a VRT's content hash covers its XML *and* the path (relative to
  the VRT), size and modification time of every file it reads, and it is recomputed at every scan;
- it can name any file GDAL can open, network locations (``/vsicurl/``, ``/vsis3/`` …) included. The indexer
  never reaches the network, so a VRT with a source that is not a local file is refused with that reason.

Only archive files are read as VRTs; an upload never is (it could name files of the server).
"""

from __future__ import annotations

import hashlib
import os
import xml.etree.ElementTree as ElementTree
from pathlib import Path

from index.layout import file_sha256

VRT_SUFFIX = ".vrt"
SOURCE_TAGS = ("SourceFilename", "SourceDataset")  # SourceDataset: the input of a warped VRT


def is_vrt(source: Path | bytes) -> bool:
    return isinstance(source, Path) and source.suffix.lower() == VRT_SUFFIX


def _remote(name: str) -> bool:
    return name.startswith("/vsi") or "://" in name


def vrt_sources(path: Path) -> list[str]:
    """The files a VRT reads, as written in its XML, relative ones joined to the VRT's folder. Read from the XML
    rather than from GDAL's file list, which checks that each source exists: a network request for a remote one."""
    try:
        root = ElementTree.fromstring(path.read_bytes())
    except (OSError, ElementTree.ParseError):
        return []
    names = []
    for tag in SOURCE_TAGS:
        for element in root.iter(tag):
            name = (element.text or "").strip()
            relative = element.get("relativeToVRT") == "1" and not _remote(name)
            names.append(str(path.parent / name) if relative else name)
    return names


def remote_source(path: Path) -> str | None:
    """The first file a VRT reads that is not a local file; None if all are."""
    return next((name for name in vrt_sources(path) if _remote(name)), None)


def vrt_sha256(path: Path) -> str:
    """Content hash of a VRT: its XML, then for every source its path relative to the VRT, size and mtime."""
    sources = vrt_sources(path)
    if not sources:
        return file_sha256(path)  # not a VRT GDAL can read: decoding reports why
    digest = hashlib.sha256(path.read_bytes())
    for name in sources:
        if _remote(name):
            digest.update(f"\0{name}".encode())
            continue
        source = path.parent / name
        try:
            stat = source.stat()
            facts = f"{stat.st_size}:{stat.st_mtime_ns}"
        except OSError:
            facts = "missing"
        digest.update(f"\0{os.path.relpath(source, path.parent)}\0{facts}".encode())
    return digest.hexdigest()
