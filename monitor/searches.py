"""Saved searches in the state database: create, list, read, change and delete, always within one owner.

A saved search keeps its text and labels (stable item ids) besides the vector they gave, with the model
fingerprint that computed it, so the vector can be recomputed when the model changes.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import numpy as np
import sqlalchemy as sa

from monitor.db import now
from monitor.tables import matches, saved_searches


@dataclass(frozen=True)
class SavedSearch:
    id: int
    owner: int
    name: str
    query: str | None
    positive_ids: list[int]
    negative_ids: list[int]
    method: str
    weights: dict[str, float]
    filters: dict[str, Any] | None
    threshold: float
    fingerprint: str | None
    vector: np.ndarray | None
    intercept: float
    feed_token: str
    webhook_url: str | None
    webhook_secret: str | None
    last_version: int | None
    created: Any
    updated: Any


def _row(row: sa.Row) -> SavedSearch:
    data = dict(row._mapping)
    vector = data.pop("vector")
    return SavedSearch(**data, vector=None if vector is None else np.frombuffer(vector, np.float32).copy())


def create(engine: sa.Engine, owner: int, fields: dict[str, Any]) -> SavedSearch:
    """Insert a search; `fields` hold the columns the client chose plus fingerprint, vector and intercept."""
    stamp = now()
    values = {**fields, "owner": owner, "feed_token": secrets.token_urlsafe(24), "created": stamp, "updated": stamp}
    if isinstance(values.get("vector"), np.ndarray):
        values["vector"] = values["vector"].astype(np.float32).tobytes()
    with engine.begin() as db:
        new_id = db.execute(saved_searches.insert().values(**values).returning(saved_searches.c.id)).scalar_one()
    return get(engine, owner, new_id)  # type: ignore[return-value]


def get(engine: sa.Engine, owner: int | None, search_id: int) -> SavedSearch | None:
    """The search, or None when it does not exist or belongs to another owner (`owner=None`: any owner)."""
    query = sa.select(saved_searches).where(saved_searches.c.id == search_id)
    if owner is not None:
        query = query.where(saved_searches.c.owner == owner)
    with engine.connect() as db:
        row = db.execute(query).first()
    return None if row is None else _row(row)


def by_feed_token(engine: sa.Engine, token: str) -> SavedSearch | None:
    with engine.connect() as db:
        row = db.execute(sa.select(saved_searches).where(saved_searches.c.feed_token == token)).first()
    return None if row is None else _row(row)


def list_for(engine: sa.Engine, owner: int | None) -> list[SavedSearch]:
    """The owner's searches by id (`owner=None`: every search, for the monitor)."""
    query = sa.select(saved_searches).order_by(saved_searches.c.id)
    if owner is not None:
        query = query.where(saved_searches.c.owner == owner)
    with engine.connect() as db:
        return [_row(row) for row in db.execute(query)]


def update(engine: sa.Engine, owner: int, search_id: int, fields: dict[str, Any]) -> SavedSearch | None:
    values = {**fields, "updated": now()}
    if isinstance(values.get("vector"), np.ndarray):
        values["vector"] = values["vector"].astype(np.float32).tobytes()
    with engine.begin() as db:
        db.execute(
            saved_searches.update()
            .where(saved_searches.c.id == search_id, saved_searches.c.owner == owner)
            .values(**values)
        )
    return get(engine, owner, search_id)


def delete(engine: sa.Engine, owner: int, search_id: int) -> bool:
    """Delete an owner's search; its matches and deliveries go with it (ON DELETE CASCADE)."""
    with engine.begin() as db:
        gone = db.execute(
            saved_searches.delete().where(saved_searches.c.id == search_id, saved_searches.c.owner == owner)
        )
    return gone.rowcount > 0


def list_matches(engine: sa.Engine, search_id: int, since: Any = None, limit: int = 1000) -> list[dict[str, Any]]:
    """Matches of a search, oldest first; `since` (a datetime) keeps those found after it."""
    query = sa.select(matches).where(matches.c.search_id == search_id)
    if since is not None:
        query = query.where(matches.c.found_at > since)
    with engine.connect() as db:
        rows = db.execute(query.order_by(matches.c.found_at, matches.c.item_id).limit(limit))
        return [dict(row._mapping) for row in rows]
