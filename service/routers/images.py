"""Archive images by id: the original file, a cached thumbnail and a browser view. Clients never pass a path."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse, Response

from index.store import ImageRecord, IndexVersion
from index.vrt import is_vrt
from service.downloads import RANGE_RESPONSES, ArchiveFile, attachment, window_geotiff
from service.errors import ServiceError, error_responses, image_responses
from service.image_ids import ImageId
from service.imaging import THUMBNAIL_SIZE, VIEW_SIZE, Rendered, render, store_bands
from service.state import ServiceState, get_state
from service.strict import only_query_params

router = APIRouter(prefix="/v1/images", tags=["images"], dependencies=[Depends(only_query_params())])
State = Annotated[ServiceState, Depends(get_state)]
IMMUTABLE = "public, max-age=86400, immutable"  # ids are content hashes: the bytes behind an id never change


def _item(version: IndexVersion, image_id: int) -> tuple[Path, ImageRecord]:
    try:
        record = version.image(image_id)
    except KeyError:
        raise ServiceError(
            404, "unknown_image", f"no image with id {image_id} in index version {version.number}"
        ) from None
    path = Path(version.manifest.sources[record.source]) / record.path
    if not path.is_file():
        raise ServiceError(404, "image_file_missing", f"the file of image {image_id} is no longer in the archive")
    return path, record


def downloadable(path: Path, what: str) -> Path:
    """The file to send as the original; a VRT is refused: its XML names other files of the server, and is
    no image without them (its pixels are at the view and overview URLs)."""
    if is_vrt(path):
        raise ServiceError(404, "no_original_file", f"{what} is a GDAL VRT mosaic of other files: no original to send")
    return path


async def _render(state: ServiceState, image_id: int, size: int) -> Rendered:
    version = state.live.snapshot()
    path, record = _item(version, image_id)
    return await asyncio.to_thread(
        render, path, state.settings.max_image_pixels, size, record.window, store_bands(version)
    )


@router.get(
    "/{image_id}",
    response_class=FileResponse,
    responses={
        **image_responses("The original file (byte ranges supported), or a tile's window as a GeoTIFF"),
        **error_responses(413),
        **RANGE_RESPONSES,
    },
    summary="The image file; for a tile of a scene, the tile's window as a georeferenced GeoTIFF",
)
async def image_original(image_id: ImageId, state: State) -> Response:
    """A whole image is its file as stored. A tile is its window of the scene (all bands, native type, the
    window's transform), never the whole scene: that is at the scene's `/original`."""
    version = state.live.snapshot()
    path, record = _item(version, image_id)
    if record.window is not None:
        data, media_type = await asyncio.to_thread(window_geotiff, path, record.window, state.settings.max_image_pixels)
        headers = {"Cache-Control": IMMUTABLE, "Content-Disposition": attachment(record.path, record.window)}
        return Response(data, media_type=media_type, headers=headers)
    return ArchiveFile(downloadable(path, f"image {image_id}"), headers={"Cache-Control": IMMUTABLE})


@router.get(
    "/{image_id}/thumbnail",
    response_class=Response,
    responses=image_responses("JPEG, or the original when it is already a small web image"),
    summary="A thumbnail of at most 256 px a side",
)
async def image_thumbnail(image_id: ImageId, state: State) -> Response:
    rendered = state.thumbnails.get(image_id)
    if rendered is None:
        rendered = await _render(state, image_id, THUMBNAIL_SIZE)
        state.thumbnails.put(image_id, rendered)
    return Response(rendered.data, media_type=rendered.media_type, headers={"Cache-Control": IMMUTABLE})


@router.get(
    "/{image_id}/view",
    response_class=Response,
    responses=image_responses("The original when browsers show it as it is, else a PNG rendering"),
    summary="The image as a browser can show it (TIFF and other originals rendered to PNG)",
)
async def image_view(image_id: ImageId, state: State) -> Response:
    rendered = await _render(state, image_id, VIEW_SIZE)
    return Response(rendered.data, media_type=rendered.media_type, headers={"Cache-Control": IMMUTABLE})
