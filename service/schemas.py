"""Request and response models of the public API (they are the OpenAPI schema clients code against)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from service.search_filters import RerankMethod, SearchFilters, TimeSource


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
