"""Text → image search (POST and GET) and image upload → captions + similar images."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, get_args
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, Query, Request

from service.errors import ServiceError, error_responses
from service.imaging import decode_image
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
from service.uploads import check_declared_length, read_form

router = APIRouter(prefix="/v1/search", tags=["search"])
State = Annotated[ServiceState, Depends(get_state)]
RERANK_METHODS: tuple[str, ...] = get_args(RerankMethod)

IMAGE_FORM_SCHEMA = {
    "type": "object",
    "required": ["file"],
    "properties": {
        "file": {"type": "string", "format": "binary", "description": "JPEG, PNG, TIFF, GIF, WebP, BMP …"},
        "k_captions": {"type": "integer", "minimum": 1, "maximum": 100, "default": 5},
        "k_images": {"type": "integer", "minimum": 0, "maximum": 100, "default": 10},
        "rerank": {"type": "string", "enum": list(RERANK_METHODS), "description": "server default when omitted"},
    },
}


async def _text_search(
    state: ServiceState, query: str, k: int, rerank: RerankMethod | None, filters: SearchFilters | None
) -> TextSearchResponse:
    outcome = await state.searcher.text(query, k, rerank or state.settings.rerank_default, filters)
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
    )


def require_utf8_query_string(request: Request) -> None:
    """Starlette silently turns undecodable %-escapes into U+FFFD; refuse them instead."""
    try:
        parse_qsl(request.scope.get("query_string", b"").decode("latin-1"), encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise ServiceError(422, "invalid_encoding", "the query string is not valid UTF-8") from None


@router.post(
    "/text",
    response_model=TextSearchResponse,
    responses=error_responses(400, 422, 503),
    summary="Search images by text",
)
async def search_text(body: TextSearchRequest, state: State) -> TextSearchResponse:
    """POS-tag and encode the query, search the image index, re-rank, return the top k images."""
    return await _text_search(state, body.query, body.k, body.rerank, body.filters)


@router.get(
    "/text",
    response_model=TextSearchResponse,
    responses=error_responses(422, 503),
    summary="Search images by text (for links and curl)",
    dependencies=[Depends(require_utf8_query_string)],
)
async def search_text_get(
    state: State,
    q: Annotated[str, Query(description="free-text query")],
    k: Annotated[int, Query(ge=1, le=100)] = 10,
    rerank: RerankMethod | None = None,
) -> TextSearchResponse:
    return await _text_search(state, q, k, rerank, None)


def _form_int(fields: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = fields.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ServiceError(422, "invalid_request", f"{name} must be an integer, got {raw[:40]!r}") from None
    if not low <= value <= high:
        raise ServiceError(422, "invalid_request", f"{name} must be between {low} and {high}, got {value}")
    return value


@router.post(
    "/image",
    response_model=ImageSearchResponse,
    responses=error_responses(400, 413, 415, 422, 503),
    summary="Find captions and similar images for an uploaded image",
    openapi_extra={
        "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": IMAGE_FORM_SCHEMA}}}
    },
)
async def search_image(request: Request, state: State) -> ImageSearchResponse:
    """The upload is read into memory with the size limit enforced while streaming; it never touches disk."""
    settings = state.settings
    state.live.snapshot()
    check_declared_length(request.headers.get("content-length"), settings.max_upload_bytes)
    form = await read_form(request.headers.get("content-type"), request.stream(), settings.max_upload_bytes)
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
    image = await asyncio.to_thread(decode_image, bytes(upload.data), settings.max_image_pixels)
    decode_ms = (time.perf_counter() - started) * 1000.0
    outcome = await state.searcher.image(image, k_captions, k_images, method, decode_ms)
    return ImageSearchResponse(
        width=image.width,
        height=image.height,
        rerank=outcome.rerank,
        captions=outcome.captions,
        images=outcome.images,
        index_version=outcome.version,
        timings_ms=ImageTimings(**outcome.timings_ms),
        rerank_note=outcome.rerank_note,
    )
