"""The two pipelines: pick the candidates (filters, less the labelled items), compute one query vector from
stored vectors, and rank it with the text search's own ranking and overlap suppression.

Labelled items are removed from the candidates before ranking, not from the ranked list afterwards, so they
neither come back nor suppress an overlapping neighbour, and every page holds k items when enough remain.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import numpy as np

from index.store import IndexVersion
from service.errors import ServiceError
from service.feedback.queries import background_sample, fit_probe, rocchio_vector
from service.feedback.schemas import FeedbackInputs, FeedbackRequest, ProbeBackground
from service.schemas import ImageHit, SearchFilters
from service.search import Searcher, image_hits, matching_ids

NO_NEGATIVES = (
    "no negatives were labelled: the probe was fitted against {sampled} background items sampled from the "
    "candidates alone"
)


@dataclass(frozen=True)
class CandidateSet:
    ids: np.ndarray  # sorted, distinct, none of them labelled
    matched: int | None  # how many the filters selected (None without filters)


@dataclass(frozen=True)
class Page:
    hits: list[ImageHit]
    dedupe_note: str | None
    search_ms: float


@dataclass(frozen=True)
class FeedbackOutcome:
    page: Page
    version: int
    matched: int | None
    background: ProbeBackground | None
    note: str | None
    timings_ms: dict[str, float]


def select_candidates(version: IndexVersion, filters: SearchFilters | None, labelled: np.ndarray) -> CandidateSet:
    """Every item the filters select (all items without filters), less the labelled ones."""
    if filters is not None and filters.model_fields_set:
        selected = matching_ids(version, filters)
        return CandidateSet(np.setdiff1d(selected, labelled), len(selected))
    return CandidateSet(np.setdiff1d(version.image_ids(), labelled), None)


def labelled_vectors(
    version: IndexVersion, positives: list[int], negatives: list[int]
) -> tuple[np.ndarray, np.ndarray]:
    """The stored vectors of the positives and of the negatives, or a 422 naming every id this version lacks."""
    labelled = positives + negatives
    unknown = [i for i, record in zip(labelled, version.images(labelled), strict=True) if record is None]
    if unknown:
        shown = ", ".join(str(i) for i in unknown[:10]) + (" …" if len(unknown) > 10 else "")
        raise ServiceError(
            422, "unknown_item", f"{len(unknown)} labelled id(s) are not in index version {version.number}: {shown}"
        )
    vectors = version.image_vectors(labelled)
    return vectors[: len(positives)], vectors[len(positives) :]


async def ranked_page(
    searcher: Searcher,
    version: IndexVersion,
    vector: np.ndarray,
    candidates: np.ndarray,
    k: int,
    offset: int,
    dedupe: bool,
    score_offset: float = 0.0,
) -> Page:
    """Ranks offset+1 … offset+k among `candidates`: the first offset+k ranked as text search ranks them (the
    same suppression), so consecutive pages are disjoint and agree with one longer page."""
    wanted = offset + k
    ranked = await searcher.rank_images(version, vector, wanted, wanted, "none", candidates, dedupe)
    ids, scores, records = ranked.ids[offset:], ranked.scores[offset:] + score_offset, ranked.records[offset:]
    return Page(image_hits(version, ids, scores, records), ranked.dedupe_note, ranked.search_ms)


async def similar(
    searcher: Searcher, image_id: int, k: int, filters: SearchFilters | None, dedupe: bool
) -> tuple[Page, int, int | None]:
    """(page, index version, matched) of the items nearest to stored item `image_id`, itself excluded."""
    version = searcher.live.snapshot()

    def prepare() -> tuple[np.ndarray, CandidateSet]:
        if version.images([image_id])[0] is None:
            raise ServiceError(404, "unknown_image", f"no image with id {image_id} in index version {version.number}")
        labelled = np.array([image_id], np.int64)
        return version.image_vectors([image_id])[0], select_candidates(version, filters, labelled)

    vector, candidates = await asyncio.to_thread(prepare)
    page = await ranked_page(searcher, version, vector, candidates.ids, k, 0, dedupe)
    return page, version.number, candidates.matched


def labels(body: FeedbackInputs, cap: int) -> tuple[list[int], list[int]]:
    positives = list(dict.fromkeys(body.positive_ids))
    negatives = list(dict.fromkeys(body.negative_ids))
    if len(positives) + len(negatives) > cap:
        raise ServiceError(
            422,
            "too_many_labels",
            f"{len(positives) + len(negatives)} labelled ids; at most {cap} per request (POSAPL_FEEDBACK_MAX_LABELS)",
        )
    both = sorted(set(positives) & set(negatives))
    if both:
        raise ServiceError(
            422, "conflicting_labels", f"id(s) labelled both positive and negative: {', '.join(map(str, both[:10]))}"
        )
    if not positives and not body.query:
        raise ServiceError(
            422, "no_positives", "give at least one positive_ids entry or a query: there is nothing to search for"
        )
    return positives, negatives


@dataclass(frozen=True)
class FeedbackQuery:
    candidates: CandidateSet
    vector: np.ndarray | None  # None when no candidate is left to rank
    intercept: float = 0.0  # probe's b: added to the inner products so scores are its decision function
    background: ProbeBackground | None = None


def feedback_query(
    version: IndexVersion,
    body: FeedbackInputs,
    positives: list[int],
    negatives: list[int],
    text_vector: np.ndarray | None,
    background_size: int,
) -> FeedbackQuery:
    """The candidates and the one query vector of a feedback request (blocking: run it off the event loop)."""
    candidates = select_candidates(version, body.filters, np.array(positives + negatives, np.int64))
    positive, negative = labelled_vectors(version, positives, negatives)
    if text_vector is not None:
        positive = np.vstack([positive, text_vector[None, :]])
    if not len(candidates.ids):
        return FeedbackQuery(candidates, None)
    if body.method == "rocchio":
        try:
            return FeedbackQuery(
                candidates, rocchio_vector(positive, negative, body.positive_weight, body.negative_weight)
            )
        except ValueError as exc:
            raise ServiceError(422, "empty_feedback", str(exc)) from None
    sample = background_sample(candidates.ids, background_size, body.seed)
    probe = fit_probe(positive, np.vstack([negative, version.image_vectors(sample)]), body.seed)
    background = ProbeBackground(seed=body.seed, sampled=len(sample), pool=len(candidates.ids))
    return FeedbackQuery(candidates, probe.weights, probe.intercept, background)


async def feedback(searcher: Searcher, body: FeedbackRequest) -> FeedbackOutcome:
    """Rocchio or probe over the labelled items (and the query's embedding, as one more positive)."""
    started = time.perf_counter()
    positives, negatives = labels(body, searcher.settings.feedback_max_labels)
    text_vector = None
    if body.query is not None:
        _, text_vector, _, _ = await searcher.embed(searcher.normalize(body.query))
    encoded = time.perf_counter()
    version = searcher.live.snapshot()
    query = await asyncio.to_thread(
        feedback_query, version, body, positives, negatives, text_vector, searcher.settings.feedback_background
    )
    fitted = time.perf_counter()
    note = None
    if query.vector is None:
        note = "no unlabelled item is left to rank" + (" among the filter's matches" if body.filters else "")
        page = Page([], None, 0.0)
    else:
        page = await ranked_page(
            searcher, version, query.vector, query.candidates.ids, body.k, body.offset, body.dedupe_overlaps,
            query.intercept,
        )
        if query.background is not None and not negatives:
            note = NO_NEGATIVES.format(sampled=query.background.sampled)
    timings = {
        "encode": (encoded - started) * 1000.0,
        "fit": (fitted - encoded) * 1000.0,
        "search": page.search_ms,
        "total": (time.perf_counter() - started) * 1000.0,
    }
    return FeedbackOutcome(page, version.number, query.candidates.matched, query.background, note, timings)
