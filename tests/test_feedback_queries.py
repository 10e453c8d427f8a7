"""The query vectors of relevance feedback: Rocchio's formula, the reproducible background draw, the probe."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from service.feedback.queries import background_sample, fit_probe, rocchio_vector


def unit_rows(count: int, dim: int, seed: int) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((count, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_rocchio_is_the_normalised_weighted_difference_of_means() -> None:
    positives, negatives = unit_rows(3, 8, 0), unit_rows(2, 8, 1)
    q = rocchio_vector(positives, negatives, 2.0, 1.0)
    want = 2.0 * positives.mean(axis=0) - negatives.mean(axis=0)
    np.testing.assert_allclose(q, want / np.linalg.norm(want), atol=1e-6)
    alone = rocchio_vector(positives, negatives[:0], 2.0, 1.0)
    np.testing.assert_allclose(alone, positives.mean(axis=0) / np.linalg.norm(positives.mean(axis=0)), atol=1e-6)


def test_rocchio_refuses_feedback_that_cancels_out() -> None:
    same = unit_rows(1, 8, 2)
    with pytest.raises(ValueError, match="cancel out"):
        rocchio_vector(same, same, 1.0, 1.0)


def test_background_sample_follows_its_documented_rule() -> None:
    pool = np.array([50, 7, 31, 7, 12, 99, 3], np.int64)
    drawn = background_sample(pool, 3, seed=5)
    ordered = np.unique(pool)
    want = ordered[np.sort(np.random.default_rng(5).choice(len(ordered), 3, replace=False))]
    assert drawn.tolist() == want.tolist()
    assert background_sample(pool[::-1], 3, seed=5).tolist() == drawn.tolist()  # pool order does not matter
    assert background_sample(pool, 100, seed=5).tolist() == ordered.tolist()  # capped at the pool


def test_probe_decision_is_sklearns() -> None:
    positives, negatives = unit_rows(4, 16, 3) + 0.5, unit_rows(40, 16, 4)
    probe = fit_probe(positives, negatives, seed=0)
    archive = unit_rows(100, 16, 5)
    model = LogisticRegression(class_weight="balanced", max_iter=1000).fit(
        np.vstack([positives, negatives]), np.r_[np.ones(4), np.zeros(40)]
    )
    np.testing.assert_allclose(archive @ probe.weights + probe.intercept, model.decision_function(archive), atol=1e-4)
