"""Scenes by id: the metadata of an indexed file (a scene cut into tiles, or a small image) and an overview."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query
from fastapi.responses import FileResponse, Response
from pydantic import ValidationError

from index.store import IndexVersion, SceneRecord
from service.downloads import RANGE_RESPONSES, ArchiveFile
from service.errors import ServiceError, error_responses, image_responses
from service.geo.winding import rfc7946_geometry
from service.image_ids import SceneId
from service.imaging import store_bands
from service.links import absolute, archive_path, scene_links
from service.overviews import OVERVIEW_SIZE, cached_overview, mercator_grid
from service.routers.images import IMMUTABLE, downloadable
from service.scene_catalog import SceneCatalog, lonlat_box
from service.schemas import SceneInfo, SceneList, SearchFilters
from service.state import ServiceState, get_state
from service.strict import only_query_params

router = APIRouter(prefix="/v1/scenes", tags=["scenes"])
State = Annotated[ServiceState, Depends(get_state)]
NO_PARAMS = [Depends(only_query_params())]
MAX_PAGE = 1000


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


def describe_scene(version: IndexVersion, scene: SceneRecord) -> SceneInfo:
    """What clients learn about a scene, with absolute links."""
    links = scene_links(scene.id)
    grid = mercator_grid(scene)
    return SceneInfo(
        id=scene.id,
        path=archive_path(version.manifest.sources, scene.source, scene.path),
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
        time_source=scene.time_source,
        items=scene.items,
        image_url=links["image_url"],
        overview_url=links["overview_url"],
        overview_bounds=list(grid.lonlat_bounds()) if grid is not None else None,
        url=links["url"],
    )


def _bbox(text: str | None) -> tuple[float, float, float, float] | None:
    """The `bbox` parameter, checked by the same rules as the search filters' bbox."""
    if text is None:
        return None
    parts = text.split(",")
    try:
        numbers = tuple(float(part) for part in parts)
    except ValueError:
        numbers = ()
    if len(numbers) != 4:
        raise ServiceError(422, "invalid_request", "bbox must be four numbers west,south,east,north (EPSG:4326)")
    try:
        return SearchFilters(bbox=numbers).bbox
    except ValidationError as exc:
        reason = str(exc.errors()[0]["msg"]).removeprefix("Value error, ")
        raise ServiceError(422, "invalid_request", reason) from None


@router.get(
    "",
    response_model=SceneList,
    responses=error_responses(422, 503),
    summary="List the scenes",
    dependencies=[Depends(only_query_params("limit", "offset", "bbox"))],
)
async def list_scenes(
    state: State,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="scenes per page")] = 100,
    offset: Annotated[int, Query(ge=0, description="scenes to skip (from `next_url` of the previous page)")] = 0,
    bbox: Annotated[
        str | None, Query(description="west,south,east,north in EPSG:4326: scenes whose footprint intersects it")
    ] = None,
) -> SceneList:
    """Every indexed file (scene or small image) in archive order, a page at a time; with `bbox`, only the
    georeferenced scenes whose footprint intersects the box."""
    box = _bbox(bbox)
    version = state.live.snapshot()
    catalog = await asyncio.to_thread(SceneCatalog.of, version)
    ids = catalog.meeting(lonlat_box(box) if box is not None else None)
    page = [scene for scene in version.scenes(ids[offset : offset + limit]) if scene is not None]
    next_url = None
    if offset + limit < len(ids):
        query = {"limit": limit, "offset": offset + limit, **({"bbox": bbox} if bbox is not None else {})}
        next_url = absolute(f"{router.prefix}?{urlencode(query)}")
    return SceneList(
        scenes=[describe_scene(version, scene) for scene in page],
        matched=len(ids),
        limit=limit,
        offset=offset,
        next_url=next_url,
        index_version=version.number,
    )


@router.get(
    "/{scene_id}",
    response_model=SceneInfo,
    responses=error_responses(404, 422, 503),
    summary="A scene",
    dependencies=NO_PARAMS,
)
async def scene_info(scene_id: SceneId, state: State) -> SceneInfo:
    version = state.live.snapshot()
    return describe_scene(version, _scene(version, scene_id))


@router.get(
    "/{scene_id}/overview",
    response_class=Response,
    dependencies=NO_PARAMS,
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
    dependencies=NO_PARAMS,
    responses={
        **image_responses("The file (`Accept-Ranges: bytes`)"),
        **RANGE_RESPONSES,
    },
    summary="The original scene file (byte ranges supported)",
)
async def scene_original(scene_id: SceneId, state: State) -> FileResponse:
    path = downloadable(_path(state.live.snapshot(), scene_id), f"scene {scene_id}")
    return ArchiveFile(path, headers={"Cache-Control": IMMUTABLE})
