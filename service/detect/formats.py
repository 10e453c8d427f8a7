"""Detections as a GIS reads them: GeoJSON FeatureCollections (RFC 7946) and GeoParquet, one layer each.

`tiles` holds one feature per passing georeferenced tile, `polygons` one per dissolved area. Ids are strings in
GeoJSON (64-bit ids lose digits in JavaScript and most GIS readers) and int64 in GeoParquet.
"""

from __future__ import annotations

import io
import json
from typing import Any

import geopandas
import shapely.geometry
from fastapi.responses import Response

from service.detect.schemas import DetectionPolygon, DetectionTile, Layer

GEOJSON = "application/geo+json"
PARQUET = "application/vnd.apache.parquet"


def _tile_properties(tile: DetectionTile) -> dict[str, Any]:
    return {"image_id": str(tile.id), "score": tile.score, "path": tile.path, "scene_id": str(tile.scene_id)}


def _polygon_properties(polygon: DetectionPolygon) -> dict[str, Any]:
    return {
        "count": polygon.count, "max_score": polygon.max_score, "mean_score": polygon.mean_score,
        "member_ids": [str(i) for i in polygon.member_ids],
    }


def geojson(tiles: list[DetectionTile], polygons: list[DetectionPolygon], layer: Layer) -> Response:
    if layer == "tiles":
        features = [
            {"type": "Feature", "id": str(t.id), "geometry": t.footprint, "properties": _tile_properties(t)}
            for t in tiles if t.footprint is not None
        ]
    else:
        features = [
            {"type": "Feature", "id": str(p.id), "geometry": p.geometry, "properties": _polygon_properties(p)}
            for p in polygons
        ]
    return Response(json.dumps({"type": "FeatureCollection", "features": features}), media_type=GEOJSON)


def geoparquet(tiles: list[DetectionTile], polygons: list[DetectionPolygon], layer: Layer) -> Response:
    if layer == "tiles":
        mapped = [t for t in tiles if t.footprint is not None]
        columns: dict[str, list[Any]] = {
            "image_id": [t.id for t in mapped], "score": [t.score for t in mapped],
            "path": [t.path for t in mapped], "scene_id": [t.scene_id for t in mapped],
        }
        shapes = [shapely.geometry.shape(t.footprint) for t in mapped]
    else:
        columns = {
            "polygon_id": [p.id for p in polygons], "count": [p.count for p in polygons],
            "max_score": [p.max_score for p in polygons], "mean_score": [p.mean_score for p in polygons],
            "member_ids": [p.member_ids for p in polygons],
        }
        shapes = [shapely.geometry.shape(p.geometry) for p in polygons]
    frame = geopandas.GeoDataFrame(columns, geometry=geopandas.GeoSeries(shapes, crs="EPSG:4326"))
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    headers = {"Content-Disposition": f'attachment; filename="detections-{layer}.parquet"'}
    return Response(buffer.getvalue(), media_type=PARQUET, headers=headers)
