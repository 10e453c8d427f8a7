"""`posapl index export`: every item of the live version as one GIS table (GeoParquet, FlatGeobuf or GeoJSON).

Analysts load the archive's footprints and metadata into QGIS, DuckDB or geopandas without the service. One row
per indexed item (a small image or one window of a scene), geometry in WGS84 with RFC 7946 winding:

    geometry            footprint (EPSG:4326); null for an item without georeferencing
    id, item_id         the item id as a decimal string (exact in every client) and as int64
    scene_id            the indexed file the item comes from (int64)
    source, path        the archive folder the file was indexed from and its path below that folder
    window_x, window_y, window_width, window_height     the item's pixels in its file (the whole file for a chip)
    time, time_source   acquisition time (UTC) and where it came from (metadata, filename, file_mtime)
    gsd, crs            ground sample distance (m/px) and the file's native CRS
    stac_*              the STAC item id, collection, cloud cover and platform of items ingested from a STAC
                        catalog (a column appears when at least one item has the value)
    embedding           with --embeddings, GeoParquet only: the stored vector, fixed-size list of float32

Null geometries: GeoParquet stores a null WKB value (and a null `bbox` covering), GeoJSON a `"geometry": null`
feature (RFC 7946 §3.2); FlatGeobuf cannot put a null geometry in its packed R-tree, so a file with such items
is written without the spatial index (every feature is still there).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pyogrio
import shapely

from index.stac_meta import StacRecord
from index.store import IndexVersion

ExportFormat = Literal["geoparquet", "flatgeobuf", "geojson"]
FORMATS: tuple[ExportFormat, ...] = ("geoparquet", "flatgeobuf", "geojson")
# Columns of an item ingested from a STAC catalog (its scene's row in index.stac_meta), written when any item has one.
STAC_FIELDS = ("stac_item_id", "stac_collection", "stac_cloud_cover", "stac_platform")
VECTOR_CHUNK = 10_000  # vectors gathered per step, so a large archive's embeddings are not copied twice at once


def stac_values(facts: StacRecord | None) -> dict[str, object]:
    """The STAC columns of an item whose scene came from a STAC item (none for folder archives)."""
    if facts is None:
        return {}
    values = (facts.item, facts.collection, facts.cloud_cover, facts.platform)
    return {name: value for name, value in zip(STAC_FIELDS, values, strict=True) if value is not None}


def footprint_geometry(footprint: str | None) -> shapely.Geometry | None:
    """The stored footprint as a shapely geometry with RFC 7946 winding (CCW exteriors), as the service sends it."""
    if footprint is None:
        return None
    return shapely.orient_polygons(shapely.from_geojson(footprint), exterior_cw=False)


def items_frame(version: IndexVersion, embeddings: bool = False) -> gpd.GeoDataFrame:
    """Every item of `version` as a GeoDataFrame in EPSG:4326, ordered by item id (see the module docstring)."""
    records = sorted(version.all_images(), key=lambda record: record.id)
    windows = [record.window or (0, 0, record.width, record.height) for record in records]
    facts = version.stac(sorted({record.scene_id for record in records}))
    stac = [stac_values(facts.get(record.scene_id)) for record in records]
    columns: dict[str, object] = {
        "id": pd.array([str(record.id) for record in records], dtype="string"),
        "item_id": np.array([record.id for record in records], dtype=np.int64),
        "scene_id": np.array([record.scene_id for record in records], dtype=np.int64),
        "source": [version.manifest.sources[record.source] for record in records],
        "path": [record.path for record in records],
        "window_x": np.array([w[0] for w in windows], dtype=np.int32),
        "window_y": np.array([w[1] for w in windows], dtype=np.int32),
        "window_width": np.array([w[2] for w in windows], dtype=np.int32),
        "window_height": np.array([w[3] for w in windows], dtype=np.int32),
        "time": pd.to_datetime([record.time for record in records], utc=True, format="ISO8601"),
        "time_source": pd.array([record.time_source for record in records], dtype="string"),
        "gsd": np.array([np.nan if record.gsd is None else record.gsd for record in records], dtype=np.float64),
        "crs": pd.array([record.crs for record in records], dtype="string"),
    }
    for name in STAC_FIELDS:
        if any(name in values for values in stac):
            columns[name] = [values.get(name) for values in stac]
    if embeddings:
        columns["embedding"] = _embedding_column(version, [record.id for record in records])
    geometry = [footprint_geometry(record.footprint) for record in records]
    return gpd.GeoDataFrame(columns, geometry=gpd.GeoSeries(geometry, crs="EPSG:4326"))


def _embedding_column(version: IndexVersion, ids: list[int]) -> pd.Series:
    dim = version.manifest.dim
    vectors = np.concatenate(
        [version.image_vectors(ids[start : start + VECTOR_CHUNK]) for start in range(0, len(ids), VECTOR_CHUNK)]
        or [np.zeros((0, dim), np.float32)]
    )
    array = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), type=pa.float32()), dim)
    return pd.Series(array, dtype=pd.ArrowDtype(pa.list_(pa.float32(), dim)))


def _write_geoparquet(frame: gpd.GeoDataFrame, out: Path) -> None:
    """GeoParquet 1.1 with the `bbox` covering column (readers skip row groups by it). geopandas fills the
    covering of a null geometry with NaNs; the covering must be null exactly where the geometry is, so the
    table is written from Arrow with those rows nulled."""
    sink = pa.BufferOutputStream()
    frame.to_parquet(sink, schema_version="1.1.0", write_covering_bbox=True)
    table = pq.read_table(pa.BufferReader(sink.getvalue()))
    bbox = table.column("bbox").combine_chunks()
    present = pa.array(frame.geometry.notna().to_numpy())
    nulled = pa.StructArray.from_arrays(bbox.flatten(), fields=list(bbox.type), mask=pc.invert(present))
    table = table.set_column(table.schema.get_field_index("bbox"), "bbox", nulled)
    # Only the GeoParquet metadata: pandas' own names the embedding dtype in a form pandas cannot read back.
    pq.write_table(table.replace_schema_metadata({b"geo": table.schema.metadata[b"geo"]}), out)


def export_items(version: IndexVersion, out: Path, fmt: ExportFormat, embeddings: bool = False) -> int:
    """Write every item of `version` to `out` in `fmt`; returns the number of items written."""
    if embeddings and fmt != "geoparquet":
        raise ValueError("--embeddings needs --format geoparquet (FlatGeobuf and GeoJSON have no array columns)")
    frame = items_frame(version, embeddings)
    if fmt == "geoparquet":
        _write_geoparquet(frame, out)
    elif fmt == "flatgeobuf":
        indexed = not frame.geometry.isna().any()
        pyogrio.write_dataframe(
            frame, out, driver="FlatGeobuf", layer_options={"SPATIAL_INDEX": "YES" if indexed else "NO"}
        )
    else:
        pyogrio.write_dataframe(frame, out, driver="GeoJSON", layer_options={"RFC7946": "YES"})
    return len(frame)
