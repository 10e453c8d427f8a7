"""The query vector of a relevance-feedback search, from the vectors of the labelled items.

`rocchio` moves the query towards the mean of the positives and away from the mean of the negatives.
`probe` fits a linear classifier (logistic regression) that separates the positives from the negatives and
from a background sample of the archive; its decision function is w·x + b, which orders the archive as the
inner product with w does, so the image index ranks the archive with w as its query instead of the service
scoring every item.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

MIN_NORM = 1e-9  # below this the feedback cancels out and no direction is left to search in
PROBE_MAX_ITER = 1000


def rocchio_vector(
    positives: np.ndarray, negatives: np.ndarray, positive_weight: float, negative_weight: float
) -> np.ndarray:
    """q = a·mean(positives) − b·mean(negatives), scaled to unit length (no negatives: b·0).

    Raises ValueError when q has (almost) no length, e.g. the same items labelled with equal weights.
    """
    query = positive_weight * positives.astype(np.float64).mean(axis=0)
    if len(negatives):
        query = query - negative_weight * negatives.astype(np.float64).mean(axis=0)
    norm = float(np.linalg.norm(query))
    if not np.isfinite(norm) or norm < MIN_NORM:
        raise ValueError("the positive and negative feedback cancel out: no direction is left to search in")
    return (query / norm).astype(np.float32)


def background_sample(pool: np.ndarray, size: int, seed: int) -> np.ndarray:
    """At most `size` ids drawn without replacement from `pool`, reproducibly.

    The rule, so that a client can draw the same sample: sort the pool's distinct ids ascending, draw
    `min(size, len(pool))` positions with `numpy.random.default_rng(seed).choice(n, m, replace=False)`, and
    take the ids at those positions in ascending id order.
    """
    ordered = np.unique(np.asarray(pool, dtype=np.int64))
    count = min(size, len(ordered))
    positions = np.random.default_rng(seed).choice(len(ordered), count, replace=False)
    return ordered[np.sort(positions)]


@dataclass(frozen=True)
class Probe:
    """A fitted linear probe: decision(x) = weights·x + intercept."""

    weights: np.ndarray
    intercept: float


def fit_probe(positives: np.ndarray, negatives: np.ndarray, seed: int) -> Probe:
    """Logistic regression of positives (class 1) against negatives (class 0: labelled and background alike).

    Classes are weighted by their size ("balanced"), so a few positives are not drowned by a background of
    hundreds; lbfgs is deterministic, and `seed` is passed for solvers that are not. BLAS runs on one thread:
    on the 2-core CPU beside the encoders, a 1,010 x 512 fit took 1.3-1.9 s on two BLAS threads and 0.03-0.07 s
    on one (the same contention that keeps FAISS at one thread).
    """
    features = np.vstack([positives, negatives]).astype(np.float64)
    labels = np.concatenate([np.ones(len(positives), np.int64), np.zeros(len(negatives), np.int64)])
    model = LogisticRegression(class_weight="balanced", max_iter=PROBE_MAX_ITER, random_state=seed)
    with threadpool_limits(limits=1, user_api="blas"):
        model.fit(features, labels)
    return Probe(model.coef_[0].astype(np.float32), float(model.intercept_[0]))
