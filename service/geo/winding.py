"""Footprints as they leave the server: polygons wound as RFC 7946 §3.1.6 says.

Exterior rings counter-clockwise, holes clockwise. The index stores footprints as GDAL's reprojection made
them (clockwise exterior rings, antimeridian parts included), and versions already published keep them that
way, so every response orients them on the way out: JSON hits, GeoJSON features and scene metadata alike.
"""

from __future__ import annotations

from typing import Any

import shapely
import shapely.geometry


def rfc7946_geometry(footprint: str | None) -> dict[str, Any] | None:
    """The stored GeoJSON text of a footprint as a GeoJSON object with RFC 7946 winding (None stays None)."""
    if footprint is None:
        return None
    oriented = shapely.orient_polygons(shapely.from_geojson(footprint), exterior_cw=False)
    return shapely.geometry.mapping(oriented)
