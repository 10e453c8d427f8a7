"""The records a published version holds, one per indexed item, scene and caption, and how a row of
meta.sqlite becomes one. index.store reads them; the indexer and the service pass them around."""

from __future__ import annotations

from dataclasses import dataclass

from index.layout import content_id


@dataclass(frozen=True)
class ImageRecord:
    id: int
    source: int  # index into Manifest.sources
    path: str  # relative to that source folder, POSIX separators
    sha256: str
    bytes: int
    width: int  # of the stored file, before any resize
    height: int
    mtime: float
    bands: int
    dtype: str
    preprocessing: str  # how the file became 8-bit RGB (band selection, percentile scaling), "" when plain
    bbox: tuple[float, float, float, float] | None  # (min_x, min_y, max_x, max_y) in the CRS, GeoTIFF only
    crs: str | None  # "EPSG:n" (or WKT when the CRS has no authority code), georeferenced rasters only
    window: tuple[int, int, int, int] | None = None  # x, y, width, height in scene pixels; None: the whole file
    window_size: int | None = None  # the tile size the window was cut for
    footprint: str | None = None  # GeoJSON geometry (EPSG:4326) of the item, georeferenced rasters only
    gsd: float | None = None  # ground sample distance, metres per pixel
    time: str | None = None  # acquisition time, ISO-8601 UTC (index.acquired)
    time_source: str | None = None  # "metadata" | "filename" | "file_mtime"; None in versions written before it

    @property
    def scene_id(self) -> int:
        """Every item of one file (its tiles, or the whole image) shares the file's content id."""
        return content_id(self.sha256)


@dataclass(frozen=True)
class SceneRecord:
    """One indexed file: a scene cut into tiles, or a small image that is its own single item."""

    id: int  # content id of the file
    source: int
    path: str
    sha256: str
    bytes: int
    mtime: float
    width: int
    height: int
    bands: int
    dtype: str
    preprocessing: str
    bbox: tuple[float, float, float, float] | None  # native bounds in `crs`
    crs: str | None
    footprint: str | None  # GeoJSON geometry (EPSG:4326)
    gsd: float | None
    time: str | None
    items: int  # index items (tiles) of this scene
    time_source: str | None = None  # as ImageRecord.time_source


@dataclass(frozen=True)
class CaptionRecord:
    id: int
    text: str
    source: str  # file the caption came from


IMAGE_COLUMNS = (
    "id, source, path, sha256, bytes, width, height, mtime, bands, dtype, preprocessing, "
    "min_x, min_y, max_x, max_y, crs, window_x, window_y, window_width, window_height, window_size, "
    "footprint, gsd, time"
)
SCENE_COLUMNS = (
    "id, source, path, sha256, bytes, mtime, width, height, bands, dtype, preprocessing, "
    "min_x, min_y, max_x, max_y, crs, footprint, gsd, time, items"
)


def image_record(row: tuple) -> ImageRecord:
    """An images-table row (IMAGE_COLUMNS, then time_source) as a record."""
    bbox = None if row[11] is None else (row[11], row[12], row[13], row[14])
    window = None if row[16] is None else (row[16], row[17], row[18], row[19])
    return ImageRecord(
        *row[:11], bbox=bbox, crs=row[15], window=window, window_size=row[20], footprint=row[21], gsd=row[22],
        time=row[23], time_source=row[24],
    )


def scene_record(row: tuple) -> SceneRecord:
    """A scenes-table row (SCENE_COLUMNS, then time_source) as a record."""
    bbox = None if row[11] is None else (row[11], row[12], row[13], row[14])
    return SceneRecord(*row[:11], bbox, *row[15:])
