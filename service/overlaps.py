"""Overlapping tiles of one scene show the same ground: keep the best of them, so they do not crowd the top k.

A hit is suppressed when it overlaps a better-ranked kept hit of the same scene by more than half of the
smaller of the two (intersection over the smaller area: a small tile inside a large one is a duplicate even
though their intersection-over-union is low). Footprints are compared when both items have one, pixel windows
otherwise (a scene without georeferencing still has windows). Items of different scenes never suppress each
other: two scenes of the same place at different times are different answers.
"""

from __future__ import annotations

from collections.abc import Sequence

import shapely
from shapely.geometry.base import BaseGeometry

from index.store import ImageRecord

MAX_OVERLAP = 0.5  # share of the smaller item's area above which the worse item is suppressed


def _extent(record: ImageRecord) -> BaseGeometry:
    """The item's area: its footprint, else its pixel window (the whole file for an untiled image)."""
    if record.footprint is not None:
        return shapely.make_valid(shapely.from_geojson(record.footprint))
    x, y, width, height = record.window or (0, 0, record.width, record.height)
    return shapely.box(x, y, x + width, y + height)


def overlap_share(a: BaseGeometry, b: BaseGeometry) -> float:
    """Intersection area over the smaller of the two areas (0 when either has no area)."""
    smaller = min(a.area, b.area)
    if smaller <= 0:
        return 0.0
    return shapely.intersection(a, b).area / smaller


def keep_distinct(records: Sequence[ImageRecord | None], limit: int, max_overlap: float = MAX_OVERLAP) -> list[int]:
    """Positions (in rank order) of at most `limit` records, each overlapping no better kept record of its scene
    by more than `max_overlap`. `records` is in rank order; None entries (ids gone from the store) are skipped."""
    kept: list[int] = []
    shapes: dict[int, list[tuple[bool, BaseGeometry]]] = {}
    for position, record in enumerate(records):
        if len(kept) == limit:
            break
        if record is None:
            continue
        geographic = record.footprint is not None
        extent = _extent(record)
        same_scene = shapes.setdefault(record.scene_id, [])
        if any(
            other_geographic == geographic and overlap_share(extent, other) > max_overlap
            for other_geographic, other in same_scene
        ):
            continue
        same_scene.append((geographic, extent))
        kept.append(position)
    return kept
