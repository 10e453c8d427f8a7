"""The metadata queries of a published version: records, filters and footprints read from its meta.sqlite.

Split out of index.store, which loads and verifies a version (files, FAISS indexes, vector file, profiles) and
inherits these queries through `MetadataQueries`; callers keep using `IndexVersion` (see index.store for the
contract). Each query takes the version's lock around the shared read-only connection, and lists of ids go
to SQLite SQL_CHUNK at a time.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import numpy as np
import shapely
import shapely.geometry

from index.records import CaptionRecord, ImageRecord, SceneRecord, image_record, scene_record
from index.stac_meta import StacRecord, image_ids_by_stac, stac_of_scenes

R = TypeVar("R")
SQL_CHUNK = 10_000  # ids per IN (...) query, below SQLite's bound-parameter limit


def has_column(db: sqlite3.Connection, table: str, column: str) -> bool:
    """Whether `table` has `column` (versions written before a column was added lack it)."""
    return any(row[1] == column for row in db.execute(f"PRAGMA table_info({table})"))


def _between(expression: str, low: Any, high: Any, placeholder: str = "?") -> tuple[list[str], list[Any]]:
    """WHERE clauses and their values for low <= expression <= high; a None bound is open."""
    bounds = [(op, value) for op, value in ((">=", low), ("<=", high)) if value is not None]
    return [f"{expression} {op} {placeholder}" for op, _ in bounds], [value for _, value in bounds]


class MetadataQueries:
    """Queries over the version's meta.sqlite. The version sets these attributes when it opens the file."""

    _db: sqlite3.Connection  # read-only, immutable; shared between threads under _lock
    _lock: threading.Lock
    _image_columns: str  # SELECT list of an ImageRecord (time_source or NULL for older versions)
    _scene_columns: str  # SELECT list of a SceneRecord
    has_stac: bool  # whether the version has the STAC table (index.stac_meta)

    def image_ids_in_time(
        self, min_mtime: float | None, max_mtime: float | None, among: np.ndarray | None = None
    ) -> np.ndarray:
        """Ids whose mtime is within the bounds; `among` (e.g. an area's ids) restricts the lookup to those ids,
        so a small area is never intersected with a time range that holds most of the archive."""
        clauses, values = _between("mtime", min_mtime, max_mtime)
        where = " AND ".join(clauses) or "1"
        if among is None:
            return self._ids_where(where, values)
        wanted = [int(i) for i in among]
        parts = [
            self._ids_where(f"id IN ({','.join('?' * len(chunk))}) AND {where}", [*chunk, *values])
            for chunk in (wanted[start : start + SQL_CHUNK] for start in range(0, len(wanted), SQL_CHUNK))
        ]
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    def image_ids_acquired(self, start: datetime | None, end: datetime | None) -> np.ndarray:
        """Items acquired within [start, end] (None = open). julianday() compares instants, whatever UTC offset
        a stored time was written with."""
        clauses, values = _between("julianday(time)", start and start.isoformat(), end and end.isoformat(),
                                   "julianday(?)")
        return self._ids_where(" AND ".join(["time IS NOT NULL", *clauses]), values)

    def image_ids_by_gsd(self, low: float | None, high: float | None) -> np.ndarray:
        """Items whose ground sample distance (m/px) is within [low, high] (None = open); items without one (no
        georeferencing) never match."""
        clauses, values = _between("gsd", low, high)
        return self._ids_where(" AND ".join(["gsd IS NOT NULL", *clauses]), values)

    def image_ids_of_scenes(self, scene_ids: list[int] | np.ndarray) -> np.ndarray:
        """Every item of the given scenes (through the index on scene_id)."""
        wanted = [int(i) for i in scene_ids]
        parts = [
            self._ids_where(f"scene_id IN ({','.join('?' * len(chunk))})", chunk)
            for chunk in (wanted[start : start + SQL_CHUNK] for start in range(0, len(wanted), SQL_CHUNK))
        ]
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    def stac(self, scene_ids: list[int] | np.ndarray) -> dict[int, StacRecord]:
        """The STAC facts of those scenes that came from a STAC item (index.stac_meta)."""
        if not self.has_stac:
            return {}
        with self._lock:
            return stac_of_scenes(self._db, [int(i) for i in scene_ids])

    def image_ids_by_stac(
        self, collections: list[str] | None, cloud_cover_max: float | None, platforms: list[str] | None
    ) -> np.ndarray:
        """Items whose STAC item matches every given field exactly (index.stac_meta.image_ids_by_stac)."""
        if not self.has_stac:
            return np.zeros(0, np.int64)
        with self._lock:
            return image_ids_by_stac(self._db, collections, cloud_cover_max, platforms)

    def _ids_where(self, where: str, values: list[Any]) -> np.ndarray:
        with self._lock:
            cursor = self._db.execute(f"SELECT id FROM images WHERE {where}", values)
            return np.fromiter((row[0] for row in cursor), dtype=np.int64)

    def _by_id(self, table: str, columns: str, ids: list[int] | np.ndarray, record: Callable[[tuple], R]
               ) -> list[R | None]:
        """The records of `ids` (SQL_CHUNK per query), in the order asked, None for an unknown id."""
        wanted = [int(i) for i in ids]
        found: dict[int, R] = {}
        for start in range(0, len(wanted), SQL_CHUNK):
            chunk = wanted[start : start + SQL_CHUNK]
            query = f"SELECT {columns} FROM {table} WHERE id IN ({','.join('?' * len(chunk))})"
            with self._lock:
                rows = self._db.execute(query, chunk).fetchall()
            found.update((row[0], record(row)) for row in rows)
        return [found.get(i) for i in wanted]

    def images(self, ids: list[int] | np.ndarray) -> list[ImageRecord | None]:
        return self._by_id("images", self._image_columns, ids, image_record)

    def all_images(self) -> list[ImageRecord]:
        with self._lock:
            rows = self._db.execute(f"SELECT {self._image_columns} FROM images ORDER BY source, path").fetchall()
        return [image_record(row) for row in rows]

    def image(self, image_id: int) -> ImageRecord:
        record = self.images([image_id])[0]
        if record is None:
            raise KeyError(image_id)
        return record

    def captions(self, ids: list[int] | np.ndarray) -> list[CaptionRecord | None]:
        return self._by_id("captions", "id, text, source", ids, lambda row: CaptionRecord(*row))

    def all_captions(self) -> list[CaptionRecord]:
        with self._lock:
            rows = self._db.execute("SELECT id, text, source FROM captions ORDER BY id").fetchall()
        return [CaptionRecord(*row) for row in rows]

    def caption(self, caption_id: int) -> CaptionRecord:
        record = self.captions([caption_id])[0]
        if record is None:
            raise KeyError(caption_id)
        return record

    def caption_texts(self, ids: list[int] | np.ndarray) -> list[str]:
        records = self.captions(ids)
        missing = [int(i) for i, r in zip(ids, records) if r is None]
        if missing:
            raise KeyError(missing[0])
        return [r.text for r in records]

    def skipped(self) -> list[tuple[str, str]]:
        """(path, reason) of every file the job could not index."""
        with self._lock:
            return self._db.execute("SELECT path, reason FROM skipped ORDER BY path").fetchall()

    def scene(self, scene_id: int) -> SceneRecord:
        with self._lock:
            query = f"SELECT {self._scene_columns} FROM scenes WHERE id = ?"
            row = self._db.execute(query, (int(scene_id),)).fetchone()
        if row is None:
            raise KeyError(scene_id)
        return scene_record(row)

    def scenes(self, ids: list[int] | np.ndarray) -> list[SceneRecord | None]:
        """The scenes of `ids`, in that order (None for an unknown id)."""
        return self._by_id("scenes", self._scene_columns, ids, scene_record)

    def scene_footprints(self) -> list[tuple[int, str | None]]:
        """(id, GeoJSON footprint in EPSG:4326 or None) of every scene, in archive order (folder, then path)."""
        with self._lock:
            return self._db.execute("SELECT id, footprint FROM scenes ORDER BY source, path").fetchall()

    def ids_in_area(
        self, bbox: tuple[float, float, float, float] | None = None, geometry: dict[str, Any] | None = None
    ) -> np.ndarray:
        """Ids of the items whose footprint intersects `bbox` (west, south, east, north) and/or the GeoJSON
        `geometry` (both in EPSG:4326; both together: their intersection). A bbox with west > east crosses the
        antimeridian (RFC 7946 §5.2). The geometry must be valid: repairing one costs unbounded time, so the
        caller refuses invalid input instead (ValueError here). The R*Tree narrows to bounding-box overlaps, one
        query per part of the area (the two halves of an antimeridian box, the parts of a MultiPolygon), and a
        prepared geometry decides among those candidates only."""
        areas = []
        if bbox is not None:
            west, south, east, north = bbox
            halves = [(west, 180.0), (-180.0, east)] if west > east else [(west, east)]
            boxes = [shapely.box(w, south, e, north) for w, e in halves if w < e]  # [180, s, 10, n] is one box
            areas.append(shapely.union_all(boxes))
        if geometry is not None:
            shape = shapely.geometry.shape(geometry)
            if not shape.is_valid:
                raise ValueError(f"invalid geometry: {shapely.is_valid_reason(shape)}")
            areas.append(shape)
        if not areas:
            raise ValueError("ids_in_area needs a bbox or a geometry")
        area = areas[0] if len(areas) == 1 else shapely.intersection(areas[0], areas[1])
        if area.is_empty:
            return np.zeros(0, dtype=np.int64)
        candidates: dict[int, str] = {}
        for part in shapely.get_parts(area):
            min_lon, min_lat, max_lon, max_lat = part.bounds
            with self._lock:
                rows = self._db.execute(
                    "SELECT i.id, i.footprint FROM footprints f JOIN images i ON i.id = f.id "
                    "WHERE f.max_lon >= ? AND f.min_lon <= ? AND f.max_lat >= ? AND f.min_lat <= ?",
                    (min_lon, max_lon, min_lat, max_lat),
                ).fetchall()
            candidates.update(rows)
        if not candidates:
            return np.zeros(0, dtype=np.int64)
        ids = np.fromiter(candidates.keys(), dtype=np.int64, count=len(candidates))
        shapely.prepare(area)  # used when it is the first argument: 5x faster for a 2,000-vertex area
        hit = shapely.intersects(area, shapely.from_geojson(list(candidates.values())))
        return ids[hit]
