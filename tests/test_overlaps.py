"""Overlapping tiles of one scene do not crowd the top k: suppression on constructed windows and footprints."""

from __future__ import annotations

import hashlib

import shapely

from index.store import ImageRecord
from service.overlaps import keep_distinct, overlap_share


def tile(scene: int, x: int, y: int, size: int = 256, footprint: tuple[float, ...] | None = None) -> ImageRecord:
    """A tile of scene `scene` (its content hash decides the scene id) at pixel window (x, y, size, size)."""
    return ImageRecord(
        id=x * 100_000 + y + scene, source=0, path=f"scene{scene}.tif",
        sha256=hashlib.sha256(f"scene{scene}".encode()).hexdigest(), bytes=1,
        width=4096, height=4096, mtime=0.0, bands=3, dtype="uint8", preprocessing="", bbox=None, crs=None,
        window=(x, y, size, size), window_size=size,
        footprint=shapely.to_geojson(shapely.box(*footprint)) if footprint else None,
    )


def test_overlap_is_intersection_over_the_smaller_area() -> None:
    assert overlap_share(shapely.box(0, 0, 10, 10), shapely.box(5, 0, 15, 10)) == 0.5
    # a small box inside a large one is a full duplicate although its IoU is 1/16
    assert overlap_share(shapely.box(0, 0, 4, 4), shapely.box(0, 0, 1, 1)) == 1.0
    assert overlap_share(shapely.box(0, 0, 1, 1), shapely.box(2, 2, 3, 3)) == 0.0


def test_windows_overlapping_more_than_half_a_better_hit_are_suppressed() -> None:
    ranked = [
        tile(1, 0, 0),  # kept: best
        tile(1, 64, 0),  # 75% of a kept tile: suppressed
        tile(1, 128, 0),  # exactly 50%: kept (more than half suppresses)
        tile(2, 0, 0),  # same window, other scene: kept
        tile(1, 0, 64, size=128),  # inside the first tile: suppressed
        tile(1, 1024, 1024),  # disjoint: kept
        tile(1, 1100, 1024),  # 70% of the previous kept one: suppressed
    ]
    assert keep_distinct(ranked, 10) == [0, 2, 3, 5]
    assert keep_distinct(ranked, 2) == [0, 2]  # stops at the limit
    assert keep_distinct(ranked, 10, max_overlap=1.0) == list(range(len(ranked)))


def test_footprints_decide_when_the_items_are_georeferenced() -> None:
    ranked = [
        tile(1, 0, 0, footprint=(10.0, 50.0, 10.1, 50.1)),
        # windows are disjoint but the footprints overlap by 60%: the footprint is what counts
        tile(1, 2048, 2048, footprint=(10.04, 50.0, 10.14, 50.1)),
        tile(1, 0, 0, footprint=(10.5, 50.5, 10.6, 50.6)),  # same window, footprints apart: kept
        None,  # an id gone from the store is skipped
        tile(3, 0, 0, footprint=(10.0, 50.0, 10.1, 50.1)),
    ]
    assert keep_distinct(ranked, 10) == [0, 2, 4]
