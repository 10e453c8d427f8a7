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


def compute_profiles(
    image_ids: np.ndarray,
    image_vectors: np.ndarray,
    caption_ids: np.ndarray,
    caption_vectors: np.ndarray,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Arrays for profiles.npz and the manifest's description of them."""
    if len(image_ids) and len(caption_ids):
        image_profiles = np.asarray(build_profiles(image_vectors, caption_vectors), dtype=np.float32)
        caption_profiles = np.asarray(build_profiles(caption_vectors, image_vectors), dtype=np.float32)
        info = {"method": "posapl.rerank.build_profiles", "width": int(image_profiles.shape[1])}
    else:
        image_profiles = np.zeros((len(image_ids), 0), np.float32)
        caption_profiles = np.zeros((len(caption_ids), 0), np.float32)
        info = {"method": None, "width": 0, "reason": "empty image archive or caption bank"}
    arrays = {
        "image_ids": np.asarray(image_ids, dtype=np.int64),
        "image_profiles": image_profiles,
        "caption_ids": np.asarray(caption_ids, dtype=np.int64),
        "caption_profiles": caption_profiles,
    }
    return arrays, info
