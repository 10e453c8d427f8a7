"""Scenes by id: the metadata of an indexed file (a scene cut into tiles, or a small image) and an overview."""

from __future__ import annotations

import asyncio
import mimetypes
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse, Response

from index.store import IndexVersion, SceneRecord
from service.errors import ServiceError, error_responses, image_responses
from service.geo.winding import rfc7946_geometry
from service.image_ids import SceneId
from service.imaging import store_bands
from service.overviews import OVERVIEW_SIZE, cached_overview, mercator_grid
from service.routers.images import IMMUTABLE, downloadable
from service.schemas import SceneInfo
from service.state import ServiceState, get_state
from service.strict import only_query_params

router = APIRouter(prefix="/v1/scenes", tags=["scenes"], dependencies=[Depends(only_query_params())])
State = Annotated[ServiceState, Depends(get_state)]


def _scene(version: IndexVersion, scene_id: int) -> SceneRecord:
    try:
        return version.scene(scene_id)
    except KeyError:
        message = f"no scene with id {scene_id} in index version {version.number}"
        raise ServiceError(404, "unknown_scene", message) from None


def _path(version: IndexVersion, scene_id: int) -> Path:
    scene = _scene(version, scene_id)
    path = Path(version.manifest.sources[scene.source]) / scene.path
    if not path.is_file():
        raise ServiceError(404, "image_file_missing", f"the file of scene {scene_id} is no longer in the archive")
    return path


@router.get("/{scene_id}", response_model=SceneInfo, responses=error_responses(404, 422, 503), summary="A scene")
async def scene_info(scene_id: SceneId, state: State) -> SceneInfo:
    scene = _scene(state.live.snapshot(), scene_id)
    grid = mercator_grid(scene)
    return SceneInfo(
        id=scene.id,
        path=scene.path,
        width=scene.width,
        height=scene.height,
        bands=scene.bands,
        dtype=scene.dtype,
        preprocessing=scene.preprocessing,
        crs=scene.crs,
        bounds=list(scene.bbox) if scene.bbox is not None else None,
        footprint=rfc7946_geometry(scene.footprint),
        gsd=scene.gsd,
        time=scene.time,
        items=scene.items,
        image_url=f"/v1/scenes/{scene.id}/original",
        overview_url=f"/v1/scenes/{scene.id}/overview",
        overview_bounds=list(grid.lonlat_bounds()) if grid is not None else None,
    )


@router.get(
    "/{scene_id}/overview",
    response_class=Response,
    responses=image_responses("PNG"),
    summary=f"The whole scene as an RGBA PNG in Web Mercator (EPSG:3857), at most {OVERVIEW_SIZE} px a side, "
    "to place on `overview_bounds`; rendered once per index version (X-Cache: miss, then hit)",
)
async def scene_overview(scene_id: SceneId, state: State) -> Response:
    version = state.live.snapshot()
    scene, path = _scene(version, scene_id), _path(version, scene_id)
    overview = await asyncio.to_thread(
        cached_overview, version, scene, path, state.settings.max_image_pixels, store_bands(version)
    )
    headers = {"Cache-Control": IMMUTABLE, "X-Cache": "miss" if overview.rendered else "hit"}
    return Response(overview.data, media_type="image/png", headers=headers)


@router.get(
    "/{scene_id}/original",
    response_class=FileResponse,
    responses=image_responses("The file"),
    summary="The original scene file",
)
async def scene_original(scene_id: SceneId, state: State) -> FileResponse:
    path = downloadable(_path(state.live.snapshot(), scene_id), f"scene {scene_id}")
    media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return FileResponse(path, media_type=media_type, headers={"Cache-Control": IMMUTABLE})
