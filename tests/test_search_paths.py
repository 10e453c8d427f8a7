"""Which exact-search path FAISS takes for a batch: the per-query scan or BLAS.

The two paths sum in different orders, so their scores differ in the last bits; a search answers bit for bit
like one of them, which shows the path without timing anything.
"""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from service.search import BLAS_MIN_BATCH, use_blas_from


@pytest.fixture
def restore_threshold():
    saved = faiss.cvar.distance_compute_blas_threshold
    yield
    faiss.cvar.distance_compute_blas_threshold = saved


def scores(index: faiss.Index, queries: np.ndarray, threshold: int) -> np.ndarray:
    faiss.cvar.distance_compute_blas_threshold = threshold
    return index.search(queries, 5)[0]


@pytest.mark.parametrize("dim", [256, 512])
def test_small_batches_scan_and_larger_ones_use_blas(dim: int, restore_threshold) -> None:
    rng = np.random.default_rng(0)
    index = faiss.IndexFlatIP(dim)
    index.add(rng.standard_normal((3000, dim)).astype(np.float32))
    queries = rng.standard_normal((BLAS_MIN_BATCH + 2, dim)).astype(np.float32)
    # each batch size against both paths at that size: BLAS may block a batch differently by its row count
    paths = {
        count: (scores(index, queries[:count], 2**31 - 1), scores(index, queries[:count], 0))
        for count in range(1, BLAS_MIN_BATCH + 2)
    }
    use_blas_from(BLAS_MIN_BATCH, dim)
    for count, (scanned, blas) in paths.items():
        assert not np.array_equal(scanned, blas), f"{count} queries: the paths agree, so the test cannot tell them"
        found = index.search(queries[:count], 5)[0]
        expected = scanned if count < BLAS_MIN_BATCH else blas
        assert np.array_equal(found, expected), f"{count} queries took the other path"
