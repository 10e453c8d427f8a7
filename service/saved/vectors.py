"""A saved search's one query vector, from its text and labels, by relevance feedback's own code.

The labels' stored vectors come from the live version and the text is encoded by the serving model, so the
result is tied to that model's fingerprint; when the fingerprint changes the vector is computed again from the
kept text and labels. Labels whose items left the archive are reported, never dropped in silence.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import numpy as np

from index.store import IndexVersion
from service.errors import ServiceError
from service.feedback.schemas import FeedbackRequest
from service.feedback.search import feedback_query
from service.search import Searcher


@dataclass(frozen=True)
class SearchVector:
    vector: np.ndarray
    intercept: float
    fingerprint: str
    version: int
    missing_labels: list[int]


def missing_labels(version: IndexVersion, labels: list[int]) -> list[int]:
    return [i for i, record in zip(labels, version.images(labels), strict=True) if record is None]


async def compute(searcher: Searcher, fields: dict[str, Any], strict: bool) -> SearchVector:
    """The vector of `fields` (query, positive/negative ids, method, weights) against the live version.

    strict: unknown labels are a 422 naming them (a new or edited search); otherwise (recomputing for a new
    model) they are left out and listed in `missing_labels`.
    """
    version = searcher.live.snapshot()
    positives = list(dict.fromkeys(fields["positive_ids"]))
    negatives = list(dict.fromkeys(fields["negative_ids"]))
    both = sorted(set(positives) & set(negatives))
    if both:
        raise ServiceError(422, "conflicting_labels", f"id(s) labelled both ways: {', '.join(map(str, both[:10]))}")
    missing = await asyncio.to_thread(missing_labels, version, positives + negatives)
    if missing and strict:
        shown = ", ".join(map(str, missing[:10])) + (" …" if len(missing) > 10 else "")
        raise ServiceError(
            422, "unknown_item", f"{len(missing)} labelled id(s) are not in index version {version.number}: {shown}"
        )
    positives = [i for i in positives if i not in missing]
    negatives = [i for i in negatives if i not in missing]
    if not positives and not fields.get("query"):
        raise ServiceError(422, "no_positives", "give a query or at least one positive_ids entry still in the archive")
    text_vector = None
    if fields.get("query"):
        _, text_vector, _, _ = await searcher.embed(searcher.normalize(fields["query"]))
    weights = fields["weights"]
    body = FeedbackRequest(
        query=fields.get("query"), positive_ids=positives, negative_ids=negatives, method=fields["method"],
        positive_weight=weights["positive"], negative_weight=weights["negative"],
    )
    query = await asyncio.to_thread(
        feedback_query, version, body, positives, negatives, text_vector, searcher.settings.feedback_background
    )
    if query.vector is None:
        raise ServiceError(422, "empty_archive", "the archive has no item to fit the search against")
    return SearchVector(query.vector, query.intercept, searcher.live.fingerprint, version.number, missing)
