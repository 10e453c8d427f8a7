"""A synthetic store published without a model, for the index-kind and filtered-search tests: clustered unit
vectors (neighbourhoods like embeddings have) and records with known times and footprints."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import shapely

from index.profiles import compute_profiles
from index.publish import VersionContent, publish
from index.store import ImageRecord
from index.vectors import IndexSpec, build_index

DIM = 48
START = datetime(2020, 1, 1, tzinfo=UTC)


def clustered(count: int, seed: int) -> np.ndarray:
    """Unit vectors around 40 centres: neighbourhoods like embeddings have, unlike uniform noise."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).standard_normal((40, DIM)).astype(np.float32)
    vectors = centres[rng.integers(0, 40, count)] + 0.6 * rng.standard_normal((count, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def publish_store(root: Path, vectors: np.ndarray, ids: np.ndarray, captions: np.ndarray, spec: IndexSpec) -> None:
    """One version whose n-th image has mtime n, was acquired n hours after 2020-01-01 and has the footprint
    lon (n / 100, n / 100 + 0.01), lat (0, 0.01)."""
    records = [
        ImageRecord(
            int(i), 0, f"{n}.jpg", f"{n:064x}", 1, 8, 8, float(n), 3, "uint8", "", None, None,
            footprint=shapely.to_geojson(shapely.box(n / 100, 0.0, n / 100 + 0.01, 0.01)),
            time=(START + timedelta(hours=n)).isoformat(),
        )
        for n, i in enumerate(ids)
    ]
    caption_ids = np.arange(len(captions), dtype=np.int64)
    image_index, info = build_index(vectors, ids, spec, queries=captions)
    caption_index, _ = build_index(captions, caption_ids, IndexSpec(kind="flat"))
    profiles, profile_info = compute_profiles(ids, vectors, caption_ids, captions, 16)
    content = VersionContent(
        records, vectors, image_index, [(f"c{i}", "bank") for i in range(len(captions))], caption_index, profiles,
        [], {"model": {"fingerprint": "test"}, "dim": DIM, "index": info, "profiles": profile_info,
             "sources": [str(root)], "caption_sources": ["bank"]},
    )
    publish(root, content, keep=1, pause=lambda stage: None)
