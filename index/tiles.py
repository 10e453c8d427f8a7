"""Cutting a file into index items: one item for an image no larger than a tile, else overlapping windows.

Windows are planned from the header and one probe of the scene (its band selection and stretch); the pixels
of each window are read later, by a decode worker, so no process ever holds a whole scene.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from index.decode import BadImageError, ImageFacts, dimensions, probe
from index.embed import WorkItem, item_key

Window = tuple[int, int, int, int]


def _starts(length: int, size: int, stride: int) -> list[int]:
    """Window origins along one axis: every `stride`, plus one flush with the far edge so nothing is cut off."""
    if length <= size:
        return [0]
    starts = list(range(0, length - size + 1, stride))
    if starts[-1] != length - size:
        starts.append(length - size)
    return starts


def tile_windows(width: int, height: int, sizes: list[int], overlap: float) -> list[tuple[Window, int]]:
    """(window, size) for every tile size; windows at a scene edge are clipped to a scene smaller than the size."""
    windows: list[tuple[Window, int]] = []
    seen: set[Window] = set()
    for size in sorted(sizes):
        stride = max(1, round(size * (1.0 - overlap)))
        for y in _starts(height, size, stride):
            for x in _starts(width, size, stride):
                window = (x, y, min(size, width), min(size, height))
                if window not in seen:
                    seen.add(window)
                    windows.append((window, size))
    return windows


def tile_count(width: int, height: int, sizes: list[int], overlap: float) -> int:
    """How many windows `tile_windows` makes, without making them (a header can announce absurd sizes)."""
    total = 0
    for size in sizes:
        stride = max(1, round(size * (1.0 - overlap)))
        per_axis = [1 if n <= size else (n - size + stride - 1) // stride + 1 for n in (width, height)]
        total += per_axis[0] * per_axis[1]
    return total


@dataclass(frozen=True)
class FilePlan:
    items: list[WorkItem]
    scene: ImageFacts | None  # the probe, for tiled files; whole files are probed by their worker
    failure: str | None = None


def plan_file(
    sha256: str,
    path: Path,
    sizes: list[int],
    overlap: float,
    bands: tuple[int, ...] | None,
    max_tiles: int,
    max_pixels: int,
) -> FilePlan:
    """The work items of one file, or the reason it cannot be indexed (unreadable header, too many tiles)."""
    try:
        width, height = dimensions(path)
    except BadImageError as exc:
        return FilePlan([], None, str(exc))
    if max(width, height) <= min(sizes):
        return FilePlan([WorkItem(sha256, path, bands=bands)], None)
    count = tile_count(width, height, sizes, overlap)
    if count > max_tiles:
        reason = f"{width}x{height} px needs {count} tiles, more than the limit of {max_tiles} per scene"
        return FilePlan([], None, reason)
    try:
        scene = probe(path, bands, max_pixels)
    except BadImageError as exc:
        return FilePlan([], None, str(exc))
    items = [
        WorkItem(item_key(sha256, window, size), path, window, size, scene, bands)
        for window, size in tile_windows(width, height, sizes, overlap)
    ]
    return FilePlan(items, scene)
