"""The records of a new version made from decoded facts: one per item (a file or one tile of it) and one per
scene, with the footprint, GSD and acquisition time each window has. index.job_plan calls these."""

from __future__ import annotations

import json
from dataclasses import asdict

from rasterio.transform import Affine, array_bounds

from index.acquired import acquisition
from index.decode import ImageFacts
from index.geo import footprint
from index.gsd import gsd
from index.layout import content_id, item_id
from index.scan import ScannedFile
from index.store import ImageRecord, SceneRecord


def _time(facts: ImageFacts, scanned: ScannedFile) -> dict[str, str]:
    """`time` and `time_source` of a record: the file's metadata, else its name, else its mtime."""
    return asdict(acquisition(facts.time, scanned.absolute.name, scanned.mtime))


def _geometry_text(facts: ImageFacts, window: tuple[int, int, int, int]) -> str | None:
    shape = footprint(facts.crs, facts.transform, window)
    return None if shape is None else json.dumps(shape, separators=(",", ":"))


def new_record(
    scanned: ScannedFile,
    facts: ImageFacts,
    window: tuple[int, int, int, int] | None = None,
    size: int | None = None,
) -> ImageRecord:
    """The record of the whole file (window None) or of one tile of it."""
    box = window or (0, 0, facts.width, facts.height)
    return ImageRecord(
        id=item_id(scanned.sha256, window, size),
        source=scanned.source,
        path=scanned.path,
        sha256=scanned.sha256,
        bytes=scanned.bytes,
        width=box[2],
        height=box[3],
        mtime=scanned.mtime,
        bands=facts.bands,
        dtype=facts.dtype,
        preprocessing=facts.preprocessing,
        bbox=_window_bounds(facts, box),
        crs=facts.crs,
        window=window,
        window_size=size,
        footprint=_geometry_text(facts, box),
        gsd=gsd(facts.crs, facts.transform, box),
        **_time(facts, scanned),
    )


def _window_bounds(facts: ImageFacts, window: tuple[int, int, int, int]) -> tuple[float, float, float, float] | None:
    """Native bounds of a window (the file's bounds for the whole file)."""
    if facts.transform is None:
        return facts.bbox
    x, y, width, height = window
    return tuple(float(v) for v in array_bounds(height, width, Affine(*facts.transform) @ Affine.translation(x, y)))


def new_scene_record(scanned: ScannedFile, facts: ImageFacts, items: int) -> SceneRecord:
    whole = (0, 0, facts.width, facts.height)
    return SceneRecord(
        id=content_id(scanned.sha256),
        source=scanned.source,
        path=scanned.path,
        sha256=scanned.sha256,
        bytes=scanned.bytes,
        mtime=scanned.mtime,
        width=facts.width,
        height=facts.height,
        bands=facts.bands,
        dtype=facts.dtype,
        preprocessing=facts.preprocessing,
        bbox=facts.bbox,
        crs=facts.crs,
        footprint=_geometry_text(facts, whole),
        gsd=gsd(facts.crs, facts.transform, whole),
        **_time(facts, scanned),
        items=items,
    )
