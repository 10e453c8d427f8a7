"""Every item whose score passes a threshold, found by the image index itself (a growing top-k search).

FAISS ranks the one query vector over the archive (or over the filter's matches through its ID selector) for
the k best; while the k-th still passes, k grows eightfold, up to every candidate or the cap plus one. The
service never loops over items in Python, and the common case (a few thousand detections) is one search.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from index.store import IndexVersion

FIRST_K = 1024
GROWTH = 8


@dataclass(frozen=True)
class Passing:
    ids: np.ndarray  # best first
    scores: np.ndarray
    threshold: float | None  # None: nothing to rank
    capped: bool  # more than `cap` passed; the best `cap` are kept


def _top(version: IndexVersion, vector: np.ndarray, k: int, among: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    query = vector[None, :].astype(np.float32)
    if among is None:
        scores, ids = version.search_images(query, k)
    else:
        scores, ids = version.search_images_in(query, k, among)
    keep = ids[0] >= 0
    return ids[0][keep], scores[0][keep]


def passing(
    version: IndexVersion,
    vector: np.ndarray,
    among: np.ndarray | None,
    score: float | None,
    rank: int | None,
    cap: int,
    score_offset: float = 0.0,
) -> Passing:
    """The items scoring at least `score`, or at least as well as the `rank`-th best (ties included), among
    `among` (every item when None); scores are inner products plus `score_offset` (probe's intercept)."""
    available = len(among) if among is not None else version.manifest.counts["images"]
    if available == 0:
        return Passing(np.zeros(0, np.int64), np.zeros(0, np.float32), None, False)
    k = min(available, max(FIRST_K, rank or 0), cap + 1)
    while True:
        ids, scores = _top(version, vector, k, among)
        scores = scores + np.float32(score_offset)
        threshold = score if score is not None else float(scores[min(rank or 1, len(scores)) - 1])
        if len(scores) < k or scores[-1] < threshold or k >= min(available, cap + 1):
            break
        k = min(k * GROWTH, available, cap + 1)
    keep = scores >= threshold
    ids, scores = ids[keep], scores[keep]
    capped = len(ids) > cap
    return Passing(ids[:cap], scores[:cap], threshold, capped)
