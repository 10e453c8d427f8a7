"""Find archive files and their content hashes, and account for every other file.

Hashing every file every night would read the whole archive; a file whose folder, relative path, size and
mtime match the live version keeps its recorded hash, so only new or touched files are read. A VRT is hashed
with what it reads at every scan (index.vrt). Files that are not images are returned with their reason
(index.ignore), so nothing in a folder is left out silently.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from index.decode import IMAGE_SUFFIXES
from index.ignore import not_indexed
from index.layout import file_sha256
from index.progress import bar
from index.vrt import is_vrt, vrt_sha256

HashCache = dict[tuple[int, str], tuple[int, float, str]]  # (source, relpath) -> (bytes, mtime, sha256)


@dataclass(frozen=True)
class ScannedFile:
    source: int  # index into the store's source folders
    path: str  # relative to the source folder, POSIX separators
    absolute: Path
    bytes: int
    mtime: float
    sha256: str


def _walk(root: Path) -> tuple[list[Path], list[Path]]:
    """(image files, other files) under `root`, in a stable order."""
    images, others = [], []
    for directory, subdirs, files in os.walk(root, followlinks=False):
        subdirs.sort()
        for name in sorted(files):
            (images if Path(name).suffix.lower() in IMAGE_SUFFIXES else others).append(Path(directory) / name)
    return images, others


def scan_sources(
    sources: list[Path], cache: HashCache | None = None, threads: int = 8, progress: bool = False
) -> tuple[list[ScannedFile], list[tuple[str, str]], list[tuple[str, str]]]:
    """All image files under `sources` in a stable order, (path, reason) of the files that cannot be read or
    are not images, and (path, reason) of the files on the ignore list."""
    cache = cache or {}
    candidates: list[tuple[int, str, Path, int, float]] = []
    unreadable: list[tuple[str, str]] = []
    ignored: list[tuple[str, str]] = []
    for number, root in enumerate(sources):
        if not root.is_dir():
            raise FileNotFoundError(f"image folder {root} does not exist")
        images, others = _walk(root)
        for other in map(not_indexed, others):
            (ignored if other.ignored else unreadable).append((other.path, other.reason))
        for path in images:
            try:
                stat = path.stat()
            except OSError as exc:
                unreadable.append((str(path), f"cannot stat: {exc}"))
                continue
            candidates.append((number, path.relative_to(root).as_posix(), path, stat.st_size, stat.st_mtime))

    def digest(item: tuple[int, str, Path, int, float]) -> str | OSError:
        number, rel, path, size, mtime = item
        cached = cache.get((number, rel))
        if cached is not None and cached[0] == size and cached[1] == mtime and not is_vrt(path):
            return cached[2]
        try:
            return vrt_sha256(path) if is_vrt(path) else file_sha256(path)
        except OSError as exc:
            return exc

    with ThreadPoolExecutor(max_workers=threads) as pool, bar(len(candidates), "hashing", "file", progress) as shown:
        digests = []
        for result in pool.map(digest, candidates):
            digests.append(result)
            shown.update()
    files = []
    for (number, rel, path, size, mtime), sha in zip(candidates, digests):
        if isinstance(sha, OSError):
            unreadable.append((str(path), f"cannot read: {sha}"))
        else:
            files.append(ScannedFile(number, rel, path, size, mtime, sha))
    return files, unreadable, ignored
