"""POST /v1/detect end to end: the feedback search's query vector, the passing items, their dissolved areas."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import numpy as np
import shapely

from index.store import IndexVersion
from service.detect.dissolve import dissolve
from service.detect.schemas import AppliedThreshold, DetectionPolygon, DetectionTile, DetectRequest
from service.detect.threshold import Passing, passing
from service.errors import ServiceError
from service.feedback.search import feedback_query, labels
from service.geo.winding import rfc7946_geometry
from service.links import archive_path
from service.search import Searcher, matching_ids

CAPPED = (
    "more than {cap} items passed the threshold: the best {cap} are returned (POSAPL_DETECT_MAX_ITEMS); "
    "raise the threshold to see all of an area"
)


@dataclass(frozen=True)
class Detections:
    version: int
    matched: int | None
    threshold: AppliedThreshold
    capped: bool
    note: str | None
    tiles: list[DetectionTile]
    polygons: list[DetectionPolygon]
    timings_ms: dict[str, float]


def _tiles(version: IndexVersion, found: Passing) -> list[DetectionTile]:
    tiles = []
    for image_id, score, record in zip(found.ids, found.scores, version.images(found.ids), strict=True):
        if record is None:
            continue
        tiles.append(
            DetectionTile(
                id=int(image_id),
                score=float(score),
                path=archive_path(version.manifest.sources, record.source, record.path),
                scene_id=record.scene_id,
                footprint=rfc7946_geometry(record.footprint),
            )
        )
    return tiles


def _polygons(tiles: list[DetectionTile]) -> list[DetectionPolygon]:
    mapped = [tile for tile in tiles if tile.footprint is not None]
    shapes = [shapely.geometry.shape(tile.footprint) for tile in mapped]
    scores = np.array([tile.score for tile in mapped], np.float64)
    polygons = []
    for number, part in enumerate(dissolve(shapes, scores), 1):
        oriented = shapely.orient_polygons(part.geometry, exterior_cw=False)
        polygons.append(
            DetectionPolygon(
                id=number,
                count=len(part.members),
                max_score=float(part.scores.max()),
                mean_score=float(part.scores.mean()),
                member_ids=[mapped[i].id for i in part.members],
                geometry=shapely.geometry.mapping(oriented),
            )
        )
    return polygons


async def detect(searcher: Searcher, body: DetectRequest) -> Detections:
    """Every item (of the filter's matches) whose score passes, labelled items included: a positive example
    is a detection too."""
    started = time.perf_counter()
    settings = searcher.settings
    cap = settings.detect_max_items
    rank = body.threshold.rank
    if rank is not None and rank > cap:
        raise ServiceError(422, "invalid_threshold", f"rank {rank} is beyond the detection cap of {cap}")
    positives, negatives = labels(body, settings.feedback_max_labels)
    text_vector = None
    if body.query is not None:
        _, text_vector, _, _ = await searcher.embed(searcher.normalize(body.query))
    version = searcher.live.snapshot()

    def query_and_search() -> tuple[Passing, int | None, float]:
        query = feedback_query(version, body, positives, negatives, text_vector, settings.feedback_background)
        among = None
        if body.filters is not None and body.filters.model_fields_set:
            among = matching_ids(version, body.filters)
        prepared = time.perf_counter()
        vector = query.vector
        if vector is None:  # every candidate is labelled: feedback_query leaves no direction to rank
            vector, among = np.zeros(version.manifest.dim, np.float32), np.zeros(0, np.int64)
        found = passing(version, vector, among, body.threshold.score, rank, cap, query.intercept)
        return found, None if among is None else len(among), prepared

    found, matched, prepared = await asyncio.to_thread(query_and_search)
    searched = time.perf_counter()
    tiles = await asyncio.to_thread(_tiles, version, found)
    polygons = await asyncio.to_thread(_polygons, tiles)
    dissolved = time.perf_counter()
    note = CAPPED.format(cap=cap) if found.capped else None
    if rank is not None and found.threshold is not None and rank > len(found.ids):
        note = f"only {len(found.ids)} items could be ranked: the threshold is the score of the last one"
    timings = {
        "query": (prepared - started) * 1000.0,
        "search": (searched - prepared) * 1000.0,
        "dissolve": (dissolved - searched) * 1000.0,
        "total": (time.perf_counter() - started) * 1000.0,
    }
    applied = AppliedThreshold(score=found.threshold, rank=rank)
    return Detections(version.number, matched, applied, found.capped, note, tiles, polygons, timings)
