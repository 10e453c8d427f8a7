"""Offline re-ranking: GaLR's multivariate rerank against a direct transcription of its loop (ties included),
and the properties of the reciprocal re-weighting."""

from __future__ import annotations

import numpy as np
import pytest

from posapl.rerank import apply_weight, multivariate_rerank, reciprocal_reweight, reciprocal_weight


def galr_loop(sims: np.ndarray, k: int, w_saliency: float = 1.0, w_reverse: float = 0.7, kind: str | None = None):
    """The GaLR formula written out one query and one candidate at a time, with numpy's 1-D argsort calls.

    `kind` is the sort used to re-order the top-k by reverse rank (None: numpy's default, as GaLR).
    """
    n_rows, n_cols = sims.shape
    depth = min(max(10, k), n_cols)
    columns = [np.argsort(-sims[:, t]) for t in range(n_cols)]
    out = np.zeros(sims.shape, dtype=np.float32)
    for i in range(n_rows):
        ranked = np.argsort(-sims[i])
        address = np.array([])
        for j in range(depth):
            t = ranked[j]
            out[i, t] = w_saliency * sims[i, t] / np.sum(sims[:, t])
            out[i, t] += np.exp(-0.05 * (j + 1))
            address = np.append(address, np.where(columns[t] == i)[0][0])
        for position, t in enumerate(ranked[:depth][np.argsort(address, kind=kind)]):
            out[i, t] += w_reverse * np.exp(-0.05 * (position + 1.0))
    return out


def _random(rng, shape, dtype=np.float32):
    return rng.uniform(0.05, 1.0, size=shape).astype(dtype)


def _rounded(rng, shape, dtype=np.float32):
    """Few distinct values: many ties in both the forward and the reverse ranking."""
    return (np.round(rng.uniform(0.05, 1.0, size=shape) * 4) / 4 + 0.25).astype(dtype)


def _repeated_columns(rng, shape, dtype=np.float32):
    """Identical candidates (duplicate captions): equal forward scores and equal reverse ranks."""
    base = _random(rng, (shape[0], max(1, shape[1] // 4)), dtype)
    return base[:, rng.integers(0, base.shape[1], size=shape[1])]


def _repeated_rows(rng, shape, dtype=np.float32):
    """Identical queries: the query ties with its copies in every column."""
    base = _random(rng, (max(1, shape[0] // 3), shape[1]), dtype)
    return base[rng.integers(0, base.shape[0], size=shape[0])]


MATRICES = {
    "random": _random,
    "rounded": _rounded,
    "repeated_columns": _repeated_columns,
    "repeated_rows": _repeated_rows,
}


@pytest.mark.parametrize("kind", list(MATRICES))
@pytest.mark.parametrize(
    ("shape", "k", "dtype"),
    [((37, 61), 30, np.float32), ((50, 23), 12, np.float64), ((64, 40), 3, np.float32), ((20, 7), 30, np.float32)],
)
def test_multivariate_equals_the_loop(kind, shape, k, dtype) -> None:
    rng = np.random.default_rng(hash((kind, shape, k)) % 2**32)
    for _ in range(3):
        sims = MATRICES[kind](rng, shape, dtype)
        np.testing.assert_allclose(multivariate_rerank(sims, k), galr_loop(sims, k), rtol=2e-6, atol=1e-7)


def test_multivariate_weights_and_negative_scores_follow_the_formula() -> None:
    rng = np.random.default_rng(1)
    sims = rng.uniform(-0.5, 1.0, size=(30, 45)).astype(np.float32)
    sims[:, 0] = 0.9  # a column every query ranks near the top
    np.testing.assert_allclose(
        multivariate_rerank(sims, 15, 0.3, 1.1), galr_loop(sims, 15, 0.3, 1.1), rtol=2e-6, atol=1e-6
    )


def test_tie_heavy_matrices_pin_numpys_default_tie_order() -> None:
    """The tie cases above could not tell a stable sort from numpy's default one unless their results differ."""
    rng = np.random.default_rng(5)
    differs = 0
    for _ in range(5):
        sims = _rounded(rng, (60, 80))
        differs += not np.allclose(galr_loop(sims, 30), galr_loop(sims, 30, kind="stable"), atol=1e-4)
    assert differs > 0


def test_multivariate_keeps_only_the_top_k() -> None:
    sims = np.random.default_rng(2).random((25, 90)).astype(np.float32)
    out = multivariate_rerank(sims, 30)
    assert out.dtype == np.float32
    assert ((out != 0).sum(axis=1) == 30).all()
    assert ((multivariate_rerank(sims, 4) != 0).sum(axis=1) == 10).all()  # k is raised to 10, as in GaLR
    assert ((multivariate_rerank(sims[:, :6], 30) != 0).sum(axis=1) == 6).all()


def _slow_reciprocal(sims: np.ndarray, k: int, alpha: float) -> np.ndarray:
    out = sims.astype(np.float64).copy()
    for i in range(sims.shape[0]):
        for t in range(sims.shape[1]):
            forward = int((sims[i] > sims[i, t]).sum())
            reverse = int((sims[:, t] > sims[i, t]).sum())
            m = max(forward, reverse)
            if m < k:
                w = 1 + alpha * (1 - m / k)
                out[i, t] = sims[i, t] * w if sims[i, t] >= 0 else sims[i, t] / w
    return out


@pytest.mark.parametrize("kind", list(MATRICES))
def test_reciprocal_equals_its_formula(kind) -> None:
    rng = np.random.default_rng(11)
    sims = MATRICES[kind](rng, (23, 31), np.float64) - 0.4
    np.testing.assert_allclose(reciprocal_reweight(sims, 6, 0.2), _slow_reciprocal(sims, 6, 0.2), rtol=1e-12)


def test_reciprocal_is_identity_outside_the_mutual_top_k() -> None:
    rng = np.random.default_rng(3)
    sims = rng.random((40, 70))
    out = reciprocal_reweight(sims, 5, 0.5)
    forward = (sims[:, :, None] < sims[:, None, :]).sum(axis=2)
    reverse = (sims[:, :, None] < sims.T[None, :, :]).sum(axis=2)
    outside = np.maximum(forward, reverse) >= 5
    assert np.array_equal(out[outside], sims[outside])
    assert (out[~outside] > sims[~outside]).all()
    assert np.array_equal(reciprocal_reweight(sims, 5, 0.0), sims)


def test_reciprocal_with_k_1_touches_only_mutual_best_pairs() -> None:
    """k=1 covers only pairs that are each other's best: (2, 0) and (0, 1); row 1's best (column 0) prefers row 2."""
    sims = np.array([[0.5, 0.9], [0.9, 0.2], [0.95, 0.1]])
    expected = sims.copy()
    expected[2, 0] = 0.95 * 2
    expected[0, 1] = 0.9 * 2
    assert np.array_equal(reciprocal_reweight(sims, 1, 1.0), expected)


def test_reciprocal_weight_decreases_with_mutual_rank() -> None:
    ranks = np.arange(0, 40, 0.5)
    weights = reciprocal_weight(ranks, 20, 0.3)
    assert weights[0] == pytest.approx(1.3)
    assert (np.diff(weights) <= 0).all()
    assert (weights[ranks >= 20] == 1).all()
    assert (weights[ranks < 20] > 1).all()


def test_reciprocal_boost_grows_as_mutual_rank_improves() -> None:
    """Same raw score, better mutual rank: the re-weighted score is at least as high, positive or negative."""
    for score in (0.4, -0.4):
        boosted = apply_weight(np.full(10, score), reciprocal_weight(np.arange(10), 8, 0.5))
        assert (np.diff(boosted) <= 0).all()
        assert (boosted >= score).all()


def test_reciprocal_does_not_depend_on_sort_order() -> None:
    rng = np.random.default_rng(4)
    sims = _rounded(rng, (30, 50), np.float64)
    rows, cols = rng.permutation(30), rng.permutation(50)
    out = reciprocal_reweight(sims, 7, 0.3)
    assert np.array_equal(reciprocal_reweight(sims[rows][:, cols], 7, 0.3), out[rows][:, cols])


BAD = {
    "1-D": (np.ones(5), "2-D"),
    "3-D": (np.ones((2, 3, 4)), "2-D"),
    "empty rows": (np.ones((0, 4)), "empty"),
    "empty columns": (np.ones((4, 0)), "empty"),
    "NaN": (np.array([[0.1, np.nan], [0.2, 0.3]]), "NaN"),
    "inf": (np.array([[0.1, np.inf], [0.2, 0.3]]), "infinite"),
    "strings": (np.array([["a", "b"]]), "real numbers"),
}


@pytest.mark.parametrize("function", [multivariate_rerank, reciprocal_reweight])
@pytest.mark.parametrize("case", list(BAD))
def test_bad_matrices_are_rejected(function, case) -> None:
    sims, message = BAD[case]
    with pytest.raises(ValueError, match=message):
        function(sims, 5)


@pytest.mark.parametrize("function", [multivariate_rerank, reciprocal_reweight])
@pytest.mark.parametrize("k", [0, -3, 2.5, True])
def test_bad_k_is_rejected(function, k) -> None:
    with pytest.raises(ValueError, match="k must be"):
        function(np.ones((3, 4)), k)


def test_bad_weights_are_rejected() -> None:
    with pytest.raises(ValueError, match="w_reverse"):
        multivariate_rerank(np.ones((3, 4)), 5, w_reverse=float("nan"))
    with pytest.raises(ValueError, match="alpha"):
        reciprocal_reweight(np.ones((3, 4)), 5, alpha=-1.0)


def test_zero_column_sum_is_rejected() -> None:
    sims = np.array([[1.0, 0.5], [-1.0, 0.2]])
    with pytest.raises(ValueError, match="sum to 0"):
        multivariate_rerank(sims, 10)
