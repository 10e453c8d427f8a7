"""A tile's download: its window of the scene as a GeoTIFF, not the whole scene file.

The window is read with rasterio as the file stores it (every band, native data type, no stretch) and written
with the window's own transform (`rasterio.windows.transform`), the scene's CRS, nodata, colour
interpretation, band descriptions and tags, so a GIS places the tile exactly where it lies in the scene.
The whole file stays available at `/v1/scenes/{id}/original`.
"""

from __future__ import annotations

import warnings
from pathlib import Path, PurePosixPath
from urllib.parse import quote

import numpy as np
import rasterio
from rasterio.enums import ColorInterp
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.io import MemoryFile
from rasterio.windows import Window, transform

from index.decode import PixelWindow
from service.errors import ServiceError

GEOTIFF = "image/tiff; application=geotiff"


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
    """Content-Disposition naming the tile after its scene and window (`scene_x256_y0_256x256.tif`); the archive
    name is untrusted text, so it travels percent-encoded (RFC 6266 `filename*`)."""
    x, y, width, height = window
    name = f"{PurePosixPath(scene_path).stem}_x{x}_y{y}_{width}x{height}.tif"
    return f"attachment; filename*=UTF-8''{quote(name, safe='')}"
