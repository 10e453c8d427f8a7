"""The STAC facts of a version's scenes: table ``stac`` of meta.sqlite, one row per scene made from a STAC item.

Kept per scene (an item is one scene; its tiles share its row through images.scene_id), written by the publish
step and read by index.store. Versions written before STAC ingestion have no such table: their scenes have no
STAC facts and STAC filters match nothing in them.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

import numpy as np

TABLE = """
    CREATE TABLE stac (scene_id INTEGER PRIMARY KEY, item TEXT NOT NULL, collection TEXT, datetime TEXT,
        cloud_cover REAL, platform TEXT, self_href TEXT);
    CREATE INDEX stac_collection ON stac (collection);
"""
COLUMNS = "scene_id, item, collection, datetime, cloud_cover, platform, self_href"


@dataclass(frozen=True)
class StacRecord:
    scene_id: int
    item: str
    collection: str | None
    datetime: str | None  # ISO-8601 UTC: the item's datetime, else its start_datetime
    cloud_cover: float | None  # eo:cloud_cover, percent
    platform: str | None  # platform, else constellation
    self_href: str | None  # the item's JSON, as the catalog named it


def write_stac(db: sqlite3.Connection, records: list[StacRecord]) -> None:
    db.executescript(TABLE)
    db.executemany(
        "INSERT INTO stac VALUES (?,?,?,?,?,?,?)",
        [
            (r.scene_id, r.item, r.collection, r.datetime, r.cloud_cover, r.platform, r.self_href)
            for r in records
        ],
    )


def has_stac(db: sqlite3.Connection) -> bool:
    return db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'stac'").fetchone() is not None


def stac_of_scenes(db: sqlite3.Connection, scene_ids: list[int]) -> dict[int, StacRecord]:
    found: dict[int, StacRecord] = {}
    for start in range(0, len(scene_ids), 10_000):
        chunk = scene_ids[start : start + 10_000]
        query = f"SELECT {COLUMNS} FROM stac WHERE scene_id IN ({','.join('?' * len(chunk))})"
        found.update((row[0], StacRecord(*row)) for row in db.execute(query, chunk))
    return found


def image_ids_by_stac(
    db: sqlite3.Connection, collections: list[str] | None, cloud_cover_max: float | None, platforms: list[str] | None
) -> np.ndarray:
    """Items of scenes whose item is in one of `collections`, has a cloud cover of at most `cloud_cover_max`
    and one of `platforms` (None = any). Exact string matches; an item without the field never matches it."""
    clauses, values = [], []
    for column, wanted in (("collection", collections), ("platform", platforms)):
        if wanted is not None:
            clauses.append(f"s.{column} IN ({','.join('?' * len(wanted))})")
            values += wanted
    if cloud_cover_max is not None:
        clauses.append("s.cloud_cover IS NOT NULL AND s.cloud_cover <= ?")
        values.append(cloud_cover_max)
    where = " AND ".join(clauses) or "1"
    cursor = db.execute(f"SELECT i.id FROM images i JOIN stac s ON s.scene_id = i.scene_id WHERE {where}", values)
    return np.sort(np.fromiter((row[0] for row in cursor), dtype=np.int64))
