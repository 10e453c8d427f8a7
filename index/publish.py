"""Write a version completely, check it, then make it live with one atomic rename of CURRENT.

Order of operations, so that a crash at any instant leaves CURRENT naming a complete, verified version:
1. write every file into ROOT/staging-<n>-<pid>/ and fsync each file and the folder;
2. re-open the staged folder with the reader (counts + sha256 of every file);
3. rename it to ROOT/versions/<n> and fsync versions/ (a crash here leaves an unpublished complete version,
   which the next run simply numbers past);
4. write CURRENT.tmp, fsync, os.replace onto CURRENT, fsync ROOT;
5. delete old versions: never CURRENT, never the newest intact version before it (what a server that
   refused a corrupt CURRENT still serves), never the `keep` newest intact ones (see `retained`).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import shapely

from index import reuse
from index.layout import (
    CAPTIONS_INDEX,
    CURRENT,
    FORMAT,
    IMAGE_IDS,
    IMAGE_VECTORS,
    IMAGES_INDEX,
    LOCK,
    MANIFEST,
    META,
    OVERVIEW_CACHE,
    PROFILES,
    STAGING_PREFIX,
    VERSION_FILES,
    VERSIONS,
    file_sha256,
    fsync_dir,
)
from index.manifest import IndexIntegrityError, read_manifest, verify_files
from index.records import ImageRecord, SceneRecord
from index.stac_meta import StacRecord, write_stac
from index.store import IndexStore, IndexVersion
from index.vector_file import write_vector_files


class StoreBusyError(RuntimeError):
    """Another job holds the store's lock."""


@contextmanager
def store_lock(root: Path) -> Iterator[None]:
    """Exclusive, non-blocking flock on ROOT/.lock; released by the kernel even when the process is killed."""
    root.mkdir(parents=True, exist_ok=True)
    handle = open(root / LOCK, "a+")
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise StoreBusyError(f"another index job is running on {root} (lock {root / LOCK} is held)") from exc
        yield
    finally:
        handle.close()


@dataclass
class VersionContent:
    image_records: list[ImageRecord]
    image_vectors: np.ndarray
    image_index: faiss.Index
    caption_texts: list[tuple[str, str]]  # (text, source file); caption id = position
    caption_index: faiss.Index
    profiles: dict[str, np.ndarray]  # image_ids, image_profiles, caption_ids, caption_profiles
    skipped: list[tuple[str, str]]
    manifest: dict[str, Any]  # everything but version, created, counts and files
    scenes: list[SceneRecord] = field(default_factory=list)  # one row per indexed file
    digests: dict[int, str] = field(default_factory=dict)  # item id -> pixel digest (index.reuse)
    stac: list[StacRecord] = field(default_factory=list)  # one row per scene made from a STAC item


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _bounds(footprint: str | None) -> tuple[float, float, float, float] | None:
    if footprint is None:
        return None
    return shapely.from_geojson(footprint).bounds


def _write_meta(path: Path, content: VersionContent) -> None:
    db = sqlite3.connect(path)
    try:
        db.executescript(
            """
            CREATE TABLE images (id INTEGER PRIMARY KEY, source INTEGER NOT NULL, path TEXT NOT NULL,
                sha256 TEXT NOT NULL, bytes INTEGER NOT NULL, width INTEGER NOT NULL, height INTEGER NOT NULL,
                mtime REAL NOT NULL, bands INTEGER NOT NULL, dtype TEXT NOT NULL, preprocessing TEXT NOT NULL,
                min_x REAL, min_y REAL, max_x REAL, max_y REAL, crs TEXT,
                window_x INTEGER, window_y INTEGER, window_width INTEGER, window_height INTEGER, window_size INTEGER,
                footprint TEXT, gsd REAL, time TEXT, scene_id INTEGER NOT NULL, time_source TEXT);
            CREATE INDEX images_scene ON images (scene_id);
            CREATE INDEX images_time ON images (time);
            CREATE TABLE scenes (id INTEGER PRIMARY KEY, source INTEGER NOT NULL, path TEXT NOT NULL,
                sha256 TEXT NOT NULL UNIQUE, bytes INTEGER NOT NULL, mtime REAL NOT NULL, width INTEGER NOT NULL,
                height INTEGER NOT NULL, bands INTEGER NOT NULL, dtype TEXT NOT NULL, preprocessing TEXT NOT NULL,
                min_x REAL, min_y REAL, max_x REAL, max_y REAL, crs TEXT, footprint TEXT, gsd REAL, time TEXT,
                items INTEGER NOT NULL, time_source TEXT);
            CREATE VIRTUAL TABLE footprints USING rtree(id, min_lon, max_lon, min_lat, max_lat);
            CREATE TABLE captions (id INTEGER PRIMARY KEY, text TEXT NOT NULL, source TEXT NOT NULL);
            CREATE TABLE skipped (path TEXT NOT NULL, reason TEXT NOT NULL);
            """
        )
        reuse.create_table(db)
        reuse.write_digests(db, content.digests)
        db.executemany(
            f"INSERT INTO images VALUES ({','.join('?' * 26)})",
            [
                (
                    r.id,
                    r.source,
                    r.path,
                    r.sha256,
                    r.bytes,
                    r.width,
                    r.height,
                    r.mtime,
                    r.bands,
                    r.dtype,
                    r.preprocessing,
                    *(r.bbox or (None, None, None, None)),
                    r.crs,
                    *(r.window or (None, None, None, None)),
                    r.window_size,
                    r.footprint,
                    r.gsd,
                    r.time,
                    r.scene_id,
                    r.time_source,
                )
                for r in content.image_records
            ],
        )
        db.executemany(
            "INSERT INTO footprints VALUES (?,?,?,?,?)",
            [
                (r.id, bounds[0], bounds[2], bounds[1], bounds[3])
                for r in content.image_records
                if (bounds := _bounds(r.footprint)) is not None
            ],
        )
        db.executemany(
            f"INSERT INTO scenes VALUES ({','.join('?' * 21)})",
            [
                (
                    s.id, s.source, s.path, s.sha256, s.bytes, s.mtime, s.width, s.height, s.bands, s.dtype,
                    s.preprocessing, *(s.bbox or (None, None, None, None)), s.crs, s.footprint, s.gsd, s.time, s.items,
                    s.time_source,
                )
                for s in content.scenes
            ],
        )
        db.executemany(
            "INSERT INTO captions VALUES (?,?,?)",
            [(i, text, source) for i, (text, source) in enumerate(content.caption_texts)],
        )
        db.executemany("INSERT INTO skipped VALUES (?,?)", content.skipped)
        write_stac(db, content.stac)
        db.execute("CREATE INDEX images_mtime ON images (mtime)")  # time filters select by range, not by scan
        db.commit()
    finally:
        db.close()


def write_version(directory: Path, number: int, content: VersionContent) -> None:
    directory.mkdir(parents=True)
    faiss.write_index(content.image_index, str(directory / IMAGES_INDEX))
    faiss.write_index(content.caption_index, str(directory / CAPTIONS_INDEX))
    image_ids = np.fromiter((r.id for r in content.image_records), dtype=np.int64, count=len(content.image_records))
    write_vector_files(directory / IMAGE_IDS, directory / IMAGE_VECTORS, image_ids, content.image_vectors)
    _write_meta(directory / META, content)
    with open(directory / PROFILES, "wb") as handle:
        np.savez(handle, **content.profiles)
    files = {}
    for name in VERSION_FILES:
        _fsync_file(directory / name)
        files[name] = {"sha256": file_sha256(directory / name), "bytes": (directory / name).stat().st_size}
    count = max(1, len(content.image_records))
    measured = {  # what each image costs: codes (+ ids) in RAM, float vectors on disk (memory-mapped)
        "bytes_per_item": round(files[IMAGES_INDEX]["bytes"] / count, 1),
        "vector_file_bytes_per_item": round(files[IMAGE_VECTORS]["bytes"] / count, 1),
    }
    manifest = {
        "format": FORMAT,
        "version": number,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        **content.manifest,
        "index": {**content.manifest.get("index", {}), **measured},
        "counts": {
            **content.manifest.get("counts", {}),
            "images": len(content.image_records),
            "captions": len(content.caption_texts),
            "skipped": len(content.skipped),
        },
        "files": files,
    }
    with open(directory / MANIFEST, "w") as handle:
        json.dump(manifest, handle, indent=2)
        handle.flush()
        os.fsync(handle.fileno())
    fsync_dir(directory)


def write_current(root: Path, number: int) -> None:
    tmp = root / f".{CURRENT}.tmp"
    with open(tmp, "w") as handle:
        handle.write(f"{number}\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, root / CURRENT)
    fsync_dir(root)


def remove_staging(root: Path) -> None:
    """Folders of versions that never reached versions/ (a crash mid-write); only the lock holder calls this."""
    for path in root.glob(f"{STAGING_PREFIX}*"):
        shutil.rmtree(path, ignore_errors=True)


def _intact(store: IndexStore, number: int) -> bool:
    """Manifest readable and every file matching its recorded size and sha256 (the reader's own checks)."""
    path = store.version_path(number)
    try:
        manifest = read_manifest(path / MANIFEST)
        if manifest.version != number:
            return False
        verify_files(path, manifest)
    except (IndexIntegrityError, OSError):
        return False
    return True


def retained(store: IndexStore, keep: int, known_intact: frozenset[int] = frozenset()) -> set[int]:
    """The versions retention must keep.

    - CURRENT, whatever its state (it is what readers are told to open);
    - the newest intact version older than CURRENT: a server that refused a corrupt CURRENT keeps serving
      the version it had, which is at best this one;
    - the `keep` newest intact versions. Corrupt versions never count toward `keep`; one newer than the
      oldest version kept above stays on disk for inspection, anything older is removed.

    Versions are checked newest first and only until these are found, so a store with many old versions
    is not re-hashed in full on every publish. `known_intact` are versions verified already (the one just
    published).
    """
    live = store.current_version()
    numbers = sorted(store.versions(), reverse=True)
    kept = {live} if live is not None and live in numbers else set()
    intact = 0
    previous_found = live is None
    for number in numbers:
        if intact >= keep and previous_found:
            break
        if not (number in known_intact or _intact(store, number)):
            continue
        if intact < keep:
            intact += 1
            kept.add(number)
        if not previous_found and number < live:
            kept.add(number)
            previous_found = True
    if not kept:
        return set(numbers)  # nothing verifiable to fall back on: delete nothing
    oldest = min(kept)
    return kept | {n for n in numbers if n > oldest}


def prune(root: Path, keep: int, known_intact: frozenset[int] = frozenset()) -> list[int]:
    """Delete the versions `retained` does not keep; returns their numbers."""
    store = IndexStore(root)
    keep_set = retained(store, keep, known_intact)
    removed = [n for n in store.versions() if n not in keep_set]
    for number in removed:
        shutil.rmtree(store.version_path(number))
        shutil.rmtree(root / OVERVIEW_CACHE / str(number), ignore_errors=True)  # the service's renders of it
    if removed:
        fsync_dir(root / VERSIONS)
    return removed


def publish(root: Path, content: VersionContent, keep: int, pause: Callable[[str], None]) -> int:
    """Write, verify and make live a new version; returns its number. `pause` is the crash-test hook."""
    store = IndexStore(root)
    live = store.current_version()
    on_disk = store.versions()
    number = max([*on_disk, live or 0, 0]) + 1
    staging = root / f"{STAGING_PREFIX}{number}-{os.getpid()}"
    write_version(staging, number, content)
    pause("staged")
    try:
        IndexVersion(number, staging).close()
    except IndexIntegrityError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise IndexIntegrityError(f"freshly written version failed its own check: {exc}") from exc
    (root / VERSIONS).mkdir(exist_ok=True)
    final = store.version_path(number)
    os.rename(staging, final)
    fsync_dir(root / VERSIONS)
    fsync_dir(root)
    pause("renamed")
    write_current(root, number)
    pause("published")
    prune(root, keep, frozenset({number}))
    return number


def rollback(root: Path) -> int:
    """Make the newest complete version older than the live one live; returns its number."""
    store = IndexStore(root)
    live = store.current_version()
    if live is None:
        raise IndexIntegrityError(f"{root} has no published version to roll back from")
    for number in reversed([n for n in store.versions() if n < live]):
        try:
            IndexVersion(number, store.version_path(number)).close()
        except IndexIntegrityError:
            continue
        write_current(root, number)
        return number
    raise IndexIntegrityError(f"{root}: no intact version older than {live} to roll back to")
