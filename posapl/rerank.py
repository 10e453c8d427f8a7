"""Training-free re-ranking that uses the reverse direction: a candidate is more credible when the query also
ranks high for it.

Two methods, each offline (a full similarity matrix, for evaluation) and online (one query against an index,
for the service):

- ``multivariate``: GaLR's multivariate rerank (``i2t_rerank_optim``), reproduced exactly, ties included.
- ``reciprocal``: a similarity-matrix re-weighting in the spirit of CMPAGL's SMR; see `reciprocal_weight`.

Offline, the reverse rank of query i for candidate t is i's rank among all rows of the matrix for column t.
Online there is no query side, so a reference bank stands in for it (the caption bank for text→image, the
image archive for image→caption): `build_profiles` stores, per indexed item, a sketch of its sorted
similarities to the bank; `reverse_ranks` turns a query score into "how many bank items beat it" with one
binary search per candidate. See `build_profiles` for how close that is to the offline rank.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

import numpy as np

RerankMethod = Literal["none", "multivariate", "reciprocal"]

GALR_MIN_DEPTH = 10
GALR_DECAY = 0.05
PROFILE_HEADER = 2
DEFAULT_RECIPROCAL_K = 10
DEFAULT_RECIPROCAL_ALPHA = 0.1
TIE_TOLERANCE = 1e-6
DEFAULT_PROFILE_POINTS = 64
FINITE_CHECK_ROWS = 65_536  # rows checked at a time: a memory-mapped bank (an archive's vectors) is not copied


def _check_matrix(sims: np.ndarray, name: str = "sims") -> np.ndarray:
    array = np.asarray(sims)
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D queries x candidates matrix, got {array.ndim}-D shape {array.shape}")
    if 0 in array.shape:
        raise ValueError(f"{name} is empty (shape {array.shape}); need at least one query and one candidate")
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise ValueError(f"{name} must hold real numbers, got dtype {array.dtype}")
    if not np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float64)
    blocks = (array[start : start + FINITE_CHECK_ROWS] for start in range(0, len(array), FINITE_CHECK_ROWS))
    if not all(np.isfinite(block).all() for block in blocks):
        raise ValueError(f"{name} contains NaN or infinite values; re-ranking needs finite similarities")
    return array


def _check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ValueError(f"k must be an integer, got {k!r}")
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    return int(k)


def _check_weights(**weights: float) -> None:
    for name, value in weights.items():
        if not np.isfinite(value):
            raise ValueError(f"{name} must be finite, got {value}")


def galr_depth(k: int, n_candidates: int) -> int:
    """How many forward candidates GaLR re-scores: k raised to at least 10, as the reference does, and
    capped at the number of candidates (where the reference would fail with an IndexError)."""
    return min(max(GALR_MIN_DEPTH, k), n_candidates)


def _galr_scores(
    sims: np.ndarray, column_sums: np.ndarray, reverse_order: np.ndarray, w_saliency: float, w_reverse: float
) -> np.ndarray:
    """GaLR's score for the forward top-k, given per query the candidates' order by reverse rank.

    sims, column_sums: (q, depth) similarities of each query's forward top-k (best first) and their
    columns' sums; reverse_order: (q, depth) argsort of the reverse ranks.
    """
    depth = sims.shape[1]
    position = np.empty_like(reverse_order)
    np.put_along_axis(position, reverse_order, np.arange(depth)[None, :], axis=1)
    forward_term = np.exp(-GALR_DECAY * np.arange(1, depth + 1, dtype=np.float64))[None, :]
    reverse_term = np.exp(-GALR_DECAY * (position + 1.0))
    return w_saliency * (sims / column_sums) + forward_term + w_reverse * reverse_term


def multivariate_rerank(sims: np.ndarray, k: int = 30, w_saliency: float = 1.0, w_reverse: float = 0.7) -> np.ndarray:
    """GaLR's multivariate rerank of a queries x candidates matrix (image→text on an images x texts matrix;
    text→image is ``multivariate_rerank(sims.T).T``).

    For query row i and its j-th ranked candidate t (j < k, k raised to at least 10):

        score = w_saliency * sims[i, t] / sum(sims[:, t]) + exp(-0.05 (j + 1)) + w_reverse * exp(-0.05 (r + 1))

    where r is t's position once the top-k are re-sorted by the rank of i among all rows for column t.
    Every entry outside the top-k is 0. Returns float32, like the reference.

    Same matrix as the reference loop, ties included: the forward ranking is numpy's default argsort of
    ``-sims`` per row, the reverse rank is i's position in numpy's default argsort of ``-sims`` per column,
    and the top-k are re-sorted with numpy's default (not stable) argsort of their reverse ranks held as
    float64. Those are the reference's calls, applied to whole rows at once; numpy sorts each row of an
    axis-wise call with the same routine as a 1-D call, which the tests check against a per-row transcription.
    """
    sims = _check_matrix(sims)
    k = _check_k(k)
    _check_weights(w_saliency=w_saliency, w_reverse=w_reverse)
    n_rows, n_cols = sims.shape
    depth = galr_depth(k, n_cols)
    negated = -sims
    forward = np.argsort(negated, axis=1)[:, :depth]
    by_column = np.argsort(negated, axis=0)
    row_rank = np.empty_like(by_column)
    np.put_along_axis(row_rank, by_column, np.arange(n_rows)[:, None], axis=0)
    reverse_rank = np.take_along_axis(row_rank, forward, axis=1).astype(np.float64)
    column_sums = sims.sum(axis=0, dtype=np.float64)[forward]
    if (column_sums == 0).any():
        raise ValueError("a top-k candidate's similarities sum to 0 over all queries: GaLR's saliency is undefined")
    top_sims = np.take_along_axis(sims, forward, axis=1).astype(np.float64)
    scores = _galr_scores(top_sims, column_sums, np.argsort(reverse_rank, axis=1), w_saliency, w_reverse)
    out = np.zeros(sims.shape, dtype=np.float32)
    np.put_along_axis(out, forward, scores.astype(np.float32), axis=1)
    return out


def reciprocal_weight(mutual_rank: np.ndarray, k: int, alpha: float) -> np.ndarray:
    """Weight of a pair from its mutual rank m = max(forward rank, reverse rank) (0 = best):

        w(m) = 1 + alpha * (1 - m / k)   if m < k
        w(m) = 1                         otherwise

    m < k means each side of the pair is in the other's top-k; the closer to the top in *both* directions,
    the larger the boost. Non-increasing in m, continuous in m (the online reverse rank is fractional), and
    exactly 1 for pairs outside the mutual top-k, so those keep their raw score.
    """
    m = np.asarray(mutual_rank, dtype=np.float64)
    return np.where(m < k, 1.0 + alpha * (1.0 - m / k), 1.0)


def apply_weight(scores: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Boost scores by weights >= 1 whatever their sign: s * w for s >= 0, s / w for s < 0. Plain
    multiplication would push a negative similarity further down, penalising the pairs it should favour."""
    return np.where(scores >= 0, scores * weight, scores / weight)


def _greater_counts_in_top(sims: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Entries whose forward rank (number of strictly larger entries in their row) is below k, with that rank.

    Returns (rows, cols, rank) of every such entry. Ties share the best rank, so the result does not
    depend on sort order.
    """
    n_cols = sims.shape[1]
    depth = min(k, n_cols)
    top = -np.sort(-sims, axis=1)[:, :depth]
    rows, cols = np.nonzero(sims >= top[:, -1:])
    values = sims[rows, cols]
    rank = (top[rows] > values[:, None]).sum(axis=1)
    keep = rank < k
    return rows[keep], cols[keep], rank[keep]


def reciprocal_reweight(
    sims: np.ndarray, k: int = DEFAULT_RECIPROCAL_K, alpha: float = DEFAULT_RECIPROCAL_ALPHA
) -> np.ndarray:
    """Re-weight a queries x candidates matrix by mutual ranks (both directions at once; the matrix stays
    images x texts or texts x images, whichever you pass).

    For pair (i, t): a = number of candidates with a strictly larger score in row i, b = number of queries
    with a strictly larger score in column t, m = max(a, b); the result is sims[i, t] boosted by
    `reciprocal_weight(m, k, alpha)` (see `apply_weight`). Pairs outside the mutual top-k keep their score.
    Ranks count strictly larger scores, so tied entries get the same weight and the result does not depend
    on any sort's tie order.

    The defaults (k=10, alpha=0.1) are not tuned: only a randomly initialised model was available, whose
    retrieval is at chance level, so a search on a validation split could not pick meaningful values. Tune
    k and alpha on a validation split (never test) before relying on them.
    """
    sims = _check_matrix(sims)
    k = _check_k(k)
    _check_weights(alpha=alpha)
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0 (a boost), got {alpha}")
    f_rows, f_cols, f_rank = _greater_counts_in_top(sims, k)
    r_cols, r_rows, r_rank = _greater_counts_in_top(sims.T, k)
    n_cols = sims.shape[1]
    keys, in_forward, in_reverse = np.intersect1d(
        f_rows * n_cols + f_cols, r_rows * n_cols + r_cols, assume_unique=True, return_indices=True
    )
    rank = np.maximum(f_rank[in_forward], r_rank[in_reverse])
    out = sims.copy()
    rows, cols = np.divmod(keys, n_cols)
    out[rows, cols] = apply_weight(sims[rows, cols], reciprocal_weight(rank, k, alpha))
    return out


@lru_cache(maxsize=64)
def sketch_ranks(bank_size: int, n_quantiles: int) -> np.ndarray:
    """Ranks (0 = most similar) at which a profile keeps an item's similarity to the bank.

    The first half are ranks 0, 1, 2, ... exactly (where both methods need exact reverse ranks), the rest
    geometrically spaced up to the last rank. A bank no larger than the sketch is kept whole, padded with
    its last rank. Strictly increasing otherwise, so consecutive sketch points bracket a rank interval.
    """
    if bank_size < 1 or n_quantiles < 2:
        raise ValueError(f"need bank_size >= 1 and n_quantiles >= 2, got {bank_size} and {n_quantiles}")
    if bank_size <= n_quantiles:
        ranks = np.full(n_quantiles, bank_size - 1, dtype=np.int64)
        ranks[:bank_size] = np.arange(bank_size)
    else:
        head = n_quantiles // 2
        n_tail = n_quantiles - head
        tail = np.round(np.geomspace(head, bank_size - 1, n_tail)).astype(np.int64)
        tail[-1] = bank_size - 1
        step = np.arange(n_tail)
        tail = np.maximum.accumulate(tail - step) + step
        tail = np.minimum(tail, bank_size - n_tail + step)
        ranks = np.concatenate([np.arange(head), tail])
    ranks.flags.writeable = False
    return ranks


def _check_vectors(array: np.ndarray, name: str) -> np.ndarray:
    array = _check_matrix(array, name)
    return np.ascontiguousarray(array, dtype=np.float32)


def build_profiles(
    items: np.ndarray,
    bank: np.ndarray,
    n_quantiles: int = DEFAULT_PROFILE_POINTS,
    chunk_bytes: int = 256 * 2**20,
) -> np.ndarray:
    """Per item, a compact profile of its similarities to a reference bank: (n_items, n_quantiles + 2) float32.

    Row layout: ``[bank_size, sum of similarities to the bank, s_0, ..., s_{Q-1}]`` where s_j is the
    item's similarity to its `sketch_ranks(bank_size, Q)[j]`-th most similar bank item. The header makes a
    profile self-describing: `reverse_ranks` needs nothing else.

    For text→image search the items are images and the bank the caption bank; for image→caption the items
    are captions and the bank the image archive. Similarities are inner products (cosine for the
    L2-normalised vectors of `posapl.encode`). Items are processed in chunks so that one chunk's similarity
    block stays under `chunk_bytes`; only the sketch of each chunk is kept, so memory is bounded whatever
    the sizes (100k items x 100k bank included). numpy does the work: its SIMD sort is several times faster
    than torch's on CPU.

    How the online reverse rank relates to the offline one: offline, the rank of query i for candidate t
    is its position among all query rows for column t, i.e. the number of other queries more similar to t
    (plus tied ones that numpy's sort puts first). Online it is the number of bank items strictly more
    similar to t than the query. The query's own score never counts (it is not strictly larger than
    itself), so the count is the same whether or not the query is in the bank; with the bank equal to the
    offline query set it is the offline rank up to ties, exact over the sketch's exact head and
    interpolated beyond it. GaLR's column sum is the profile's bank sum.

    How many points to keep: the reciprocal method only needs reverse ranks below its k, which the
    exact head (the first half of the points) holds while k <= points / 2, so the default 64 points
    reproduce it. GaLR orders its top-k by reverse rank however deep those ranks are, so a sketch
    reproduces it only as far as the query ranks inside the head; ``n_quantiles = bank size`` keeps the
    whole sorted profile and reproduces it exactly (benchmarks/RESULTS.md, "rerank-agreement", has
    agreement against profile size on RSICD).
    """
    items = _check_vectors(items, "items")
    bank = _check_vectors(bank, "bank")
    if items.shape[1] != bank.shape[1]:
        raise ValueError(f"items have dimension {items.shape[1]} but the bank has {bank.shape[1]}")
    if n_quantiles < 2:
        raise ValueError(f"n_quantiles must be >= 2, got {n_quantiles}")
    if bank.shape[0] > 2**24:
        raise ValueError(f"bank of {bank.shape[0]} items: its size would not be exact in a float32 profile")
    ranks = sketch_ranks(bank.shape[0], n_quantiles)
    ascending_positions = bank.shape[0] - 1 - ranks
    rows_per_chunk = max(1, chunk_bytes // (4 * bank.shape[0]))
    out = np.empty((items.shape[0], n_quantiles + PROFILE_HEADER), dtype=np.float32)
    out[:, 0] = bank.shape[0]
    for start in range(0, items.shape[0], rows_per_chunk):
        block = items[start : start + rows_per_chunk] @ bank.T
        stop = start + len(block)
        out[start:stop, 1] = block.sum(axis=1, dtype=np.float64)
        block.sort(axis=1)
        out[start:stop, PROFILE_HEADER:] = block[:, ascending_positions]
    return out


def _check_candidates(query_scores: np.ndarray, profiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(query_scores)
    if scores.ndim != 1 or scores.size == 0:
        raise ValueError(f"query_scores must be a non-empty 1-D array, got shape {scores.shape}")
    if not np.issubdtype(scores.dtype, np.number) or not np.isfinite(scores).all():
        raise ValueError("query_scores must be finite real numbers")
    profiles = np.asarray(profiles)
    if profiles.ndim == 2 and profiles.shape[1] < PROFILE_HEADER + 2:
        raise ValueError(
            f"candidate profiles are {profiles.shape[1]} wide; a profile from build_profiles has at least "
            f"{PROFILE_HEADER + 2} columns (an index built without profiles cannot be re-ranked)"
        )
    profiles = _check_matrix(profiles, "candidate_profiles")
    if profiles.shape[0] != scores.shape[0]:
        raise ValueError(f"{scores.shape[0]} query scores but {profiles.shape[0]} candidate profiles")
    return scores.astype(np.float64), profiles


def reverse_ranks(
    query_scores: np.ndarray, candidate_profiles: np.ndarray, tie_tolerance: float = TIE_TOLERANCE
) -> np.ndarray:
    """For each candidate, how many bank items are strictly more similar to it than the query (fractional).

    "Strictly" up to `tie_tolerance`: a bank item beats the query only by more than that. The same vectors
    give dot products that differ in the last float32 bits between FAISS, numpy and torch, so without it a
    query that is itself in the bank (or has an exact duplicate there) could count its own copy.

    With the candidate's sketch values v_0 > ... at ranks r_0 < ..., the query score x falls between two
    sketch points: j = #{v > x} (a binary search; done as one vectorised comparison over all candidates,
    since numpy has no batched searchsorted). Then at least r_{j-1} + 1 and at most r_j bank items beat x;
    the count is interpolated linearly in similarity between those bounds, exact wherever the sketch ranks
    are consecutive. 0 above the maximum, bank_size below the minimum.
    """
    scores, profiles = _check_candidates(query_scores, candidate_profiles)
    return _reverse_counts(scores, profiles, tie_tolerance)


def _reverse_counts(scores: np.ndarray, profiles: np.ndarray, tie_tolerance: float) -> np.ndarray:
    """`reverse_ranks` on validated input."""
    bank_size = profiles[:, 0]
    n = int(bank_size[0])
    if n < 1 or n != bank_size[0] or (bank_size != bank_size[0]).any():
        raise ValueError("candidate profiles disagree on (or hold an invalid) bank size; mixing indexes?")
    x = scores + tie_tolerance
    values = profiles[:, PROFILE_HEADER:]
    width = values.shape[1]
    ranks = sketch_ranks(n, width)
    above = np.count_nonzero(values > x[:, None], axis=1)
    inner = np.minimum(np.maximum(above, 1), width - 1)
    rows = np.arange(len(x))
    upper_v = values[rows, inner - 1].astype(np.float64)
    lower_v = values[rows, inner].astype(np.float64)
    upper_r, lower_r = ranks[inner - 1], ranks[inner]
    gap = upper_v - lower_v
    fraction = np.divide(upper_v - x, gap, out=np.ones_like(gap), where=gap > 0)
    count = upper_r + 1.0 + (lower_r - upper_r - 1.0) * np.minimum(np.maximum(fraction, 0.0), 1.0)
    return np.where(above == 0, 0.0, np.where(above == width, float(n), count))


def rerank_candidates(
    method: RerankMethod,
    query_scores: np.ndarray,
    candidate_profiles: np.ndarray,
    k: int | None = None,
    w_saliency: float = 1.0,
    w_reverse: float = 0.7,
    alpha: float = DEFAULT_RECIPROCAL_ALPHA,
) -> tuple[np.ndarray, np.ndarray]:
    """Re-rank one query's candidates (e.g. FAISS's top-K') with their profiles from `build_profiles`.

    Returns (order, scores): `order` indexes the candidates best first, `scores` are the re-ranked scores in
    that order. k defaults to 30 for multivariate and `DEFAULT_RECIPROCAL_K` for reciprocal, as offline.

    The online counterpart of the offline functions, row by row: forward ranks come from the candidates'
    own scores (the candidates must include the query's true top-k for them to be exact, which an exact
    FAISS top-K' with K' >= k guarantees), reverse ranks from `reverse_ranks`, GaLR's column sum from the
    profile's bank sum.
    - multivariate: forward order = stable argsort of the scores (FAISS's order for ties); the top-k get
      GaLR's score (their reverse ranks re-sorted with numpy's default argsort, as offline) and come first,
      best first; the other candidates follow in forward order with score 0, as in the offline matrix.
    - reciprocal: score = `apply_weight(s, reciprocal_weight(max(a, b), k, alpha))` with a = number of
      candidates scoring strictly higher and b the reverse rank; sorted best first (stable).
    - none: forward order and raw scores.
    """
    scores, profiles = _check_candidates(query_scores, candidate_profiles)
    forward = np.argsort(-scores, kind="stable")
    if method == "none":
        return forward, scores[forward]
    if method == "multivariate":
        k = _check_k(30 if k is None else k)
        _check_weights(w_saliency=w_saliency, w_reverse=w_reverse)
        top = forward[: galr_depth(k, len(scores))]
        column_sums = profiles[top, 1].astype(np.float64)
        if (column_sums == 0).any():
            raise ValueError("a candidate's similarities to the bank sum to 0; GaLR's saliency term is undefined")
        reverse = _reverse_counts(scores[top], profiles[top], TIE_TOLERANCE)
        new = _galr_scores(
            scores[top][None, :], column_sums[None, :], np.argsort(reverse)[None, :], w_saliency, w_reverse
        )[0]
        best = np.argsort(-new, kind="stable")
        order = np.concatenate([top[best], forward[len(top) :]])
        return order, np.concatenate([new[best], np.zeros(len(scores) - len(top))])
    if method == "reciprocal":
        k = _check_k(DEFAULT_RECIPROCAL_K if k is None else k)
        _check_weights(alpha=alpha)
        if alpha < 0:
            raise ValueError(f"alpha must be >= 0 (a boost), got {alpha}")
        ascending = np.sort(scores)
        forward_rank = len(scores) - np.searchsorted(ascending, scores, side="right")
        mutual = np.maximum(forward_rank, _reverse_counts(scores, profiles, TIE_TOLERANCE))
        new = apply_weight(scores, reciprocal_weight(mutual, k, alpha))
        order = np.argsort(-new, kind="stable")
        return order, new[order]
    raise ValueError(f"unknown re-ranking method {method!r}; choose none, multivariate or reciprocal")
