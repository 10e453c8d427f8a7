"""Request and response bodies of /v1/searches."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from service.feedback.schemas import ItemId
from service.schemas import ImageHit, SearchFilters

SECRET_DOC = "HMAC key of the webhook's X-Hub-Signature-256 header (16 to 128 characters)"


class SavedSearchCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(..., min_length=1, max_length=200)
    query: str | None = Field(None, max_length=1000, description="text; its embedding is one more positive")
    positive_ids: list[ItemId] = Field(default_factory=list, max_length=1000)
    negative_ids: list[ItemId] = Field(default_factory=list, max_length=1000)
    method: Literal["rocchio", "probe"] = "rocchio"
    positive_weight: float = Field(2.0, ge=0, le=100, allow_inf_nan=False)
    negative_weight: float = Field(1.0, ge=0, le=100, allow_inf_nan=False)
    filters: SearchFilters | None = Field(None, description="AOI, time and GSD filters new items must pass")
    threshold: float = Field(..., ge=-1000, le=1000, allow_inf_nan=False, description="minimum score of a match")
    webhook_url: str | None = Field(None, max_length=2000, description="http(s) URL that receives new matches")
    webhook_secret: str | None = Field(None, min_length=16, max_length=128, description=SECRET_DOC)


class SavedSearchPatch(BaseModel):
    """Only the fields given change; a changed text, labels, method or weights recompute the vector."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=200)
    query: str | None = Field(None, max_length=1000)
    positive_ids: list[ItemId] | None = Field(None, max_length=1000)
    negative_ids: list[ItemId] | None = Field(None, max_length=1000)
    method: Literal["rocchio", "probe"] | None = None
    positive_weight: float | None = Field(None, ge=0, le=100, allow_inf_nan=False)
    negative_weight: float | None = Field(None, ge=0, le=100, allow_inf_nan=False)
    filters: SearchFilters | None = None
    threshold: float | None = Field(None, ge=-1000, le=1000, allow_inf_nan=False)
    webhook_url: str | None = Field(None, max_length=2000)
    webhook_secret: str | None = Field(None, min_length=16, max_length=128, description=SECRET_DOC)


class SavedSearchOut(BaseModel):
    id: int
    name: str
    query: str | None
    positive_ids: list[int]
    negative_ids: list[int]
    method: str
    positive_weight: float
    negative_weight: float
    filters: dict | None
    threshold: float
    feed_url: str = Field(..., description="Atom feed of the matches; the URL is the secret, share it with care")
    webhook_url: str | None
    model_fingerprint: str | None
    last_version: int | None = Field(..., description="newest index version the search was evaluated on")
    missing_labels: list[int] = Field(
        ..., description="labelled ids no longer in the live index version: their vectors no longer count"
    )
    created: datetime
    updated: datetime


class SavedSearchList(BaseModel):
    searches: list[SavedSearchOut]


class MatchOut(BaseModel):
    item_id: int
    version: int
    score: float
    found_at: datetime


class MatchList(BaseModel):
    search_id: int
    matches: list[MatchOut]
    items: list[ImageHit] = Field(..., description="the matches still in the live version, with their records")
