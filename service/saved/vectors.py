"""A saved search's vector as the server computes it: the query text encoded by the serving model (batched and
cached like a search's), then monitor.recompute's shared computation against the live version, so the API and
the nightly monitor give a search the same vector.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import sqlalchemy as sa

from monitor.recompute import SearchVector, recompute, search_vector
from monitor.searches import SavedSearch
from service.errors import ServiceError
from service.saved.access import call
from service.search import Searcher


async def _text_vector(searcher: Searcher, query: str | None) -> np.ndarray | None:
    if not query:
        return None
    _, vector, _, _ = await searcher.embed(searcher.normalize(query))
    return vector


async def compute(searcher: Searcher, fields: dict[str, Any], strict: bool) -> SearchVector:
    """The vector of `fields` (query, positive/negative ids, method, weights) against the live version; see
    monitor.recompute.search_vector for `strict` and the 422s."""
    text_vector = await _text_vector(searcher, fields.get("query"))
    version = searcher.live.snapshot()
    return await asyncio.to_thread(
        search_vector, version, fields, text_vector, searcher.settings.feedback_background, strict
    )


async def fresh(searcher: Searcher, db: sa.Engine, search: SavedSearch) -> SavedSearch:
    """The search, its vector recomputed (and stored) first when the serving model is not the one that computed
    it; unchanged when nothing is left to compute from (see monitor.recompute.recompute)."""
    if search.fingerprint == searcher.live.fingerprint:
        return search
    try:
        text_vector = await _text_vector(searcher, search.query)
    except ServiceError as exc:  # e.g. a text longer than a since lowered POSAPL_MAX_QUERY_CHARS: still readable
        if exc.status != 422:
            raise
        return search
    version = searcher.live.snapshot()
    return await call(recompute, db, search, version, text_vector, searcher.settings.feedback_background)
