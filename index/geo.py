"""Where a pixel window lies on Earth: its WGS84 footprint polygon (its ground sample distance: index.gsd).

Footprints are reprojected with densified edges (a straight edge in UTM is a curve in degrees), split at the
antimeridian by GDAL so that a tile near 180° never becomes a polygon spanning the whole globe, and stored as
GeoJSON in EPSG:4326 (lon, lat), the CRS every map and GeoJSON reader assumes.
"""

from __future__ import annotations

import json
from functools import lru_cache

import shapely
from rasterio.crs import CRS
from rasterio.transform import Affine
from rasterio.warp import transform_geom
from shapely.geometry import box, shape
from shapely.validation import make_valid

WGS84 = "EPSG:4326"
EDGE_POINTS = 16  # points per window edge before reprojection

Transform = tuple[float, float, float, float, float, float]
Window = tuple[int, int, int, int]


@lru_cache(maxsize=64)
def _crs(text: str) -> CRS:
    return CRS.from_user_input(text)


def _is_lonlat(crs: CRS) -> bool:
    return crs.is_geographic and crs.to_epsg() == 4326


def _ring(transform: Transform, window: Window) -> list[tuple[float, float]]:
    """The window's outline in the scene CRS, EDGE_POINTS per edge, counter-clockwise in pixel space."""
    x, y, width, height = window
    affine = Affine(*transform)
    steps = [i / EDGE_POINTS for i in range(EDGE_POINTS)]
    pixels = (
        [(x + width * t, y) for t in steps]
        + [(x + width, y + height * t) for t in steps]
        + [(x + width * (1 - t), y + height) for t in steps]
        + [(x, y + height * (1 - t)) for t in steps]
    )
    ring = [affine @ point for point in pixels]
    return [*ring, ring[0]]


def footprint(crs: str | None, transform: Transform | None, window: Window) -> dict | None:
    """GeoJSON Polygon or MultiPolygon (EPSG:4326) of `window`; None without georeferencing or when the CRS
    cannot be reprojected."""
    if crs is None or transform is None:
        return None
    source = _crs(crs)
    polygon = {"type": "Polygon", "coordinates": [_ring(transform, window)]}
    if _is_lonlat(source):
        geometry = polygon
    else:
        try:
            geometry = transform_geom(source, WGS84, polygon, antimeridian_cutting=True, precision=-1)
        except Exception:  # GDAL raises CPLE_* types for CRSs it cannot transform; all mean "no footprint"
            return None
    shaped = make_valid(shape(geometry)).intersection(box(-180.0, -90.0, 180.0, 90.0))
    if shaped.is_empty:
        return None
    if shaped.geom_type not in ("Polygon", "MultiPolygon"):
        parts = [g for g in shapely.get_parts(shaped) if g.geom_type in ("Polygon", "MultiPolygon")]
        if not parts:
            return None
        shaped = shapely.union_all(parts)
    return json.loads(shapely.to_geojson(shaped))

