"""Request and response models of the similar-items and relevance-feedback routes."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from index.layout import ID_MASK
from service.decimal_ints import is_canonical
from service.schemas import DedupeNote, ImageHit, SearchFilters

FeedbackMethod = Literal["rocchio", "probe"]
MAX_OFFSET = 900  # offset + k stays within the first 1,000 ranks


def _item_id(value: object) -> int:
    """An id as search results give it: a JSON integer, or its decimal string (JavaScript loses digits of
    64-bit integers, so clients that read GeoJSON's string ids may send them back as strings)."""
    if isinstance(value, bool):
        raise ValueError("an item id is an integer, not a boolean")
    if isinstance(value, str):
        if not is_canonical(value) or len(value) > 19:
            raise ValueError(f"an item id is a decimal integer without sign or leading zeros, got {value[:40]!r}")
        value = int(value)
    if not isinstance(value, int):
        raise ValueError("an item id is an integer or its decimal string")
    if not 0 <= value <= ID_MASK:
        raise ValueError(f"item ids are between 0 and {ID_MASK}, got {value}")
    return value


ItemId = Annotated[int, BeforeValidator(_item_id)]


class FeedbackInputs(BaseModel):
    """What makes the one query vector of a feedback search; detection takes the same inputs."""

    model_config = ConfigDict(extra="forbid")

    query: str | None = Field(
        None, description="optional text; its embedding counts as one more positive example"
    )
    positive_ids: list[ItemId] = Field(default_factory=list, description="ids of items labelled relevant")
    negative_ids: list[ItemId] = Field(default_factory=list, description="ids of items labelled not relevant")
    method: FeedbackMethod = Field(
        "rocchio",
        description="rocchio: q = a·mean(positives) − b·mean(negatives); probe: a logistic-regression probe "
        "against the negatives plus a background sample of the candidate items",
    )
    positive_weight: float = Field(2.0, ge=0, le=100, allow_inf_nan=False, description="rocchio's a")
    negative_weight: float = Field(1.0, ge=0, le=100, allow_inf_nan=False, description="rocchio's b")
    seed: int = Field(0, ge=0, le=2**32 - 1, strict=True, description="seed of probe's background sample")
    filters: SearchFilters | None = None


class FeedbackRequest(FeedbackInputs):
    k: int = Field(10, ge=1, le=100, strict=True, description="number of items to return")
    offset: int = Field(
        0, ge=0, le=MAX_OFFSET, strict=True, description="ranks to skip: offset=k gives the second page"
    )
    dedupe_overlaps: bool = Field(True, description="suppress overlapping tiles of one scene, as text search does")


class FeedbackTimings(BaseModel):
    encode: float = Field(..., description="text query encoding (0 without a query or on a cache hit)")
    fit: float = Field(..., description="filter selection, vector lookup and the query vector's computation")
    search: float
    total: float


class ProbeBackground(BaseModel):
    """How probe's background negatives were drawn, so a client can reproduce the fit."""

    seed: int
    sampled: int = Field(..., description="background items used as negatives")
    pool: int = Field(
        ...,
        description="candidate items (every item, or the filter's matches, less the labelled ones) they were "
        "drawn from: sorted by id, positions chosen by numpy.random.default_rng(seed).choice(pool, sampled, "
        "replace=False), taken in id order",
    )


class FeedbackResponse(BaseModel):
    method: FeedbackMethod
    results: list[ImageHit] = Field(..., description="best first; labelled items never appear")
    offset: int
    index_version: int
    matched: int | None = Field(None, description="items that matched the filters; null without filters")
    background: ProbeBackground | None = Field(None, description="probe only")
    note: str | None = Field(None, description="how the request was interpreted when that was not as given")
    dedupe_note: DedupeNote = None
    timings_ms: FeedbackTimings


class SimilarResponse(BaseModel):
    item_id: int
    results: list[ImageHit] = Field(..., description="best first; the item itself never appears")
    index_version: int
    matched: int | None = Field(None, description="items that matched the filters; null without filters")
    dedupe_note: DedupeNote = None
