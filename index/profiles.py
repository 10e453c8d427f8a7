"""Re-ranking profiles stored beside the vectors: each image against the caption bank, each caption against
the image archive, so online re-ranking can find a query's reverse rank with one binary search.

The profile format belongs to posapl.rerank.build_profiles. With an empty side (no caption files, or no
images) there is no bank to rank against: the version records `profiles.method = null` and zero-width
profiles, so a reader can tell "no re-ranking data" apart from real profiles.

An image's profile depends only on its vector and the caption bank, so a nightly update whose bank and
model are unchanged copies the live version's rows for the images it already had and computes only the
new ones. Caption profiles are against the whole archive, which every added or removed image changes, so
they are always recomputed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from index.progress import bar
from posapl.rerank import PROFILE_HEADER, build_profiles

FULL_PROFILES_LIMIT_BYTES = 8 * 2**30
PROFILE_CHUNK = 4096  # items profiled between two progress updates


def _check_full_size(n_images: int, n_captions: int) -> None:
    """Whole profiles grow with images x captions; refuse a size that would exhaust memory half-way."""
    size = 2 * n_images * n_captions * 4
    if size > FULL_PROFILES_LIMIT_BYTES:
        raise ValueError(
            f"whole re-ranking profiles for {n_images} images x {n_captions} captions would take "
            f"{size / 2**30:.1f} GiB (limit {FULL_PROFILES_LIMIT_BYTES / 2**30:.0f} GiB); "
            "set profile_points to a sketch size such as 64"
        )


def _image_profiles(
    image_ids: np.ndarray,
    image_vectors: np.ndarray,
    caption_vectors: np.ndarray,
    width: int,
    known: tuple[np.ndarray, np.ndarray] | None,
    progress: bool = False,
) -> np.ndarray:
    """Profiles of the images against the bank, copying the rows of `known` (ids, profiles) where it has them."""
    if known is None or known[1].shape[1] != width + PROFILE_HEADER:
        return _profiles(image_vectors, caption_vectors, width, "image profiles", progress)
    row_of = {int(i): row for row, i in enumerate(known[0])}
    rows = np.array([row_of.get(int(i), -1) for i in image_ids], dtype=np.int64)
    out = np.empty((len(image_ids), width + PROFILE_HEADER), dtype=np.float32)
    out[rows >= 0] = known[1][rows[rows >= 0]]
    new = rows < 0
    if new.any():
        out[new] = _profiles(image_vectors, caption_vectors, width, "image profiles", progress, np.flatnonzero(new))
    return out


def _profiles(
    items: np.ndarray, bank: np.ndarray, width: int, what: str, progress: bool, rows: np.ndarray | None = None
) -> np.ndarray:
    """build_profiles over row chunks (rows are independent), so a long computation shows its progress and a
    memory-mapped `items` is read a chunk at a time; `rows` (ascending) profiles only those rows of it."""
    count = len(items) if rows is None else len(rows)
    out = np.empty((count, width + PROFILE_HEADER), dtype=np.float32)
    with bar(count, what, "item", progress) as shown:
        for start in range(0, count, PROFILE_CHUNK):
            chunk = items[start : start + PROFILE_CHUNK] if rows is None else items[rows[start : start + PROFILE_CHUNK]]
            out[start : start + len(chunk)] = build_profiles(chunk, bank, n_quantiles=width)
            shown.update(len(chunk))
    return out


def compute_profiles(
    image_ids: np.ndarray,
    image_vectors: np.ndarray,
    caption_ids: np.ndarray,
    caption_vectors: np.ndarray,
    points: int,
    known_image_profiles: tuple[np.ndarray, np.ndarray] | None = None,
    progress: bool = False,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Arrays for profiles.npz and the manifest's description of them. `points` similarities per item, or
    0 for the whole sorted profile (each side as wide as the other side's count). `known_image_profiles`
    are (ids, profiles) of images computed against this very bank with the same model and points, e.g. the
    live version's; their rows are copied instead of recomputed."""
    if len(image_ids) and len(caption_ids):
        if points == 0:
            _check_full_size(len(image_ids), len(caption_ids))
        image_width = points or len(caption_ids)
        caption_width = points or len(image_ids)
        image_profiles = _image_profiles(
            image_ids, image_vectors, caption_vectors, max(2, image_width), known_image_profiles, progress
        )
        caption_profiles = _profiles(
            caption_vectors, image_vectors, max(2, caption_width), "caption profiles", progress
        )
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
