"""The search filters every search endpoint takes (time, acquisition, GSD, area, scenes, STAC), validated as
the OpenAPI schema says, so a bad filter is a 422 that names it, never a query that cannot run."""

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
