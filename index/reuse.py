"""Reuse the vectors of a changed scene's unchanged windows instead of embedding the whole scene again.

A nightly rewrite of a few percent of a scene changes its file hash, which used to re-embed every window. Each
item now carries the digest of its decoded pixels (index.embed.pixel_digest): the 8-bit RGB window exactly as
the model's resize receives it, so the digest covers the raw values, the band selection and the scene's
stretch at once, and two equal digests mean the model would see the same input. When a file changed, every
window is decoded again (in the decode workers, the cheap part) and only windows whose digest differs from
the live version's item at the same (folder, path, window, tile size) are embedded; the others keep their
vector and their item id, so a saved search that refers to an unchanged tile still finds it.

The digests live in their own table of meta.sqlite (``pixel_digests``); a store written before it has none,
so its changed scenes are embedded whole, once, and carry digests from then on.
"""

from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import dataclass, replace
from pathlib import Path

from index.embed import WorkItem
from index.layout import META, content_id
from index.scan import ScannedFile
from index.store import ImageRecord, IndexVersion
from index.tiles import FilePlan

TABLE = "pixel_digests"

WindowKey = tuple[int, str, tuple[int, int, int, int] | None, int | None]  # source, path, window, tile size


def create_table(db: sqlite3.Connection) -> None:
    db.execute(f"CREATE TABLE {TABLE} (id INTEGER PRIMARY KEY, digest TEXT NOT NULL)")


def write_digests(db: sqlite3.Connection, digests: dict[int, str]) -> None:
    db.executemany(f"INSERT INTO {TABLE} VALUES (?,?)", sorted(digests.items()))


def read_digests(version: IndexVersion) -> dict[int, str]:
    """Item id -> pixel digest of a published version; empty for a version written before digests."""
    db = sqlite3.connect(f"{Path(version.path, META).as_uri()}?mode=ro&immutable=1", uri=True)
    try:
        return dict(db.execute(f"SELECT id, digest FROM {TABLE}").fetchall())
    except sqlite3.OperationalError:  # no such table: an older store
        return {}
    finally:
        db.close()


@dataclass(frozen=True)
class Previous:
    """The live version's item at the same place as a window of a changed file."""

    id: int
    digest: str


def previous_windows(
    live: list[ImageRecord], digests: dict[int, str], chosen: dict[str, ScannedFile]
) -> dict[WindowKey, Previous]:
    """Live items of files whose content is gone (changed or deleted), by where they were, when they have a
    digest. Items of content still in the archive are carried whole and never matched here, so an id is
    never used twice."""
    return {
        (r.source, r.path, r.window, r.window_size): Previous(r.id, digests[r.id])
        for r in live
        if r.sha256 not in chosen and r.id in digests
    }


def unique_ids(records: list[ImageRecord], fresh: set[int]) -> list[ImageRecord]:
    """Records with distinct ids: one that keeps its id (carried or reused) wins over a freshly made one.

    A reused window keeps the id made from the file's earlier content; if that content comes back elsewhere
    while the window is still indexed, the new file's fresh item would get the same id, so it takes an id
    salted with its place instead."""
    taken = {r.id for i, r in enumerate(records) if i not in fresh}
    out = []
    for i, record in enumerate(records):
        if i in fresh and record.id in taken:
            salt = f"{record.sha256}:{record.source}:{record.path}:{record.window}:{record.window_size}"
            record = replace(record, id=content_id(hashlib.sha256(salt.encode()).hexdigest()))
        taken.add(record.id)
        out.append(record)
    return out


def match_previous(
    file_plans: dict[str, FilePlan], chosen: dict[str, ScannedFile], earlier: dict[WindowKey, Previous]
) -> tuple[dict[str, FilePlan], dict[str, Previous]]:
    """The plans with each window's `previous` digest set where the live version had an item at the same
    place, and those matches by item key."""
    plans: dict[str, FilePlan] = {}
    matches: dict[str, Previous] = {}
    for sha, plan in file_plans.items():
        scanned = chosen[sha]
        items: list[WorkItem] = []
        for item in plan.items:
            match = earlier.get((scanned.source, scanned.path, item.window, item.size))
            if match is not None and item.window is not None:
                matches[item.key] = match
                item = replace(item, previous=match.digest)
            items.append(item)
        plans[sha] = replace(plan, items=items)
    return plans, matches
