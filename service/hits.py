"""Result assembly: index rows turned into the response's image and caption hits, and the re-ranking note.

Shared by every route that answers with images (text and image search, saved searches, feedback), so a hit
looks the same wherever it comes from.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import PurePath

import numpy as np

from index.store import ImageRecord, IndexVersion
from service.geo.winding import rfc7946_geometry
from service.links import archive_path, image_links, scene_links
from service.schemas import CaptionHit, ImageHit, RerankMethod, SceneRef, WindowRef
from service.stac_ref import stac_ref


def rerank_note(method: RerankMethod, applied: RerankMethod, candidates: int, empty_reason: str) -> str | None:
    """Why a requested re-ranking was not applied (None when it was, or none was asked for)."""
    if method == "none" or applied != "none":
        return None
    if candidates == 0:
        return f"no candidates to re-rank ({empty_reason})" if empty_reason else "no candidates to re-rank"
    return "no caption bank: the index holds no re-ranking profiles, so results keep their similarity order"


def _window(record: ImageRecord) -> WindowRef:
    x, y, width, height = record.window or (0, 0, record.width, record.height)
    return WindowRef(x=x, y=y, width=width, height=height, size=record.window_size)


def image_hits(
    version: IndexVersion,
    ids: np.ndarray,
    scores: np.ndarray,
    records: Sequence[ImageRecord | None] | None = None,
) -> list[ImageHit]:
    if records is None:
        records = version.images(ids)
    stac = version.stac({record.scene_id for record in records if record is not None})
    hits = []
    for image_id, score, record in zip(ids, scores, records, strict=True):
        if record is None:
            continue
        path = archive_path(version.manifest.sources, record.source, record.path)
        scene = scene_links(record.scene_id)
        hits.append(
            ImageHit(
                id=int(image_id),
                score=float(score),
                path=path,
                width=record.width,
                height=record.height,
                **image_links(int(image_id)),
                bbox=list(record.bbox) if record.bbox is not None else None,
                crs=record.crs,
                scene=SceneRef(id=record.scene_id, path=path, url=scene["url"]),
                scene_url=scene["image_url"] if record.window is not None else None,
                window=_window(record),
                footprint=rfc7946_geometry(record.footprint),
                gsd=record.gsd,
                time=record.time,
                time_source=record.time_source,
                stac=stac_ref(stac.get(record.scene_id)),
            )
        )
    return hits


def caption_hits(version: IndexVersion, ids: np.ndarray, scores: np.ndarray, limit: int) -> list[CaptionHit]:
    """The best `limit` distinct caption texts (caption banks repeat captions verbatim), best first.

    `source` is the caption file's name only: the server's directory layout is none of the client's business.
    """
    hits: list[CaptionHit] = []
    seen: set[str] = set()
    for start in range(0, len(ids), max(limit * 3, 1)):
        chunk = slice(start, start + max(limit * 3, 1))
        for score, record in zip(scores[chunk], version.captions(ids[chunk]), strict=True):
            if record is None or record.text in seen:
                continue
            seen.add(record.text)
            hits.append(CaptionHit(text=record.text, score=float(score), source=PurePath(record.source).name))
            if len(hits) == limit:
                return hits
    return hits
