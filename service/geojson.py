"""Search results as a GeoJSON FeatureCollection (RFC 7946): footprints a GIS opens as they are.

Every hit is a Feature, in rank order; an item without georeferencing keeps its place with `geometry: null`
(valid GeoJSON), so ranks stay contiguous and a client sees every result, mapped or not.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from fastapi.responses import Response

from service.errors import ServiceError
from service.schemas import ImageHit

MEDIA_TYPE = "application/geo+json"
FORMATS = ("json", "geojson")
RESPONSE_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "JSON by default; a GeoJSON FeatureCollection of the hits' footprints with "
        "`Accept: application/geo+json` or `format=geojson`",
        "content": {MEDIA_TYPE: {"schema": {"type": "object", "description": "GeoJSON FeatureCollection"}}},
    }
}


def wants_geojson(request: Request, format: str | None) -> bool:
    """`format` decides when given; otherwise the Accept header (GeoJSON only when asked for by name)."""
    if format is not None:
        if format not in FORMATS:
            raise ServiceError(422, "invalid_request", f"format must be json or geojson, got {format[:40]!r}")
        return format == "geojson"
    accept = request.headers.get("accept", "")
    return any(part.split(";")[0].strip().lower() == MEDIA_TYPE for part in accept.split(","))


def stac_properties(hit: ImageHit) -> dict[str, Any]:
    """The hit's STAC item as flat properties (GIS tables have no nested columns); null when it has none."""
    stac = hit.stac
    return {
        "stac_item": stac.item if stac else None,
        "stac_collection": stac.collection if stac else None,
        "cloud_cover": stac.cloud_cover if stac else None,
        "platform": stac.platform if stac else None,
        "stac_self_href": stac.self_href if stac else None,
    }


def feature(hit: ImageHit, rank: int) -> dict[str, Any]:
    window = hit.window.model_dump() if hit.window is not None else None
    return {
        "type": "Feature",
        "id": str(hit.id),
        "geometry": hit.footprint,
        "properties": {
            "rank": rank,
            "score": hit.score,
            "image_id": str(hit.id),
            "path": hit.path,
            "scene_id": str(hit.scene.id) if hit.scene is not None else None,
            "scene_path": hit.scene.path if hit.scene is not None else None,
            "window": json.dumps(window) if window is not None else None,
            "window_x": window["x"] if window else None,
            "window_y": window["y"] if window else None,
            "window_width": window["width"] if window else None,
            "window_height": window["height"] if window else None,
            "image_url": hit.image_url,
            "view_url": hit.view_url,
            "thumbnail_url": hit.thumbnail_url,
            "scene_url": hit.scene_url,
            "gsd": hit.gsd,
            "time": hit.time,
            "time_source": hit.time_source,
            **stac_properties(hit),
        },
    }


def feature_collection(hits: list[ImageHit]) -> Response:
    """Ids are strings: 64-bit ids lose digits as JSON numbers in JavaScript and in most GIS readers; the window
    is given both as flat numbers (QGIS shows them as columns) and as one JSON text."""
    body = {"type": "FeatureCollection", "features": [feature(hit, rank) for rank, hit in enumerate(hits, 1)]}
    return Response(json.dumps(body), media_type=MEDIA_TYPE)
