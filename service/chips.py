"""Uploaded chips of indexed scenes decode with their scene's stretch, so a chip finds the tile it was cut from.

A 16-bit upload is scaled to 8 bits by percentiles of its own values, while the indexer scaled each window of
a scene by percentiles of the whole scene (index.decode.probe). A chip cut from a scene thus looked different
from its own tile (rank > 20 instead of rank 1). When the upload is georeferenced and lies inside an indexed
scene with the same CRS, band count and data type, it is decoded again with that scene's stretch, which
`probe` recomputes from the scene file exactly as the indexer did (it is deterministic), once per scene
file. The response says which stretch was applied.
"""

from __future__ import annotations

import json
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

import shapely

from index.decode import BadImageError, DecodedImage, ImageFacts, probe
from index.decode import decode_image as decode_source
from index.geo import footprint
from index.store import IndexVersion, SceneRecord
from service.imaging import store_bands
from service.links import absolute
from service.scene_catalog import SceneCatalog
from service.schemas import UploadStretch

EDGE_TOLERANCE = 0.5  # of an upload pixel: a chip flush with the scene's edge still lies inside it


@lru_cache(maxsize=32)
def _scene_facts(path: str, size: int, mtime: float, bands: tuple[int, ...] | None, max_pixels: int) -> ImageFacts:
    """The scene's probe; keyed by the file's size and mtime as well, so a replaced file is probed again."""
    return probe(Path(path), bands, max_pixels)


def _inside(upload: ImageFacts, scene: SceneRecord) -> bool:
    if scene.crs != upload.crs or scene.bbox is None or upload.bbox is None or upload.transform is None:
        return False
    if (scene.bands, scene.dtype) != (upload.bands, upload.dtype):
        return False
    slack = EDGE_TOLERANCE * max(abs(upload.transform[0]), abs(upload.transform[4]))
    (ux0, uy0, ux1, uy1), (sx0, sy0, sx1, sy1) = upload.bbox, scene.bbox
    return ux0 >= sx0 - slack and uy0 >= sy0 - slack and ux1 <= sx1 + slack and uy1 <= sy1 + slack


def _unchanged(path: Path, scene: SceneRecord) -> bool:
    """The file is still the one indexed (size and mtime as recorded): its probe gives the indexed stretch."""
    try:
        stat = path.stat()
    except OSError:
        return False
    return stat.st_size == scene.bytes and stat.st_mtime == scene.mtime


def containing_scene(version: IndexVersion, upload: ImageFacts) -> SceneRecord | None:
    """The first scene (archive order) that holds the georeferenced upload with the same bands and type."""
    shape = footprint(upload.crs, upload.transform, (0, 0, upload.width, upload.height))
    if shape is None:
        return None
    area = shapely.from_geojson(json.dumps(shape))
    candidates = SceneCatalog.of(version).meeting(area)
    for scene in version.scenes(candidates):
        if scene is not None and _inside(upload, scene):
            return scene
    return None


def with_scene_stretch(
    version: IndexVersion, data: bytes, decoded: DecodedImage, max_pixels: int
) -> tuple[DecodedImage, UploadStretch]:
    """The upload decoded with the stretch of the indexed scene it was cut from, when there is one; else as it
    was decoded (its own stretch, or none for 8-bit data)."""
    own = UploadStretch(
        source="own" if decoded.stretch is not None else "none",
        low=decoded.stretch.low if decoded.stretch is not None else None,
        high=decoded.stretch.high if decoded.stretch is not None else None,
    )
    if decoded.stretch is None or decoded.crs is None:
        return decoded, own
    scene = containing_scene(version, decoded.facts())
    if scene is None:
        return decoded, own
    path = Path(version.manifest.sources[scene.source]) / scene.path
    if not _unchanged(path, scene):
        return decoded, own
    try:
        facts = _scene_facts(str(path), scene.bytes, scene.mtime, store_bands(version), max_pixels)
        if facts.stretch is None:
            return decoded, own
        upload = replace(decoded.facts(), selected=facts.selected, stretch=facts.stretch)
        again = decode_source(data, max_pixels, scene=upload)
    except BadImageError:
        return decoded, own
    stretch = UploadStretch(
        source="scene", scene_id=scene.id, scene_url=absolute(f"/v1/scenes/{scene.id}"),
        low=facts.stretch.low, high=facts.stretch.high,
    )
    return again, stretch
