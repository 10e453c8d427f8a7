"""Text → image search (POST and GET) and image upload → captions + similar images."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Annotated, get_args
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import ValidationError

from service.chips import with_scene_stretch
from service.decimal_ints import canonical_int
from service.errors import ServiceError, error_responses
from service.geojson import RESPONSE_DOC, feature_collection, wants_geojson
from service.imaging import decode_upload, store_bands
from service.json_body import JsonRoute
from service.previews import preview_data_url
from service.schemas import (
    ImageSearchResponse,
    ImageTimings,
    RerankMethod,
    SearchFilters,
    TextSearchRequest,
    TextSearchResponse,
    TextTimings,
)
from service.state import ServiceState, get_state
from service.strict import check_query_params, only_query_params
from service.uploads import check_declared_length, read_form

router = APIRouter(prefix="/v1/search", tags=["search"], route_class=JsonRoute)
NO_CAPTION_BANK = (
    "this index has no caption bank, so there are no captions to match; add caption files "
    "(annotation JSON or one caption a line) with `posapl index update --add-captions FILE`"
)
State = Annotated[ServiceState, Depends(get_state)]
RERANK_METHODS: tuple[str, ...] = get_args(RerankMethod)
GET_FILTERS = (
    "bbox", "time_from", "time_to", "gsd_min", "gsd_max", "scenes", "exclude_scenes", "collections", "cloud_cover_max",
    "platform",
)
GET_PARAMS = ("q", "k", "rerank", *GET_FILTERS, "dedupe_overlaps", "format")
FORM_FIELDS = ("k_captions", "k_images", "rerank", "dedupe_overlaps")
FORM_FILES = ("file",)
NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?")

IMAGE_FORM_SCHEMA = {
    "type": "object",
    "required": ["file"],
    "properties": {
        "file": {"type": "string", "format": "binary", "description": "JPEG, PNG, TIFF, GIF, WebP, BMP …"},
        "k_captions": {"type": "integer", "minimum": 1, "maximum": 100, "default": 5},
        "k_images": {"type": "integer", "minimum": 0, "maximum": 100, "default": 10},
        "rerank": {"type": "string", "enum": list(RERANK_METHODS), "description": "server default when omitted"},
        "dedupe_overlaps": {"type": "boolean", "default": True, "description": "suppress overlapping tiles"},
    },
}


Format = Annotated[
    str | None, Query(description="json (default) or geojson: a FeatureCollection of footprints, as with "
                      "Accept: application/geo+json")
]


async def _text_search(
    state: ServiceState,
    query: str,
    k: int,
    rerank: RerankMethod | None,
    filters: SearchFilters | None,
    dedupe: bool = True,
    geojson: bool = False,
) -> TextSearchResponse | Response:
    outcome = await state.searcher.text(query, k, rerank or state.settings.rerank_default, filters, dedupe)
    if geojson:
        return feature_collection(outcome.hits)
    return TextSearchResponse(
        query=query,
        normalized_query=outcome.normalized,
        pos=outcome.pos,
        rerank=outcome.rerank,
        results=outcome.hits,
        index_version=outcome.version,
        timings_ms=TextTimings(**outcome.timings_ms),
        matched=outcome.matched,
        rerank_note=outcome.rerank_note,
        dedupe_note=outcome.dedupe_note,
    )


async def require_utf8_query_string(request: Request) -> None:
    """Starlette silently turns undecodable %-escapes into U+FFFD; refuse them instead.

    This and the other checks of the GET routes are `async` though they never wait: FastAPI runs a plain `def`
    dependency in its thread pool, one thread hop per dependency and request."""
    try:
        parse_qsl(request.scope.get("query_string", b"").decode("latin-1"), encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise ServiceError(422, "invalid_encoding", "the query string is not valid UTF-8") from None


async def require_canonical_k(request: Request) -> None:
    """`k=+5`, `k=05`, `k=5_0` or `k=5.0` would all parse leniently; only `k=5` is accepted."""
    raw = request.query_params.get("k")
    if raw is not None:
        canonical_int(raw, "k", 1, 100)


async def reject_unknown_params(request: Request) -> None:
    """GET /v1/search/text reads only GET_PARAMS: any other (e.g. a filter that only POST takes) is refused."""
    check_query_params(request, GET_PARAMS, " (send the other filters with POST /v1/search/text)")


@router.post(
    "/text",
    response_model=TextSearchResponse,
    responses={**error_responses(400, 422, 503), **RESPONSE_DOC},
    summary="Search images by text",
    dependencies=[Depends(only_query_params("format"))],
)
async def search_text(
    body: TextSearchRequest, state: State, request: Request, format: Format = None
) -> TextSearchResponse | Response:
    """POS-tag and encode the query, search the image index, re-rank, return the top k images."""
    geojson = wants_geojson(request, format)
    return await _text_search(state, body.query, body.k, body.rerank, body.filters, body.dedupe_overlaps, geojson)


def _numbers(raw: str, name: str, count: int | None = None) -> list[float]:
    """Comma-separated plain decimal numbers (no `1_0`, `inf` or spaces, which float() would take)."""
    parts = raw.split(",")
    if (count is not None and len(parts) != count) or not all(NUMBER.fullmatch(part) for part in parts):
        what = "four numbers" if count == 4 else "a number"
        example = "west,south,east,north (EPSG:4326)" if name == "bbox" else "in plain decimal notation"
        raise ServiceError(422, "invalid_request", f"{name} must be {what} {example}, got {raw[:60]!r}")
    return [float(part) for part in parts]


def get_filters(raw: dict[str, str | None]) -> SearchFilters | None:
    """The GET form of the filters, validated like the JSON body's: `bbox=w,s,e,n`, `gsd_min=0.5`, and scene
    ids as `scenes=1,2` (decimal, the same ids as hit.scene.id)."""
    given: dict[str, object] = {}
    for name, value in raw.items():
        if value is None:
            continue
        if name == "bbox":
            given[name] = tuple(_numbers(value, name, 4))
        elif name in ("gsd_min", "gsd_max", "cloud_cover_max"):
            given[name] = _numbers(value, name, 1)[0]
        elif name in ("scenes", "exclude_scenes", "collections", "platform"):
            given[name] = value.split(",")
        else:
            given[name] = value
    if not given:
        return None
    try:
        return SearchFilters(**given)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'filters'}: {err['msg']}" for err in exc.errors()[:5]
        )
        raise ServiceError(422, "invalid_request", problems) from None


async def query_filters(
    bbox: Annotated[
        str | None, Query(description="west,south,east,north in EPSG:4326 (west > east: across the antimeridian)")
    ] = None,
    time_from: Annotated[str | None, Query(description="acquired at or after (ISO-8601 date or date-time)")] = None,
    time_to: Annotated[str | None, Query(description="acquired at or before (a date includes the whole day)")] = None,
    gsd_min: Annotated[str | None, Query(description="ground sample distance at least (m/px)")] = None,
    gsd_max: Annotated[str | None, Query(description="ground sample distance at most (m/px)")] = None,
    scenes: Annotated[str | None, Query(description="only items of these scenes: comma-separated scene ids")] = None,
    exclude_scenes: Annotated[str | None, Query(description="no items of these scenes: comma-separated ids")] = None,
    collections: Annotated[str | None, Query(description="STAC collections: comma-separated ids")] = None,
    cloud_cover_max: Annotated[str | None, Query(description="STAC eo:cloud_cover at most (percent)")] = None,
    platform: Annotated[str | None, Query(description="STAC platforms: comma-separated names")] = None,
) -> SearchFilters | None:
    """The filters of a GET search route (text search, similar items), as query parameters."""
    return get_filters(
        {"bbox": bbox, "time_from": time_from, "time_to": time_to, "gsd_min": gsd_min, "gsd_max": gsd_max,
         "scenes": scenes, "exclude_scenes": exclude_scenes, "collections": collections,
         "cloud_cover_max": cloud_cover_max, "platform": platform}
    )


@router.get(
    "/text",
    response_model=TextSearchResponse,
    responses={**error_responses(422, 503), **RESPONSE_DOC},
    summary="Search images by text (for links and curl)",
    dependencies=[
        Depends(require_utf8_query_string), Depends(reject_unknown_params), Depends(require_canonical_k)
    ],
)
async def search_text_get(
    state: State,
    request: Request,
    q: Annotated[str, Query(description="free-text query")],
    filters: Annotated[SearchFilters | None, Depends(query_filters)],
    k: Annotated[int, Query(ge=1, le=100)] = 10,
    rerank: RerankMethod | None = None,
    dedupe_overlaps: bool = True,
    format: Format = None,
) -> TextSearchResponse | Response:
    geojson = wants_geojson(request, format)
    return await _text_search(state, q, k, rerank, filters, dedupe_overlaps, geojson)


def _form_int(fields: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = fields.get(name)
    if raw is None or raw.strip() == "":
        return default
    return canonical_int(raw.strip(), name, low, high)


def _form_bool(fields: dict[str, str], name: str, default: bool) -> bool:
    raw = fields.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw not in ("true", "false"):
        raise ServiceError(422, "invalid_request", f"{name} must be true or false, got {raw[:40]!r}")
    return raw == "true"


@router.post(
    "/image",
    response_model=ImageSearchResponse,
    responses={**error_responses(400, 413, 415, 422, 503), **RESPONSE_DOC},
    summary="Find captions and similar images for an uploaded image",
    openapi_extra={
        "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": IMAGE_FORM_SCHEMA}}}
    },
    dependencies=[Depends(only_query_params("format"))],
)
async def search_image(request: Request, state: State, format: Format = None) -> ImageSearchResponse | Response:
    """The upload is read into memory with the size limit enforced while streaming; it never touches disk. The
    GeoJSON form holds the similar images only (captions have no footprint)."""
    geojson = wants_geojson(request, format)
    settings = state.settings
    bands = store_bands(state.live.snapshot())
    check_declared_length(request.headers.get("content-length"), settings.max_upload_bytes)
    form = await read_form(
        request.headers.get("content-type"), request.stream(), settings.max_upload_bytes, FORM_FIELDS, FORM_FILES
    )
    upload = form.files.get("file")
    if upload is None:
        raise ServiceError(422, "missing_file", "the form has no file part named 'file'")
    k_captions = _form_int(form.fields, "k_captions", 5, 1, 100)
    k_images = _form_int(form.fields, "k_images", 10, 0, 100)
    method = form.fields.get("rerank") or settings.rerank_default
    if method not in RERANK_METHODS:
        raise ServiceError(
            422, "invalid_request", f"rerank must be one of {', '.join(RERANK_METHODS)}, got {method[:40]!r}"
        )
    started = time.perf_counter()
    data = bytes(upload.data)
    decoded = await asyncio.to_thread(decode_upload, data, settings.max_image_pixels, bands)
    decoded, stretch = await asyncio.to_thread(
        with_scene_stretch, state.live.snapshot(), data, decoded, settings.max_image_pixels
    )
    image = decoded.image
    decode_ms = (time.perf_counter() - started) * 1000.0
    dedupe = _form_bool(form.fields, "dedupe_overlaps", True)
    outcome = await state.searcher.image(image, k_captions, k_images, method, decode_ms, dedupe)
    if geojson:
        return feature_collection(outcome.images)
    preview = await asyncio.to_thread(preview_data_url, image)
    return ImageSearchResponse(
        width=image.width,
        height=image.height,
        rerank=outcome.rerank,
        captions=outcome.captions,
        images=outcome.images,
        index_version=outcome.version,
        timings_ms=ImageTimings(**outcome.timings_ms),
        preview=preview,
        captions_note=None if outcome.captions else NO_CAPTION_BANK,
        stretch=stretch,
        rerank_note=outcome.rerank_note,
        dedupe_note=outcome.dedupe_note,
    )
