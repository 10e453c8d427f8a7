"""On-disk layout of an index store, shared by the writer (index.publish) and the reader (index.store).

ROOT/CURRENT                       the live version number, one line ("7\\n"); replaced atomically
ROOT/config.json                   sources, caption files and model of the store (so `update` needs only ROOT)
ROOT/.lock                         flock target: one writer at a time
ROOT/last-run.json                 report of the latest build/update run (counts, skipped and ignored files, reasons)
ROOT/versions/<n>/images.faiss     image vectors, FAISS ids = image ids
ROOT/versions/<n>/captions.faiss   caption-bank vectors, FAISS ids = caption ids
ROOT/versions/<n>/image_ids.npy    every image id, ascending (int64)
ROOT/versions/<n>/image_vectors.npy  the image vectors in that order (float32), memory-mapped by readers for exact
                                   scoring (index.vector_file)
ROOT/versions/<n>/meta.sqlite      tables images (index items), scenes, footprints (R*Tree), captions, skipped,
                                   pixel_digests (index.reuse)
ROOT/versions/<n>/profiles.npz     re-ranking profiles: image_ids, image_profiles, caption_ids, caption_profiles
ROOT/versions/<n>/manifest.json    version, created, model, dim, counts, sha256 + size of every other file
ROOT/work/                         resumable embedding checkpoints of an unfinished run (gone once it ends)
ROOT/staging-*/                    a version being written; never read, removed by the next writer
ROOT/cache/overviews/<n>/          the service's rendered scene overviews of version n (not checksummed; removed
                                   with the version)
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

FORMAT = "posapl-index/3"  # 2: tiles, scenes, WGS84 footprints and their R*Tree; 3: image vectors as .npy files
# Versions readers still open: a store written by the previous release keeps serving after an upgrade, and its
# next update reuses its vectors instead of embedding the whole archive again (index.store reads a format-2
# version's vectors back from its FAISS index, which every kind of that release could reconstruct).
PREVIOUS_FORMAT = "posapl-index/2"
READABLE_FORMATS = (PREVIOUS_FORMAT, FORMAT)
CURRENT = "CURRENT"
CONFIG = "config.json"
LOCK = ".lock"
LAST_RUN = "last-run.json"
VERSIONS = "versions"
WORK = "work"
STAGING_PREFIX = "staging-"
OVERVIEW_CACHE = Path("cache") / "overviews"

IMAGES_INDEX = "images.faiss"
CAPTIONS_INDEX = "captions.faiss"
META = "meta.sqlite"
PROFILES = "profiles.npz"
IMAGE_IDS = "image_ids.npy"
IMAGE_VECTORS = "image_vectors.npy"
MANIFEST = "manifest.json"
VECTOR_FILES = (IMAGE_IDS, IMAGE_VECTORS)  # new in format 3
VERSION_FILES = (IMAGES_INDEX, CAPTIONS_INDEX, META, PROFILES, *VECTOR_FILES)

ID_MASK = (1 << 63) - 1


def content_id(sha256_hex: str) -> int:
    """Stable 63-bit image id from the content hash: the same bytes always get the same id, never -1
    (FAISS's "no result") and always a valid SQLite INTEGER."""
    return int(sha256_hex[:16], 16) & ID_MASK


def item_id(sha256_hex: str, window: tuple[int, int, int, int] | None, size: int | None) -> int:
    """Id of one index item: the file's content id for a whole image (so ids of small images never change),
    else the content id of (file hash, window, window size) for a tile."""
    if window is None:
        return content_id(sha256_hex)
    key = f"{sha256_hex}:{window[0]}:{window[1]}:{window[2]}:{window[3]}:{size}"
    return content_id(hashlib.sha256(key.encode()).hexdigest())


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def fsync_dir(path: Path) -> None:
    """Make a rename or new entry in `path` durable: without it a crash can forget a completed os.replace."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
