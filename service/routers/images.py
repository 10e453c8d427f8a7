"""Archive images by id: the original file and a cached JPEG thumbnail. Clients never pass a path."""

from __future__ import annotations

import asyncio
import mimetypes
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse, Response

from index.store import IndexVersion
from service.errors import ServiceError, error_responses
from service.image_ids import ImageId
from service.imaging import make_thumbnail
from service.state import ServiceState, get_state

router = APIRouter(prefix="/v1/images", tags=["images"])
State = Annotated[ServiceState, Depends(get_state)]
IMMUTABLE = "public, max-age=86400, immutable"  # ids are content hashes: the bytes behind an id never change


def _file(version: IndexVersion, image_id: int) -> Path:
    try:
        path = version.image_path(image_id)
    except KeyError:
        raise ServiceError(
            404, "unknown_image", f"no image with id {image_id} in index version {version.number}"
        ) from None
    if not path.is_file():
        raise ServiceError(404, "image_file_missing", f"the file of image {image_id} is no longer in the archive")
    return path


@router.get(
    "/{image_id}",
    response_class=FileResponse,
    responses={
        200: {
            "content": {"image/*": {"schema": {"type": "string", "format": "binary"}}},
            "description": "Original file",
        },
        **error_responses(404, 422, 503),
    },
    summary="The original image file",
)
async def image_original(image_id: ImageId, state: State) -> FileResponse:
    path = _file(state.live.snapshot(), image_id)
    media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return FileResponse(path, media_type=media_type, headers={"Cache-Control": IMMUTABLE})


@router.get(
    "/{image_id}/thumbnail",
    response_class=Response,
    responses={
        200: {"content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}}, "description": "JPEG"},
        **error_responses(404, 422, 503),
    },
    summary="A 256 px JPEG thumbnail",
)
async def image_thumbnail(image_id: ImageId, state: State) -> Response:
    data = state.thumbnails.get(image_id)
    if data is None:
        path = _file(state.live.snapshot(), image_id)
        data = await asyncio.to_thread(make_thumbnail, path, state.settings.max_image_pixels)
        state.thumbnails.put(image_id, data)
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": IMMUTABLE})
