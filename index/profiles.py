"""Re-ranking profiles stored beside the vectors: each image against the caption bank, each caption against
the image archive, so online re-ranking can find a query's reverse rank with one binary search.

The profile format belongs to posapl.rerank.build_profiles. With an empty side (no caption files, or no
images) there is no bank to rank against: the version records `profiles.method = null` and zero-width
profiles, so a reader can tell "no re-ranking data" apart from real profiles.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from posapl.rerank import build_profiles

FULL_PROFILES_LIMIT_BYTES = 8 * 2**30


def _check_full_size(n_images: int, n_captions: int) -> None:
    """Whole profiles grow with images x captions; refuse a size that would exhaust memory half-way."""
    size = 2 * n_images * n_captions * 4
    if size > FULL_PROFILES_LIMIT_BYTES:
        raise ValueError(
            f"whole re-ranking profiles for {n_images} images x {n_captions} captions would take "
            f"{size / 2**30:.1f} GiB (limit {FULL_PROFILES_LIMIT_BYTES / 2**30:.0f} GiB); "
            "set profile_points to a sketch size such as 64"
        )


def compute_profiles(
    image_ids: np.ndarray,
    image_vectors: np.ndarray,
    caption_ids: np.ndarray,
    caption_vectors: np.ndarray,
    points: int,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Arrays for profiles.npz and the manifest's description of them. `points` similarities per item, or
    0 for the whole sorted profile (each side as wide as the other side's count)."""
    if len(image_ids) and len(caption_ids):
        if points == 0:
            _check_full_size(len(image_ids), len(caption_ids))
        image_width = points or len(caption_ids)
        caption_width = points or len(image_ids)
        image_profiles = build_profiles(image_vectors, caption_vectors, n_quantiles=max(2, image_width))
        caption_profiles = build_profiles(caption_vectors, image_vectors, n_quantiles=max(2, caption_width))
        info = {"method": "posapl.rerank.build_profiles", "points": points, "width": int(image_profiles.shape[1])}
    else:
        image_profiles = np.zeros((len(image_ids), 0), np.float32)
        caption_profiles = np.zeros((len(caption_ids), 0), np.float32)
        info = {"method": None, "points": points, "width": 0, "reason": "empty image archive or caption bank"}
    arrays = {
        "image_ids": np.asarray(image_ids, dtype=np.int64),
        "image_profiles": image_profiles,
        "caption_ids": np.asarray(caption_ids, dtype=np.int64),
        "caption_profiles": caption_profiles,
    }
    return arrays, info
