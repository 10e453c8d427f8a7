"""Retrieval evaluation of a model on an annotated split: embed images and captions, score, re-rank, measure.

Metrics are those of `posapl.metrics.retrieval_metrics` (R@1/5/10 both ways and their mean, percent).
Re-ranking methods rewrite a query-by-candidate score matrix, so image→text results come from re-ranking
`sims` (images × texts) and text→image results from re-ranking `sims.T`, each direction separately.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from posapl.encode import encode_images, encode_texts
from posapl.metrics import retrieval_metrics
from posapl.model import POSAPL
from posapl.preprocess import eval_transform
from training.annotations import EvalSplit
from training.datasets import ImageDataset, PosCache, normalize_all

RERANK_METHODS = ("none", "multivariate", "reciprocal")
RECIPROCAL_GRID_K = (5, 10, 15, 20, 30)
RECIPROCAL_GRID_ALPHA = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5)


def rerank_methods(choice: str) -> tuple[str, ...]:
    """The methods a `--rerank` value stands for ("all" = every method, plain scores included)."""
    if choice == "all":
        return RERANK_METHODS
    if choice not in RERANK_METHODS:
        raise ValueError(f"unknown re-ranking {choice!r}; choose from {', '.join((*RERANK_METHODS, 'all'))}")
    return (choice,)


def _reranker(method: str) -> Callable[[np.ndarray], np.ndarray]:
    try:
        from posapl import rerank
    except ImportError as exc:
        raise RuntimeError(f"re-ranking {method!r} needs posapl.rerank, which is not installed: {exc}") from exc
    return {"multivariate": rerank.multivariate_rerank, "reciprocal": rerank.reciprocal_reweight}[method]


def embed_images(
    model: POSAPL, split: EvalSplit, batch_size: int = 256, num_workers: int = 0, progress: bool = False
) -> np.ndarray:
    """Decode in DataLoader workers while the model encodes; images never all sit in memory as pixels."""
    loader = DataLoader(
        ImageDataset(split.image_paths, eval_transform(model.image_size)),
        batch_size=batch_size,
        num_workers=num_workers,
        pin_memory=model.device.type == "cuda",
    )
    out = [encode_images(model, batch, batch_size) for batch in tqdm(loader, desc="images", disable=not progress)]
    return np.concatenate(out) if out else np.zeros((0, model.embed_dim), dtype=np.float32)


def embed_texts(model: POSAPL, split: EvalSplit, pos_cache: PosCache, batch_size: int = 256) -> np.ndarray:
    captions = normalize_all(split.captions, "evaluation split")
    return encode_texts(model, captions, pos_cache.tag(captions), batch_size=batch_size)


def metrics_for(sims: np.ndarray, split: EvalSplit, method: str, **params: Any) -> dict[str, float]:
    """Metrics of one re-ranking method (`params` are its keyword arguments, e.g. k and alpha);
    each direction is re-ranked on its own query axis."""
    if method == "none":
        return retrieval_metrics(sims, split.img2txt, split.txt2img)
    rerank = partial(_reranker(method), **params)
    return retrieval_metrics(np.asarray(rerank(sims)), split.img2txt, split.txt2img, np.asarray(rerank(sims.T)))


def tune_reciprocal(
    sims: np.ndarray,
    split: EvalSplit,
    ks: tuple[int, ...] = RECIPROCAL_GRID_K,
    alphas: tuple[float, ...] = RECIPROCAL_GRID_ALPHA,
) -> dict[str, Any]:
    """Grid search of the reciprocal re-weighting's k and alpha by mR. Run it on a validation split only:
    parameters picked on test would report a gain that new queries do not get.

    alpha = 0 is in the default grid and equals no re-weighting, so "best" can honestly say the method does
    not help. Ties go to the smaller alpha, then the smaller k: the gentlest change that scores as well.
    The default grid keeps k <= 30, below the 32 exact ranks of the index's default 64-point profiles, so
    the service reproduces the tuned offline method exactly.
    """
    grid = [
        {"k": k, "alpha": alpha, **metrics_for(sims, split, "reciprocal", k=k, alpha=alpha)}
        for k in ks
        for alpha in alphas
    ]
    best = max(grid, key=lambda row: (row["r_mean"], -row["alpha"], -row["k"]))
    return {"best": {"k": best["k"], "alpha": best["alpha"], "r_mean": best["r_mean"]}, "grid": grid}


def similarities(
    model: POSAPL,
    split: EvalSplit,
    pos_cache: PosCache,
    batch_size: int = 256,
    num_workers: int = 0,
    progress: bool = False,
) -> np.ndarray:
    """The images x texts similarity matrix of a split; the model's train/eval mode is restored."""
    was_training = model.training
    model.eval()
    try:
        images = embed_images(model, split, batch_size, num_workers, progress)
        texts = embed_texts(model, split, pos_cache, batch_size)
    finally:
        model.train(was_training)
    return images @ texts.T


def evaluate(
    model: POSAPL,
    split: EvalSplit,
    pos_cache: PosCache,
    methods: tuple[str, ...] = ("none",),
    batch_size: int = 256,
    num_workers: int = 0,
    progress: bool = False,
) -> dict[str, dict[str, float]]:
    """Metrics per re-ranking method (with its default parameters), from one embedding pass."""
    sims = similarities(model, split, pos_cache, batch_size, num_workers, progress)
    return {method: metrics_for(sims, split, method) for method in methods}


def resolve_device(name: str) -> torch.device:
    """"auto" picks CUDA when present; an unavailable explicit device is an error, not a silent fallback."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available")
    return device
