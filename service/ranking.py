"""Online re-ranking of one query's FAISS candidates with the per-item profiles stored in the index."""

from __future__ import annotations

import numpy as np

from posapl.rerank import DEFAULT_RECIPROCAL_ALPHA, DEFAULT_RECIPROCAL_K, PROFILE_HEADER, rerank_candidates
from service.schemas import RerankMethod


def can_rerank(profiles: np.ndarray) -> bool:
    """An index built without profiles stores zero-width ones; those candidates keep their FAISS order."""
    return profiles.ndim == 2 and profiles.shape[1] >= PROFILE_HEADER + 2


def rerank(
    method: RerankMethod,
    ids: np.ndarray,
    scores: np.ndarray,
    profiles: np.ndarray,
    reciprocal_k: int = DEFAULT_RECIPROCAL_K,
    reciprocal_alpha: float = DEFAULT_RECIPROCAL_ALPHA,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, RerankMethod]:
    """(ids, scores, order into the input, method actually applied), best first. The reciprocal parameters
    are the ones `posapl eval --tune-reciprocal` picked on a validation split; GaLR keeps its published ones."""
    if method == "none" or not can_rerank(profiles):
        order = np.argsort(-scores, kind="stable")
        return ids[order], scores[order], order, "none"
    params = {"k": reciprocal_k, "alpha": reciprocal_alpha} if method == "reciprocal" else {}
    order, new_scores = rerank_candidates(method, scores, profiles, **params)
    return ids[order], new_scores.astype(np.float32), order, method
