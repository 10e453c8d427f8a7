"""Liveness, readiness, index information and Prometheus metrics."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse

from service.errors import error_responses
from service.schemas import Health, ImageIndexInfo, IndexInfo, Readiness
from service.state import ServiceState, get_state

router = APIRouter()
State = Annotated[ServiceState, Depends(get_state)]


@router.get("/healthz", response_model=Health, tags=["health"], summary="The process is up")
async def healthz() -> Health:
    return Health()


@router.get(
    "/readyz",
    response_model=Readiness,
    tags=["health"],
    summary="Model and index are loaded",
    responses={503: {"model": Readiness, "description": "Not ready; `reason` says why"}},
)
async def readyz(state: State) -> Readiness | JSONResponse:
    version = state.live.current
    encoder = state.searcher.encoder
    runtime = {
        "encoder_runtime": encoder.runtime.name,
        "encoder_runtime_reason": encoder.runtime_reason,
        "worker": state.worker,
    }
    if version is None:
        body = Readiness(ready=False, reason=state.live.reason, **runtime)
        return JSONResponse(body.model_dump(), status_code=503)
    return Readiness(ready=True, index_version=version.number, **runtime)


@router.get("/v1/index", response_model=IndexInfo, tags=["index"], responses=error_responses(503))
async def index_info(state: State) -> IndexInfo:
    """The live index version, its counts and the model that embedded it."""
    version = state.live.snapshot()
    manifest = version.manifest
    return IndexInfo(
        version=version.number,
        created=manifest.created,
        model_fingerprint=manifest.fingerprint,
        embedding_dim=manifest.dim,
        images=manifest.counts.get("images", 0),
        captions=manifest.counts.get("captions", 0),
        image_index=ImageIndexInfo.model_validate(
            {key: value for key, value in manifest.index.items() if key in ImageIndexInfo.model_fields}
        ),
    )


@router.get(
    "/metrics",
    tags=["health"],
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus text"}},
)
async def metrics(state: State) -> Response:
    return state.metrics.render()
