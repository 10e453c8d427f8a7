"""A published index store over given vectors, for benchmarks that measure serving rather than indexing."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def publish_synthetic_store(
    root: Path,
    arch: str,
    image_vectors: np.ndarray,
    caption_texts: list[str],
    caption_vectors: np.ndarray,
    records: list | None = None,
    spec=None,
) -> str:
    """Publish one version with re-ranking profiles, stamped with the fingerprint of the zero-shot random
    model that `posapl serve --pretrained random --arch ARCH` loads, so the server accepts it. `records`
    (ImageRecords, ids 1..n in order) replace the default ones without time or footprint; `spec` is the
    image index's IndexSpec (default: auto, tuned on the caption vectors).

    Returns that fingerprint.
    """
    from index.profiles import compute_profiles
    from index.publish import VersionContent, publish
    from index.store import ImageRecord
    from index.vectors import IndexSpec, build_index
    from posapl.checkpoint import load_model
    from posapl.rerank import DEFAULT_PROFILE_POINTS

    fingerprint = load_model(None, "random", "rsitmd", arch).fingerprint()
    image_ids = np.arange(1, len(image_vectors) + 1, dtype=np.int64)
    caption_ids = np.arange(len(caption_texts), dtype=np.int64)
    # Each item is its own file: distinct content hashes give distinct scene ids, so the service's suppression
    # of overlapping tiles of one scene leaves them alone (a shared hash prefix would make them all one scene).
    records = records or [
        ImageRecord(int(i), 0, f"synthetic/{i}.jpg", f"{i:016x}" * 4, 0, 224, 224, 0.0, 3, "uint8", "", None, None)
        for i in image_ids
    ]
    image_index, index_info = build_index(image_vectors, image_ids, spec or IndexSpec(), queries=caption_vectors)
    caption_index, _ = build_index(caption_vectors, caption_ids, IndexSpec(kind="flat"))
    profiles, profile_info = compute_profiles(
        image_ids, image_vectors, caption_ids, caption_vectors, DEFAULT_PROFILE_POINTS
    )
    content = VersionContent(
        image_records=records,
        image_vectors=image_vectors,
        image_index=image_index,
        caption_texts=[(text, "synthetic") for text in caption_texts],
        caption_index=caption_index,
        profiles=profiles,
        skipped=[],
        manifest={
            "model": {"fingerprint": fingerprint, "checkpoint": None, "pretrained": "random", "arch": arch,
                      "preset": "rsitmd"},
            "dim": int(image_vectors.shape[1]),
            "counts": {"duplicates": 0},
            "index": index_info,
            "profiles": profile_info,
            "sources": [str(root / "synthetic")],
            "caption_sources": ["synthetic"],
        },
    )
    publish(root, content, keep=1, pause=lambda stage: None)
    return fingerprint
