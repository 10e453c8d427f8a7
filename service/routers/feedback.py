"""Similar items of a stored item, and relevance-feedback search (find more like these, less like those).

Both take the text search's filters and formats: the GET filters are parsed by the text route's own parser,
and JSON or GeoJSON is chosen the same way.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from service.errors import error_responses
from service.feedback import search as pipelines
from service.feedback.schemas import FeedbackRequest, FeedbackResponse, FeedbackTimings, SimilarResponse
from service.geojson import RESPONSE_DOC, feature_collection, wants_geojson
from service.image_ids import ImageId
from service.json_body import JsonRoute
from service.routers.search import GET_FILTERS, Format, query_filters, require_canonical_k, require_utf8_query_string
from service.schemas import SearchFilters
from service.state import ServiceState, get_state
from service.strict import only_query_params

router = APIRouter(tags=["feedback"], route_class=JsonRoute)
State = Annotated[ServiceState, Depends(get_state)]
SIMILAR_PARAMS = ("k", *GET_FILTERS, "dedupe_overlaps", "format")


@router.get(
    "/v1/items/{image_id}/similar",
    response_model=SimilarResponse,
    responses={**error_responses(404, 422, 503), **RESPONSE_DOC},
    summary="Items nearest to a stored item",
    dependencies=[
        Depends(require_utf8_query_string), Depends(only_query_params(*SIMILAR_PARAMS)), Depends(require_canonical_k)
    ],
)
async def similar_items(
    image_id: ImageId,
    state: State,
    request: Request,
    filters: Annotated[SearchFilters | None, Depends(query_filters)],
    k: Annotated[int, Query(ge=1, le=100)] = 10,
    dedupe_overlaps: bool = True,
    format: Format = None,
) -> SimilarResponse | Response:
    """Ranks the archive with the item's stored vector (nothing is uploaded or re-encoded); the item itself
    is never among the results."""
    geojson = wants_geojson(request, format)
    page, version, matched = await pipelines.similar(state.searcher, image_id, k, filters, dedupe_overlaps)
    if geojson:
        return feature_collection(page.hits)
    return SimilarResponse(
        item_id=image_id, results=page.hits, index_version=version, matched=matched, dedupe_note=page.dedupe_note
    )


@router.post(
    "/v1/search/feedback",
    response_model=FeedbackResponse,
    responses={**error_responses(400, 422, 503), **RESPONSE_DOC},
    summary="Search with relevance feedback (rocchio or probe)",
)
async def search_feedback(
    body: FeedbackRequest, state: State, request: Request, format: Format = None
) -> FeedbackResponse | Response:
    """One query vector from the labelled items (and the optional text), ranked over the candidates; labelled
    items never come back. Page with `offset`."""
    geojson = wants_geojson(request, format)
    outcome = await pipelines.feedback(state.searcher, body)
    if geojson:
        return feature_collection(outcome.page.hits)
    return FeedbackResponse(
        method=body.method,
        results=outcome.page.hits,
        offset=body.offset,
        index_version=outcome.version,
        matched=outcome.matched,
        background=outcome.background,
        note=outcome.note,
        dedupe_note=outcome.page.dedupe_note,
        timings_ms=FeedbackTimings(**outcome.timings_ms),
    )
