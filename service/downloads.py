"""Downloads: a tile as its window of the scene (a GeoTIFF, not the whole scene file), and whole files with
byte ranges.

The window is read with rasterio as the file stores it (every band, native data type, no stretch) and written
with the window's own transform (`rasterio.windows.transform`), the scene's CRS, nodata, colour
interpretation, band descriptions and tags, so a GIS places the tile exactly where it lies in the scene.
The whole file stays available at `/v1/scenes/{id}/original`.
"""

from __future__ import annotations

import mimetypes
import re
import warnings
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

import numpy as np
import rasterio
from rasterio.enums import ColorInterp
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.io import MemoryFile
from rasterio.windows import Window, transform
from starlette.datastructures import Headers
from starlette.responses import FileResponse, MalformedRangeHeader, RangeNotSatisfiable
from starlette.types import Receive, Scope, Send

from index.decode import PixelWindow
from service.errors import ErrorBody, ServiceError, error_response

GEOTIFF = "image/tiff; application=geotiff"
RANGE_RESPONSES: dict[int | str, dict[str, Any]] = {
    206: {"description": "The bytes a `Range` header asked for (`Content-Range` says which)"},
    400: {"model": ErrorBody, "description": "A malformed `Range` header"},
    416: {"model": ErrorBody, "description": "The range starts beyond the end of the file"},
}


def window_geotiff(path: Path, window: PixelWindow, max_pixels: int) -> tuple[bytes, str]:
    """(bytes, media type) of `window` of the scene at `path`; a file without georeferencing gives a plain TIFF."""
    x, y, width, height = window
    if width * height > max_pixels:
        raise ServiceError(413, "window_too_large", f"the window has {width * height} pixels > limit {max_pixels}")
    box = Window(x, y, width, height)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as scene:
                data = scene.read(window=box)
                georeferenced = scene.crs is not None and not scene.transform.is_identity
                profile = {
                    "driver": "GTiff",
                    "width": width,
                    "height": height,
                    "count": scene.count,
                    "dtype": data.dtype.name,
                    "nodata": scene.nodata,
                    "compress": "deflate",
                    "crs": scene.crs if georeferenced else None,
                    "transform": transform(box, scene.transform) if georeferenced else None,
                }
                mask = scene.dataset_mask(window=box) if scene.nodata is None else None
                with MemoryFile() as memory:
                    with memory.open(**{k: v for k, v in profile.items() if v is not None}) as tile:
                        tile.write(data)
                        tile.colorinterp = scene.colorinterp
                        tile.descriptions = scene.descriptions
                        tile.update_tags(**scene.tags())
                        if scene.colorinterp[0] == ColorInterp.palette:
                            tile.write_colormap(1, scene.colormap(1))
                        if mask is not None and not np.all(mask == 255):
                            tile.write_mask(mask)
                    return memory.read(), GEOTIFF if georeferenced else "image/tiff"
    except (RasterioError, OSError, ValueError) as exc:
        raise ServiceError(422, "unreadable_image", f"the window of this scene could not be read: {exc}") from None


def attachment(scene_path: str, window: PixelWindow) -> str:
    """Content-Disposition naming the tile after its scene and window (`scene_x256_y0_256x256.tif`). The archive
    name is untrusted text: it travels percent-encoded (RFC 6266 `filename*`), with a plain-ASCII fallback."""
    x, y, width, height = window
    name = f"{PurePosixPath(scene_path).stem}_x{x}_y{y}_{width}x{height}.tif"
    fallback = re.sub(r"[^A-Za-z0-9._-]", "_", name)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


class ArchiveFile(FileResponse):
    """A file of the archive, with byte ranges (Starlette's FileResponse: 206, `Accept-Ranges: bytes`), whose
    refusals of a bad `Range` header use the API's JSON error shape instead of Starlette's plain text."""

    def __init__(self, path: Path, headers: dict[str, str]) -> None:
        media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        super().__init__(path, media_type=media_type, headers=headers, stat_result=path.stat())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Headers(scope=scope)
        asked = request.get("range")
        if asked is not None and "if-range" not in request and self.stat_result is not None:
            size = self.stat_result.st_size
            try:
                self._parse_range_header(asked, size)
            except MalformedRangeHeader as exc:
                refusal = error_response(400, "invalid_range", f"{exc.content} (e.g. Range: bytes=0-1023)")
                await refusal(scope, receive, send)
                return
            except RangeNotSatisfiable:
                message = f"the range {asked[:60]!r} starts beyond the end of the file ({size} bytes)"
                refusal = error_response(416, "range_not_satisfiable", message, {"Content-Range": f"bytes */{size}"})
                await refusal(scope, receive, send)
                return
        await super().__call__(scope, receive, send)
