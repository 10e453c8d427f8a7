"""Request and response models of POST /v1/detect."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from service.feedback.schemas import FeedbackInputs, FeedbackMethod

MAX_SCORE = 1e6  # beyond any probe decision value worth asking for; cosines (rocchio) lie in [-1, 1]
Layer = Literal["tiles", "polygons"]


class Threshold(BaseModel):
    """Exactly one of `score` (a raw score) or `rank` (the score of the N-th best item)."""

    model_config = ConfigDict(extra="forbid")

    score: float | None = Field(
        None, ge=-MAX_SCORE, le=MAX_SCORE, allow_inf_nan=False,
        description="keep items scoring at least this (rocchio: a cosine in [-1, 1]; probe: its decision value)",
    )
    rank: int | None = Field(
        None, ge=1, strict=True,
        description="keep items scoring at least as well as the N-th best one (ties with it included)",
    )

    @model_validator(mode="after")
    def _one_form(self) -> Threshold:
        if (self.score is None) == (self.rank is None):
            raise ValueError('give exactly one of {"score": s} or {"rank": n}')
        return self


class DetectRequest(FeedbackInputs):
    threshold: Threshold

    @model_validator(mode="after")
    def _cosine_range(self) -> DetectRequest:
        score = self.threshold.score
        if self.method == "rocchio" and score is not None and not -1.0 <= score <= 1.0:
            raise ValueError(f"rocchio scores are cosines in [-1, 1]; a threshold of {score} keeps all or nothing")
        return self


class DetectionTile(BaseModel):
    id: int
    score: float
    path: str
    scene_id: int
    footprint: dict[str, Any] | None = Field(..., description="GeoJSON geometry (EPSG:4326); null: not georeferenced")


class DetectionPolygon(BaseModel):
    id: int = Field(..., description="1 for the polygon holding the best tile, then by best score")
    count: int
    max_score: float
    mean_score: float
    member_ids: list[int]
    geometry: dict[str, Any]


class AppliedThreshold(BaseModel):
    score: float | None = Field(..., description="the score compared against (null: nothing to rank)")
    rank: int | None = None


class DetectTimings(BaseModel):
    query: float = Field(..., description="text encoding, filter selection and the query vector's computation")
    search: float
    dissolve: float
    total: float


class DetectResponse(BaseModel):
    method: FeedbackMethod
    threshold: AppliedThreshold
    index_version: int
    matched: int | None = Field(None, description="items that matched the filters; null without filters")
    count: int = Field(..., description="tiles that passed (at most the detect_max_items setting)")
    capped: bool = Field(..., description="more items passed than the cap: the best `count` are returned")
    note: str | None = None
    tiles: list[DetectionTile] = Field(..., description="best first")
    polygons: list[DetectionPolygon]
    timings_ms: DetectTimings
