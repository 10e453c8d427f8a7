"""Ground sample distance: how many metres on the ground one pixel of a window spans, in any CRS.

A pixel size read off the geotransform is in CRS units, and those are not ground metres in general: Web
Mercator (EPSG:3857) units grow by 1/cos(latitude) (a 0.597-unit pixel at 37.6° N covers 0.473 m), a UTM
grid is scaled by 0.9996-1.001, degrees shrink east-west with latitude. So the pixel at the window's centre
is taken to longitude/latitude and measured on the WGS84 ellipsoid: one pixel step along the raster's x axis
and one along its y axis, each a geodesic distance (`pyproj.Geod.inv`).

The one number reported is the geometric mean of those two ground sizes, sqrt(x * y): the side of a square
pixel with the same ground area. An EPSG:4326 raster of 0.0001° pixels at 50° N has pixels of 7.2 m (x) by
11.1 m (y) and a GSD of 8.9 m.
"""

from __future__ import annotations

import math
from functools import lru_cache

from pyproj import CRS, Geod, Transformer
from pyproj.exceptions import CRSError, ProjError
from rasterio.transform import Affine

WGS84_ELLIPSOID = Geod(ellps="WGS84")

Transform = tuple[float, float, float, float, float, float]
Window = tuple[int, int, int, int]


@lru_cache(maxsize=64)
def _to_lonlat(crs: str) -> Transformer:
    return Transformer.from_crs(CRS.from_user_input(crs), "EPSG:4326", always_xy=True)


def pixel_ground_size(crs: str, transform: Transform, column: float, row: float) -> tuple[float, float] | None:
    """Ground metres spanned by one pixel step along x and along y, centred on (column, row); None where the
    CRS cannot be taken to longitude/latitude there."""
    affine = Affine(*transform)
    points = [(column - 0.5, row), (column + 0.5, row), (column, row - 0.5), (column, row + 0.5)]
    xs, ys = zip(*(affine @ point for point in points))
    try:
        lons, lats = _to_lonlat(crs).transform(xs, ys, errcheck=True)
        _, _, along_x = WGS84_ELLIPSOID.inv(lons[0], lats[0], lons[1], lats[1])
        _, _, along_y = WGS84_ELLIPSOID.inv(lons[2], lats[2], lons[3], lats[3])
    except (CRSError, ProjError, ValueError):  # no such CRS, outside its area, beyond a pole
        return None
    if not (math.isfinite(along_x) and math.isfinite(along_y)):
        return None
    return float(along_x), float(along_y)


def gsd(crs: str | None, transform: Transform | None, window: Window) -> float | None:
    """Ground sample distance of `window` in metres per pixel: the geometric mean of the ground sizes of its
    centre pixel along x and y (see the module docstring); None without georeferencing."""
    if crs is None or transform is None:
        return None
    x, y, width, height = window
    sizes = pixel_ground_size(crs, transform, x + width / 2, y + height / 2)
    if sizes is None or min(sizes) <= 0.0:
        return None
    return math.sqrt(sizes[0] * sizes[1])
