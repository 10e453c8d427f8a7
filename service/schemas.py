"""Request and response models of the public API (they are the OpenAPI schema clients code against)."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, time
from typing import Annotated, Literal

from geojson_pydantic.geometries import Geometry
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictFloat,
    StringConstraints,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from index.layout import ID_MASK
from service.decimal_ints import is_canonical
from service.geo.area import MAX_PARTS, MAX_VERTICES, check_bbox, request_geometry
from service.image_ids import ID_PATTERN

RerankMethod = Literal["none", "multivariate", "reciprocal"]
TimeSource = Literal["metadata", "filename", "file_mtime", "stac"]  # index.acquired: where an item's time comes from
LAST_MOMENT = time(23, 59, 59, 999000)  # a day's end at the millisecond precision SQLite compares times with
MAX_SCENE_IDS = 1000  # scene ids one filter may list
MAX_STAC_NAMES, MAX_STAC_NAME = 100, 200  # collection / platform names one filter may list, and their length


def _scene_id(value: object) -> int:
    """A scene id as an integer: a JSON integer, or its canonical decimal string (JavaScript loses digits of
    63-bit integers, and hit.scene.url carries the id as text)."""
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and is_canonical(value):
        number = int(value)
    else:
        raise ValueError(f"scene ids are integers or decimal strings without sign or leading zeros, got {value!r:.40}")
    if not 0 <= number <= ID_MASK:
        raise ValueError(f"scene ids are between 0 and {ID_MASK}, got {number}")
    return number


SceneIdValue = Annotated[
    int,
    BeforeValidator(_scene_id),
    WithJsonSchema(
        {"anyOf": [{"type": "integer", "minimum": 0, "maximum": ID_MASK}, {"type": "string", "pattern": ID_PATTERN}]}
    ),
]


StacNames = list[Annotated[str, StringConstraints(min_length=1, max_length=MAX_STAC_NAME)]]  # ids, exactly


class SearchFilters(BaseModel):
    """Metadata filters: they select every matching image first; only those are ranked (exact semantics)."""

    model_config = ConfigDict(extra="forbid")

    bbox: tuple[StrictFloat, StrictFloat, StrictFloat, StrictFloat] | None = Field(
        None,
        description="west, south, east, north (min_lon, min_lat, max_lon, max_lat) in EPSG:4326; keeps items whose "
        "footprint intersects it (items without georeferencing never match); west > east is a box across the "
        "antimeridian (RFC 7946 §5.2); a box of zero width or height is refused (use `intersects` with a Point)",
    )
    intersects: Geometry | None = Field(
        None,
        description=f"GeoJSON geometry in EPSG:4326; keeps items whose footprint intersects it. It must be valid "
        f"(OGC rules: no self-intersection) and hold at most {MAX_VERTICES} coordinates and {MAX_PARTS} parts",
    )
    time_from: datetime | None = Field(
        None, description="keep items acquired at or after this time (ISO-8601 date or date-time; UTC if no zone)"
    )
    time_to: datetime | None = Field(
        None, description="keep items acquired at or before this time (a date alone includes that whole day)"
    )
    min_mtime: float | None = Field(None, strict=True, description="keep images modified at or after this Unix time")
    max_mtime: float | None = Field(None, strict=True, description="keep images modified at or before this Unix time")
    gsd_min: float | None = Field(
        None, strict=True, ge=0, description="keep items with a ground sample distance of at least this (m/px)"
    )
    gsd_max: float | None = Field(
        None,
        strict=True,
        ge=0,
        description="keep items with a ground sample distance of at most this (m/px), e.g. to leave out a coarse "
        "scene that covers everything; items without georeferencing have none and never match a GSD filter",
    )
    scenes: list[SceneIdValue] | None = Field(
        None,
        min_length=1,
        max_length=MAX_SCENE_IDS,
        description="keep only items of these scenes (hit.scene.id: integers, or decimal strings for clients "
        "whose numbers lose digits)",
    )
    exclude_scenes: list[SceneIdValue] | None = Field(
        None, min_length=1, max_length=MAX_SCENE_IDS, description="leave out every item of these scenes"
    )
    collections: StacNames | None = Field(
        None,
        min_length=1,
        max_length=MAX_STAC_NAMES,
        description="keep items of STAC items in one of these collections (exact ids); items not indexed from a "
        "STAC catalog never match",
    )
    cloud_cover_max: float | None = Field(
        None, strict=True, ge=0, le=100, description="keep items whose STAC item's eo:cloud_cover (percent) is at "
        "most this; items without a cloud cover never match"
    )
    platform: StacNames | None = Field(
        None,
        min_length=1,
        max_length=MAX_STAC_NAMES,
        description="keep items whose STAC item's platform (else constellation) is one of these, exactly "
        "(e.g. sentinel-2a)",
    )

    @field_validator("bbox")
    @classmethod
    def _bbox_is_a_box(cls, value: tuple[float, float, float, float] | None) -> tuple[float, ...] | None:
        return value if value is None else check_bbox(value)

    @field_validator("intersects")
    @classmethod
    def _geometry_is_usable(cls, value: Geometry | None) -> Geometry | None:
        if value is not None:
            request_geometry(value.model_dump(exclude_none=True))
        return value

    @field_validator("time_from", "time_to", mode="before")
    @classmethod
    def _iso_time(cls, value: object, info: ValidationInfo) -> object:
        """A date alone is a whole day: from its first moment, or to its last one."""
        if not isinstance(value, str):
            if value is None:
                return value
            raise ValueError("must be an ISO-8601 date or date-time string")
        text = value.strip()
        try:
            if len(text) == 10:
                day = date.fromisoformat(text)
                return datetime.combine(day, time.min if info.field_name == "time_from" else LAST_MOMENT, UTC)
            return datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"{text[:40]!r} is not an ISO-8601 date (2021-06-30) or date-time") from None

    @field_validator("time_from", "time_to")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return value
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)

    @field_validator("min_mtime", "max_mtime", "gsd_min", "gsd_max", "cloud_cover_max")
    @classmethod
    def _finite(cls, value: float | None, info: ValidationInfo) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError(f"{info.field_name} must be a finite number")
        return value

    @model_validator(mode="after")
    def _ordered(self) -> SearchFilters:
        if self.min_mtime is not None and self.max_mtime is not None and self.min_mtime > self.max_mtime:
            raise ValueError("min_mtime is after max_mtime")
        if self.time_from is not None and self.time_to is not None and self.time_from > self.time_to:
            raise ValueError("time_from is after time_to")
        if self.gsd_min is not None and self.gsd_max is not None and self.gsd_min > self.gsd_max:
            raise ValueError("gsd_min is greater than gsd_max")
        return self

    @property
    def area(self) -> bool:
        """True when a geographic filter is set (only georeferenced items can match)."""
        return self.bbox is not None or self.intersects is not None


class TextSearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(..., description="free-text description of the scene (at most 1,000 characters by default)")
    k: int = Field(10, ge=1, le=100, strict=True, description="number of images to return (a JSON integer)")
    rerank: RerankMethod | None = Field(None, description="re-ranking method; the server default when omitted")
    filters: SearchFilters | None = None
    dedupe_overlaps: bool = Field(
        True,
        description="suppress a hit that overlaps a better hit of the same scene by more than half of the smaller "
        "one (footprints, or pixel windows without georeferencing); false keeps every overlapping tile",
    )


class SceneRef(BaseModel):
    id: int = Field(..., description="scene id (content id of the file the item comes from); GET /v1/scenes/{id}")
    path: str = Field(..., description="the scene file, as `path` of a hit")
    url: str = Field("", description="its metadata, GET /v1/scenes/{id} (ids exceed JavaScript's exact integers: "
                     "use this)")


class WindowRef(BaseModel):
    x: int = Field(..., description="column of the window's top-left pixel in the scene")
    y: int = Field(..., description="row of the window's top-left pixel")
    width: int
    height: int
    size: int | None = Field(None, description="tile size the window was cut for; null for a whole small image")


class StacRef(BaseModel):
    """The STAC item a hit was indexed from (its scene is the item's stacked assets)."""

    item: str = Field(..., description="the item's id")
    collection: str | None = None
    datetime: str | None = Field(None, description="the item's datetime, else its start_datetime (ISO-8601 UTC)")
    cloud_cover: float | None = Field(None, description="eo:cloud_cover, percent")
    platform: str | None = Field(None, description="platform, else constellation")
    self_href: str | None = Field(
        None, description="the item's JSON when the catalog is on the web (http/https); null for a local catalog, "
        "whose files are the server's"
    )


class ImageHit(BaseModel):
    id: int = Field(..., description="stable image id (from the content hash)")
    score: float
    path: str = Field(
        ...,
        description="path relative to the archive folder it was indexed from; when the index has several "
        "folders, it starts with the folder's name (e.g. `a/images/x.tif` beside `b/images/x.tif`)",
    )
    width: int
    height: int
    image_url: str = Field(
        ...,
        description="absolute URL of the file; for a tile, its window as a GeoTIFF (all bands, native type)",
    )
    thumbnail_url: str
    bbox: list[float] | None = None
    crs: str | None = None
    view_url: str = Field("", description="the item as every browser shows it (PNG rendering of TIFF and tiles)")
    scene: SceneRef | None = None
    scene_url: str | None = Field(
        None, description="for a tile: absolute URL of the whole scene file it was cut from; null otherwise"
    )
    window: WindowRef | None = Field(None, description="pixel window of the scene this item covers")
    footprint: dict | None = Field(None, description="GeoJSON geometry in EPSG:4326; null without georeferencing")
    gsd: float | None = Field(None, description="ground sample distance, metres per pixel")
    time: str | None = Field(
        None, description="acquisition time (ISO-8601): from the file's metadata, else its name, else its mtime"
    )
    time_source: TimeSource | None = Field(
        None, description="where `time` comes from (stac: the STAC item's datetime); null for an index version "
        "written before it was recorded"
    )
    stac: StacRef | None = Field(None, description="the STAC item of the hit; null when not indexed from a catalog")


class SceneInfo(BaseModel):
    id: int
    path: str = Field(..., description="the file, as `path` of a hit")
    width: int
    height: int
    bands: int
    dtype: str
    preprocessing: str
    crs: str | None
    bounds: list[float] | None = Field(None, description="native bounds (min_x, min_y, max_x, max_y) in crs")
    footprint: dict | None = Field(None, description="GeoJSON geometry in EPSG:4326")
    gsd: float | None
    time: str | None
    time_source: TimeSource | None = Field(
        None, description="where `time` comes from; null for an index version written before it was recorded"
    )
    items: int = Field(..., description="index items (tiles) of this scene")
    image_url: str = Field(..., description="absolute URL of the whole file (byte ranges supported)")
    overview_url: str
    overview_bounds: list[float] | None = Field(
        None,
        description="[west, south, east, north] in degrees of the overview image (Web Mercator): place it on "
        "these bounds on a Web Mercator map; null when the scene is not georeferenced (the overview is unwarped)",
    )
    url: str = Field("", description="absolute URL of this scene's metadata, GET /v1/scenes/{id}")


class SceneList(BaseModel):
    """One page of the scenes listing, in archive order (folder, then path)."""

    scenes: list[SceneInfo]
    matched: int = Field(..., description="scenes that match the bbox (all scenes without one)")
    limit: int
    offset: int
    next_url: str | None = Field(None, description="absolute URL of the next page; null on the last page")
    index_version: int


RerankNote = Annotated[str | None, Field(description="why the requested re-ranking was not applied; else null")]
DedupeNote = Annotated[
    str | None,
    Field(
        description="why fewer than k images came back although more matched: overlap suppression reached its "
        "candidate limit (POSAPL_DEDUPE_MAX_CANDIDATES); else null"
    ),
]


class TextTimings(BaseModel):
    pos: float
    encode: float
    search: float
    rerank: float
    total: float


class TextSearchResponse(BaseModel):
    query: str
    normalized_query: str
    pos: list[str]
    rerank: RerankMethod
    results: list[ImageHit]
    index_version: int
    timings_ms: TextTimings
    matched: int | None = Field(
        None, description="images that matched the filters (all of them were ranked); null without filters"
    )
    rerank_note: RerankNote = None
    dedupe_note: DedupeNote = None


class CaptionHit(BaseModel):
    text: str
    score: float
    source: str = Field(..., description="where the caption came from (annotation file or text list)")


class ImageTimings(BaseModel):
    decode: float
    encode: float
    search: float
    rerank: float
    total: float


class UploadStretch(BaseModel):
    """How a non-8-bit upload was scaled to 8 bits before encoding."""

    source: Literal["scene", "own", "none"] = Field(
        ...,
        description="scene: the stretch of the indexed scene the georeferenced upload lies in (same CRS, bands "
        "and type), as its tiles were indexed; own: percentiles of the upload's own values; none: 8-bit data",
    )
    scene_id: int | None = Field(None, description="the scene whose stretch was applied")
    scene_url: str | None = Field(None, description="absolute URL of that scene's metadata")
    low: float | None = Field(None, description="value mapped to 0")
    high: float | None = Field(None, description="value mapped to 255")


class ImageSearchResponse(BaseModel):
    width: int = Field(..., description="size of the decoded upload (first frame)")
    height: int
    rerank: RerankMethod
    captions: list[CaptionHit]
    images: list[ImageHit]
    index_version: int
    timings_ms: ImageTimings
    preview: str | None = Field(
        None, description="data: URL of a JPEG (at most 256 px) of the decoded upload: what the model saw"
    )
    captions_note: str | None = Field(
        None, description="why `captions` is empty: the index has no caption bank (null when it has one)"
    )
    stretch: UploadStretch | None = Field(None, description="how the upload was scaled to 8 bits")
    rerank_note: RerankNote = None
    dedupe_note: DedupeNote = None


class ImageIndexInfo(BaseModel):
    """How the image index searches: chosen at build time by archive size (see the README's index section)."""

    kind: str = Field(..., description="flat (exact), ivf, hnsw, or codes re-scored exactly: sq8, ivf-sq8, ivf-pq")
    reason: str | None = Field(None, description="why this kind: auto rule or an explicit setting")
    nlist: int | None = None
    nprobe: int | None = None
    hnsw_m: int | None = None
    ef_search: int | None = None
    recall: float | None = Field(None, description="recall@recall_k against exact search, measured at build time")
    recall_k: int | None = None
    tuning_queries: str | None = Field(None, description="the held-out queries the recall was measured on")
    refine_factor: int | None = Field(None, description="compressed kinds: K' x this candidates re-scored exactly")
    pq_m: int | None = Field(None, description="ivf-pq: bytes of code per image")
    bytes_per_item: float | None = Field(None, description="index file (codes, ids, lists) per image, memory-mapped")
    vector_file_bytes_per_item: float | None = Field(None, description="float vectors on disk per image (exact scores)")


class IndexInfo(BaseModel):
    version: int
    created: str
    model_fingerprint: str
    embedding_dim: int
    images: int
    captions: int
    image_index: ImageIndexInfo | None = None


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    ready: bool
    reason: str | None = None
    index_version: int | None = None
    encoder_runtime: str | None = None
    encoder_runtime_reason: str | None = None
    worker: str | None = Field(
        None, description="random id of the server process that answered: with several workers each answers for itself"
    )


class ReloadResult(BaseModel):
    changed: bool
    index_version: int
    previous_version: int | None
    message: str
