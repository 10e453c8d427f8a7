"""Exact re-scoring of a compressed index's short list from the stored float vectors.

A compressed index (8-bit scalar or product-quantised codes) ranks by approximate scores: close vectors can swap
places and the true k-th neighbour can fall just outside the top k. Searching for factor x K' candidates by codes
and re-scoring those exactly puts them back in order, so the result equals exact search whenever the true top k
is among the candidates. FAISS's IndexRefineFlat does the same with a second, in-RAM copy of every float vector;
here the floats come from `lookup` (the version's memory-mapped vector file, index.vector_file), so RAM holds
codes only and the page cache holds the rows that were read.
"""

from __future__ import annotations

from collections.abc import Callable

import faiss
import numpy as np

Lookup = Callable[[np.ndarray], np.ndarray]  # ids (n,) -> their float32 vectors (n, d)


def rescore(queries: np.ndarray, candidates: np.ndarray, lookup: Lookup, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The exact top k of each query's candidate ids (-1 = none), as FAISS returns results: (Q, k) scores
    (-inf where there are fewer than k) and ids (-1 there). Ties keep the candidates' order."""
    scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
    ids = np.full((len(queries), k), -1, dtype=np.int64)
    for row, (query, found) in enumerate(zip(queries, candidates, strict=True)):
        found = found[found >= 0]
        if not len(found):
            continue
        exact = lookup(found) @ query
        top = np.argsort(-exact, kind="stable")[:k]
        scores[row, : len(top)] = exact[top]
        ids[row, : len(top)] = found[top]
    return scores, ids


def search_refined(
    index: faiss.Index, queries: np.ndarray, k: int, short_list: int, lookup: Lookup
) -> tuple[np.ndarray, np.ndarray]:
    """Top `short_list` by the index's codes, the best k of them by exact scores."""
    _, candidates = index.search(queries, max(k, short_list))
    return rescore(queries, candidates, lookup, k)
