"""GDAL virtual rasters (``.vrt``) in an archive: read as scenes, identified by what they read.

A VRT is a small XML file that mosaics, subsets or restacks other rasters (its sources, usually given relative
to the VRT). GDAL reads it like any raster, so it is a scene like a GeoTIFF, with two differences:

- its bytes do not hold its pixels. Two folders can hold the same ``mosaic.vrt`` over different tiles, and a
  tile can change under an unchanged VRT. So a VRT's content hash covers its XML *and* the path (relative to
  the VRT), size and modification time of every file it reads, and it is recomputed at every scan;
- it can name any file GDAL can open, network locations (``/vsicurl/``, ``/vsis3/`` …) included. A VRT of the
  archive with a source that is not a local file is refused with that reason: archive files must not make the
  indexer or the service reach arbitrary network locations.

The one exception are the VRTs the store writes itself (ROOT/stac/<n>/, ROOT/bands/<n>/, index.sources) for
STAC items whose assets are ``http(s)`` URLs: their sources may be ``/vsicurl/http(s)://`` URLs, read window by
window with range requests. A remote file cannot be hashed without downloading it, so what stands for its
content is what the server says of it in a HEAD answer: ETag, Last-Modified and size (a server that sends none
of the first two and replaces a file by one of the same size is not noticed).

Only archive files are read as VRTs; an upload never is (it could name files of the server).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import urllib.error
import urllib.request
import xml.etree.ElementTree as ElementTree
from pathlib import Path

from index.layout import CONFIG, LOCK, file_sha256

VRT_SUFFIX = ".vrt"
SOURCE_TAGS = ("SourceFilename", "SourceDataset")  # SourceDataset: the input of a warped VRT
HTTP_PREFIXES = ("/vsicurl/http://", "/vsicurl/https://")
GENERATED_FOLDERS = {"stac": "stac", "bands": "band_folders"}  # ROOT/<folder> -> the config key that fills it
HEAD_TIMEOUT_S = 30.0
# A SENTINEL2 driver subdataset (index.sources.safe): it reads the product's metadata and JPEG 2000 files.
SENTINEL2_SUBDATASET = re.compile(r"^SENTINEL2_L\w+:(?P<path>.+\.xml):[^:]+:[^:]+$")
# GDAL keeps what it read of a /vsicurl/ file (size, blocks) for the life of the process, across opens: a
# replaced remote file would be read stale by the next update of a long-lived process (or by the service).
# Not caching across opens keeps each open's own block cache, which is what reading windows of a scene needs.
os.environ.setdefault("CPL_VSIL_CURL_NON_CACHED", "/vsicurl/")


def is_vrt(source: Path | bytes) -> bool:
    return isinstance(source, Path) and source.suffix.lower() == VRT_SUFFIX


def _remote(name: str) -> bool:
    return name.startswith("/vsi") or "://" in name


def _sources(root: ElementTree.Element, folder: Path) -> list[str]:
    names = []
    for tag in SOURCE_TAGS:
        for element in root.iter(tag):
            name = (element.text or "").strip()
            if name.startswith("<VRTDataset"):  # an inline VRT (index.sources.stack: a band warped onto the grid)
                try:
                    names += _sources(ElementTree.fromstring(name), folder)
                except ElementTree.ParseError:
                    names.append(name)
                continue
            product = SENTINEL2_SUBDATASET.match(name)
            if product is not None:
                metadata = Path(product["path"])
                names += [str(metadata), *sorted(str(file) for file in metadata.parent.rglob("*.jp2"))]
                continue
            relative = element.get("relativeToVRT") == "1" and not _remote(name)
            names.append(str(folder / name) if relative else name)
    return names


def vrt_sources(path: Path) -> list[str]:
    """The files a VRT reads, as written in its XML (inline VRTs included), relative ones joined to the VRT's
    folder. Read from the XML rather than from GDAL's file list, which checks that each source exists: a
    network request for a remote one."""
    try:
        root = ElementTree.fromstring(path.read_bytes())
    except (OSError, ElementTree.ParseError):
        return []
    return _sources(root, path.parent)


def store_written(path: Path) -> bool:
    """True for a VRT under a folder the store generates (ROOT/stac/, ROOT/bands/) of a store ROOT whose
    config asks for it (a catalog or band folder): these VRTs are written by index.sources, never copied from
    an archive, so their sources are the catalog's own asset locations."""
    resolved = path.resolve()
    for folder in resolved.parents:
        key = GENERATED_FOLDERS.get(folder.name)
        if key is None or not (folder.parent / LOCK).exists():
            continue
        try:
            config = json.loads((folder.parent / CONFIG).read_text())
        except (OSError, ValueError):
            continue
        if isinstance(config, dict) and config.get(key):
            return True
    return False


def remote_source(path: Path) -> str | None:
    """The first file a VRT reads that it may not read: a source that is not a local file, except http(s)
    URLs in a VRT the store wrote (store_written). None when every source may be read."""
    remote = [name for name in vrt_sources(path) if _remote(name)]
    if remote and all(name.startswith(HTTP_PREFIXES) for name in remote) and store_written(path):
        return None
    return remote[0] if remote else None


def remote_version(name: str) -> str:
    """What stands for the content of a /vsicurl/ file: its ETag, Last-Modified and size from a HEAD request,
    or why there is no answer (the scene then fails to decode and is reported, as a missing local file is)."""
    url = name.removeprefix("/vsicurl/")
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=HEAD_TIMEOUT_S) as answer:
            etag, modified, size = (answer.headers.get(name) for name in ("ETag", "Last-Modified", "Content-Length"))
            return f"etag={etag};modified={modified};size={size}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return f"unreachable: {exc}"


def vrt_sha256(path: Path) -> str:
    """Content hash of a VRT: its XML, then for every source its path relative to the VRT, size and mtime (for
    a remote source of a store-written VRT: its URL and the server's version of it, remote_version)."""
    sources = vrt_sources(path)
    if not sources:
        return file_sha256(path)  # not a VRT GDAL can read: decoding reports why
    digest = hashlib.sha256(path.read_bytes())
    readable_remote = remote_source(path) is None
    for name in sources:
        if _remote(name):
            facts = remote_version(name) if readable_remote else "not read"
            digest.update(f"\0{name}\0{facts}".encode())
            continue
        source = path.parent / name
        try:
            stat = source.stat()
            facts = f"{stat.st_size}:{stat.st_mtime_ns}"
        except OSError:
            facts = "missing"
        digest.update(f"\0{os.path.relpath(source, path.parent)}\0{facts}".encode())
    return digest.hexdigest()
