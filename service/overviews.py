"""Scene overviews for the map: rendered once per index version, warped to Web Mercator, cached on disk.

Decimating a large scene without internal overviews reads every block of it (seconds to tens of seconds), and
the page asks for the overview of every scene in every result list, so each overview is rendered once and
kept under ROOT/cache/overviews/<version>/<scene id>.png, outside the checksummed version folder. Scene ids
are content hashes and version folders are immutable, so a cached file never goes stale; `index.publish.prune`
removes a version's overviews with the version.

Leaflet draws an image overlay by stretching it linearly between two lon/lat corners on a Web Mercator map, so
the overview is warped to EPSG:3857 and the scene info gives the warped image's exact lon/lat bounds (a
scene's native grid, e.g. EPSG:4326, would drift north on screen: 60°N data near 77°N). Pixels outside the
scene or holding nodata are transparent.
"""

from __future__ import annotations

import io
import logging
import math
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from affine import Affine
from filelock import FileLock
from PIL import Image
from rasterio.crs import CRS
from rasterio.errors import CRSError, RasterioError
from rasterio.transform import from_bounds
from rasterio.warp import Resampling, calculate_default_transform, reproject, transform, transform_bounds

from index.decode import BadImageError, decode_image, probe
from index.layout import OVERVIEW_CACHE
from index.store import IndexVersion, SceneRecord
from service.imaging import decode_error, fit

log = logging.getLogger(__name__)

OVERVIEW_SIZE = 1024  # longer side of an overview, px
WEB_MERCATOR = CRS.from_epsg(3857)
LONLAT = CRS.from_epsg(4326)


@dataclass(frozen=True)
class MercatorGrid:
    """The pixel grid of a scene's overview in EPSG:3857: the scene's extent, at most OVERVIEW_SIZE a side."""

    transform: Affine
    width: int
    height: int

    def lonlat_bounds(self) -> tuple[float, float, float, float]:
        """[west, south, east, north] of the grid's edges: Mercator x and y map to longitude and latitude
        independently, so these four numbers place the image exactly."""
        west, north = self.transform @ (0, 0)
        east, south = self.transform @ (self.width, self.height)
        lons, lats = transform(WEB_MERCATOR, LONLAT, [west, east], [south, north])
        return lons[0], lats[0], lons[1], lats[1]


@dataclass(frozen=True)
class Overview:
    """A scene's overview PNG and whether this call rendered it (else it came from the cache)."""

    data: bytes
    rendered: bool


def mercator_grid(scene: SceneRecord, size: int = OVERVIEW_SIZE) -> MercatorGrid | None:
    """The overview grid of a georeferenced scene, from its recorded CRS and bounds alone (no pixel read), so
    the scene info and the render agree; None for an image without georeferencing or outside Mercator's range
    (beyond about ±85° latitude), which is shown unwarped."""
    if scene.crs is None or scene.bbox is None:
        return None
    try:
        crs = CRS.from_user_input(scene.crs)
        west, south, east, north = transform_bounds(crs, WEB_MERCATOR, *scene.bbox, densify_pts=21)
        _, width, height = calculate_default_transform(crs, WEB_MERCATOR, scene.width, scene.height, *scene.bbox)
    except (CRSError, RasterioError, ValueError):
        return None
    if not all(math.isfinite(v) for v in (west, south, east, north)) or east <= west or north <= south:
        return None
    # The scene's exact Mercator extent, at about its native resolution, decimated to `size`.
    scale = max(1.0, max(width, height) / size)
    out_w, out_h = max(1, round(width / scale)), max(1, round(height / scale))
    return MercatorGrid(from_bounds(west, south, east, north, out_w, out_h), out_w, out_h)


def render_overview(path: Path, scene: SceneRecord, max_pixels: int, bands: tuple[int, ...] | None) -> bytes:
    """RGBA PNG of the whole scene: a decimated read (from the file's overviews where it has them) through the
    one decode path, warped to the scene's Mercator grid; alpha is 0 on nodata and outside the scene."""
    try:
        facts = probe(path, bands, max_pixels)
        decoded = decode_image(path, max_pixels, out_size=fit(facts.width, facts.height, OVERVIEW_SIZE), scene=facts)
    except BadImageError as exc:
        raise decode_error(exc, "archive") from None
    rgb = np.asarray(decoded.image)
    alpha = decoded.mask if decoded.mask is not None else np.full(rgb.shape[:2], 255, dtype=np.uint8)
    rgba = np.dstack([rgb, alpha])
    grid = mercator_grid(scene)
    if grid is not None and facts.transform is not None and facts.crs is not None:
        height, width = rgba.shape[:2]
        source = Affine(*facts.transform) @ Affine.scale(facts.width / width, facts.height / height)
        warped = np.zeros((4, grid.height, grid.width), dtype=np.uint8)  # untouched (outside the scene): alpha 0
        reproject(
            np.moveaxis(rgba, -1, 0),
            warped,
            src_transform=source,
            src_crs=CRS.from_user_input(facts.crs),
            dst_transform=grid.transform,
            dst_crs=WEB_MERCATOR,
            resampling=Resampling.nearest,  # nearest keeps alpha exactly 0 or 255 and colours unblended
            init_dest_nodata=False,
        )
        rgba = np.moveaxis(warped, 0, -1)
    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgba)).save(out, format="PNG")
    return out.getvalue()


def _write_atomic(target: Path, data: bytes) -> None:
    """Readers see the whole file or none: a temporary file in the same folder, then one rename."""
    handle, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read(target: Path) -> bytes | None:
    try:
        return target.read_bytes()
    except FileNotFoundError:  # not rendered yet (or its version was pruned a moment ago)
        return None


def cached_overview(
    version: IndexVersion, scene: SceneRecord, path: Path, max_pixels: int, bands: tuple[int, ...] | None
) -> Overview:
    """The scene's overview from the cache, rendered on the first request. A file lock per scene makes
    concurrent first requests (threads or server processes) wait for one render instead of each doing it."""
    folder = version.path.parent.parent / OVERVIEW_CACHE / str(version.number)
    target = folder / f"{scene.id}.png"
    if (data := _read(target)) is not None:
        return Overview(data, rendered=False)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        lock = FileLock(folder / f"{scene.id}.png.lock")
        lock.acquire()
    except OSError as exc:  # a read-only store: serve a fresh render each time rather than nothing
        log.warning("overview cache %s is not writable (%s); rendering without caching", folder, exc.strerror)
        return Overview(render_overview(path, scene, max_pixels, bands), rendered=True)
    try:
        if (data := _read(target)) is not None:  # another request rendered it while this one waited
            return Overview(data, rendered=False)
        started = time.perf_counter()
        data = render_overview(path, scene, max_pixels, bands)
        _write_atomic(target, data)
        log.info(
            "rendered the overview of scene %d (index version %d) in %.1f s",
            scene.id, version.number, time.perf_counter() - started,
        )
        return Overview(data, rendered=True)
    finally:
        lock.release()
