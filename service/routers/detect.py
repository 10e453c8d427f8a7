"""POST /v1/detect: every item whose score passes a threshold, as tiles and dissolved polygons.

JSON by default; GeoJSON (`format=geojson` or `Accept: application/geo+json`) or GeoParquet
(`format=geoparquet`) of one `layer`. Access is decided where the app includes this router, as for every
search: open by default, an API key for every format (exports included) under POSAPL_REQUIRE_KEY=true.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from service.detect import formats
from service.detect.pipeline import detect
from service.detect.schemas import DetectRequest, DetectResponse, DetectTimings, Layer
from service.errors import error_responses
from service.geojson import wants_geojson
from service.json_body import JsonRoute
from service.state import ServiceState, get_state

router = APIRouter(tags=["detect"], route_class=JsonRoute)
State = Annotated[ServiceState, Depends(get_state)]
DetectFormat = Literal["json", "geojson", "geoparquet"]


@router.post(
    "/v1/detect",
    response_model=DetectResponse,
    responses={
        **error_responses(400, 401, 422, 503),
        200: {
            "description": "JSON by default; a GeoJSON FeatureCollection of one layer with `format=geojson` or "
            "`Accept: application/geo+json`; GeoParquet (EPSG:4326) of one layer with `format=geoparquet`",
            "content": {formats.GEOJSON: {}, formats.PARQUET: {}},
        },
    },
    summary="Detect: every item scoring above a threshold, with dissolved areas",
)
async def detect_items(
    body: DetectRequest,
    state: State,
    request: Request,
    format: Annotated[DetectFormat | None, Query(description="json (default), geojson or geoparquet")] = None,
    layer: Annotated[Layer, Query(description="geojson / geoparquet: tiles or dissolved polygons")] = "polygons",
) -> DetectResponse | Response:
    """Ranks the query vector of the feedback inputs through the image index and keeps every item scoring at
    least the threshold (`{"score": s}`, or `{"rank": n}`: the n-th best item's score, ties included);
    footprints that overlap or share an edge are dissolved into one polygon with its count, max and mean score."""
    geoparquet = format == "geoparquet"
    as_geojson = not geoparquet and wants_geojson(request, format)
    found = await detect(state.searcher, body)
    if geoparquet:
        return formats.geoparquet(found.tiles, found.polygons, layer)
    if as_geojson:
        return formats.geojson(found.tiles, found.polygons, layer)
    return DetectResponse(
        method=body.method,
        threshold=found.threshold,
        index_version=found.version,
        matched=found.matched,
        count=len(found.tiles),
        capped=found.capped,
        note=found.note,
        tiles=found.tiles,
        polygons=found.polygons,
        timings_ms=DetectTimings(**found.timings_ms),
    )
