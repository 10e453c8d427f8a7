"""Tuning the reciprocal re-weighting on a validation split: it finds a real gain, and says so when there is
none."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from training.annotations import EvalSplit
from training.evaluate import metrics_for, tune_reciprocal


def _split(n_images: int, n_captions: int, owner: list[int]) -> EvalSplit:
    img2txt: dict[int, list[int]] = {i: [] for i in range(n_images)}
    for caption, image in enumerate(owner):
        img2txt[image].append(caption)
    return EvalSplit(
        image_paths=[Path(f"{i}.jpg") for i in range(n_images)],
        captions=[f"caption {c}" for c in range(n_captions)],
        img2txt=img2txt,
        txt2img=dict(enumerate(owner)),
    )


def test_tuning_finds_the_gain_on_a_hub_caption() -> None:
    """Caption 20 (image 0's second caption) is slightly more similar to every image than their own
    captions, so it wins image→text for all of them. Each true pair is mutual (rank 1 forward, rank 0
    reverse); a hub pair is mutual only for the few images it likes most. Re-weighting must lift the true
    pairs above the hub, and tuning must pick a non-zero alpha for it."""
    n = 20
    rng = np.random.default_rng(0)
    sims = rng.uniform(0.0, 0.2, (n, n + 1))
    sims[np.arange(n), np.arange(n)] = 0.5
    sims[:, n] = 0.52 + rng.uniform(0.0, 0.01, n)
    split = _split(n, n + 1, [*range(n), 0])
    none = metrics_for(sims, split, "none")
    tuned = tune_reciprocal(sims, split)
    assert tuned["best"]["alpha"] > 0
    assert tuned["best"]["r_mean"] > none["r_mean"]
    best = metrics_for(sims, split, "reciprocal", k=tuned["best"]["k"], alpha=tuned["best"]["alpha"])
    assert best["txt_r1"] > none["txt_r1"] and best["r_mean"] == tuned["best"]["r_mean"]
    assert len(tuned["grid"]) == 5 * 6 and max(row["r_mean"] for row in tuned["grid"]) == tuned["best"]["r_mean"]


def test_tuning_keeps_the_scores_when_nothing_is_gained() -> None:
    """Every query already has its match first: no grid point beats alpha = 0, and the tie goes to it."""
    n = 12
    sims = np.full((n, n), 0.1) + np.eye(n)
    tuned = tune_reciprocal(sims, _split(n, n, list(range(n))))
    assert tuned["best"] == {"k": 5, "alpha": 0.0, "r_mean": 100.0}
