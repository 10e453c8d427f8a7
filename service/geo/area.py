"""Areas a search is filtered by: a `bbox` or an `intersects` geometry, checked before any work is done on them.

A geometry is client input that the server has to intersect with footprints, so its cost must be bounded
before it is used: at most `MAX_VERTICES` coordinates and `MAX_PARTS` single geometries, and it must already
be valid. Repairing an invalid polygon (`shapely.make_valid`) costs time that grows much faster than its size
(a 4.5 KB self-intersecting polygon took 15 s), so an invalid one is refused with GEOS's reason instead. What
is left is linear in the request: a validity test that stops at the first defect, and a prepared geometry
tested against the footprints the R*Tree selects.

A bbox follows RFC 7946 §5.2: west > east is the box across the antimeridian (the store queries it as two
boxes, one each side of ±180°).
"""

from __future__ import annotations

import math
from typing import Any

import shapely
import shapely.geometry
from shapely.geometry.base import BaseGeometry

MAX_VERTICES = 2000  # coordinates of an `intersects` geometry, all parts and rings together
MAX_PARTS = 100  # single geometries (polygons, points, lines) of a Multi* geometry or a collection
MULTI_POINT = 4  # GEOS type ids from here on are Multi* geometries and collections
ORDER = "order: west, south, east, north"


def check_bbox(bbox: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    """`bbox` if it is a box on Earth with an area; else ValueError naming the problem."""
    west, south, east, north = bbox
    if not all(math.isfinite(v) for v in bbox):
        raise ValueError("bbox values must be finite numbers")
    if not (-180 <= west <= 180 and -180 <= east <= 180):
        raise ValueError(f"bbox longitudes must be within [-180, 180] ({ORDER})")
    if not (-90 <= south <= 90 and -90 <= north <= 90):
        raise ValueError(f"bbox latitudes must be within [-90, 90] ({ORDER})")
    if south > north:
        raise ValueError(f"bbox south must be <= north ({ORDER}; west > east is a box across the antimeridian)")
    width = east - west if west <= east else 360.0 + east - west  # west > east: across the antimeridian
    if width == 0 or south == north:
        raise ValueError(
            "bbox has zero area (no longitude between west and east, or south == north); for a point search send "
            '`intersects` with a GeoJSON Point, e.g. {"type": "Point", "coordinates": [lon, lat]}'
        )
    return bbox


def request_geometry(geojson: dict[str, Any]) -> BaseGeometry:
    """The `intersects` geometry as shapely, once it is known to be small, on Earth and valid; else ValueError."""
    try:
        shape = shapely.geometry.shape(geojson)
    except (ValueError, TypeError, AttributeError, shapely.errors.GEOSException) as exc:
        raise ValueError(f"intersects is not a usable geometry: {exc}") from None
    vertices = int(shapely.get_num_coordinates(shape))
    if vertices > MAX_VERTICES:
        raise ValueError(f"intersects has {vertices} coordinates, more than the limit of {MAX_VERTICES}; simplify it")
    parts = _single_parts(shape)
    if parts > MAX_PARTS:
        raise ValueError(f"intersects has {parts} parts, more than the limit of {MAX_PARTS}")
    if shape.is_empty:
        raise ValueError("intersects is an empty geometry")
    min_lon, min_lat, max_lon, max_lat = shape.bounds
    if not all(math.isfinite(v) for v in shape.bounds):
        raise ValueError("intersects coordinates must be finite numbers")
    if min_lon < -180 or max_lon > 180 or min_lat < -90 or max_lat > 90:
        raise ValueError("intersects coordinates must be lon in [-180, 180], lat in [-90, 90] (EPSG:4326)")
    reason = shapely.is_valid_reason(shape)
    if reason != "Valid Geometry":
        raise ValueError(f"intersects is not a valid geometry: {reason} (OGC simple features rules)")
    return shape


def _single_parts(shape: BaseGeometry) -> int:
    """How many single geometries `shape` holds, however deeply its collections nest."""
    parts = shapely.get_parts(shape)
    while len(parts) and (shapely.get_type_id(parts) >= MULTI_POINT).any():
        parts = shapely.get_parts(parts)
    return len(parts)
