"""A saved search's one query vector, from its text and its labels' stored vectors, and its recomputation when
the model that computed it is no longer the index's.

The API (saving, editing or reading a search) and the monitor (before it evaluates a version built by another
model) both come here, so a search matches new imagery with exactly the vector its owner reads, whichever of
the two notices the model change first. The text is encoded by the caller (the server's batched encoder, or
the monitor's copy of the store's model): only the part after it is shared, and it blocks (run it off an event
loop). Labels whose items left the archive are reported, never dropped in silence.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import sqlalchemy as sa

from index.store import IndexVersion
from monitor import searches
from monitor.searches import SavedSearch
from service.errors import ServiceError
from service.feedback.schemas import FeedbackRequest
from service.feedback.search import feedback_query

log = logging.getLogger(__name__)
VECTOR_FIELDS = ("query", "positive_ids", "negative_ids", "method", "weights")


@dataclass(frozen=True)
class SearchVector:
    vector: np.ndarray
    intercept: float
    fingerprint: str
    version: int
    missing_labels: list[int]


def missing_labels(version: IndexVersion, labels: list[int]) -> list[int]:
    return [i for i, record in zip(labels, version.images(labels), strict=True) if record is None]


def search_vector(
    version: IndexVersion,
    fields: dict[str, Any],
    text_vector: np.ndarray | None,
    background_size: int,
    strict: bool,
) -> SearchVector:
    """The vector of `fields` (query, positive/negative ids, method, weights) in `version`, with the text's
    vector (`text_vector`, encoded by the model that built `version`) as one more positive.

    strict: unknown labels are a 422 naming them (a new or edited search); otherwise (recomputing for a new
    model) they are left out and listed in `missing_labels`. A 422 also when nothing is left to compute from.
    """
    positives = list(dict.fromkeys(fields["positive_ids"]))
    negatives = list(dict.fromkeys(fields["negative_ids"]))
    both = sorted(set(positives) & set(negatives))
    if both:
        raise ServiceError(422, "conflicting_labels", f"id(s) labelled both ways: {', '.join(map(str, both[:10]))}")
    missing = missing_labels(version, positives + negatives)
    if missing and strict:
        shown = ", ".join(map(str, missing[:10])) + (" …" if len(missing) > 10 else "")
        raise ServiceError(
            422, "unknown_item", f"{len(missing)} labelled id(s) are not in index version {version.number}: {shown}"
        )
    positives = [i for i in positives if i not in missing]
    negatives = [i for i in negatives if i not in missing]
    if not positives and not fields.get("query"):
        raise ServiceError(422, "no_positives", "give a query or at least one positive_ids entry still in the archive")
    weights = fields["weights"]
    body = FeedbackRequest(
        query=fields.get("query"), positive_ids=positives, negative_ids=negatives, method=fields["method"],
        positive_weight=weights["positive"], negative_weight=weights["negative"],
    )
    query = feedback_query(version, body, positives, negatives, text_vector, background_size)
    if query.vector is None:
        raise ServiceError(422, "empty_archive", "the archive has no item to fit the search against")
    return SearchVector(query.vector, query.intercept, version.manifest.fingerprint, version.number, missing)


def recompute(
    engine: sa.Engine, search: SavedSearch, version: IndexVersion, text_vector: np.ndarray | None,
    background_size: int,
) -> SavedSearch:
    """The search with its vector computed again in `version` (from its kept text and labels) and stored with
    that version's model fingerprint.

    A search with nothing left to compute from (no text, and every positive left the archive) comes back as it
    is, with its old fingerprint: still readable, and never scored against a model it was not computed by.
    """
    fields = {name: getattr(search, name) for name in VECTOR_FIELDS}
    try:
        computed = search_vector(version, fields, text_vector, background_size, strict=False)
    except ServiceError as exc:
        if exc.status != 422:
            raise
        log.warning(
            "saved search %d not recomputed for index version %d (%s); edit its labels to evaluate it again",
            search.id, version.number, exc.message,
        )
        return search
    if computed.missing_labels:
        log.warning(
            "saved search %d: labelled item(s) %s left the archive; its vector for index version %d is computed "
            "without them", search.id, ", ".join(map(str, computed.missing_labels)), version.number,
        )
    values = {"fingerprint": computed.fingerprint, "vector": computed.vector, "intercept": computed.intercept}
    return searches.update(engine, search.owner, search.id, values) or search
