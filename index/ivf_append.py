"""The nightly update of an IVF index: append to the live lists instead of training a new quantiser.

Training k-means over a sample and re-adding every vector is most of an IVF build; a nightly update that adds
a few percent of new items does not need it while the coarse centroids (and PQ codebooks) still describe the
archive. The live index is copied (read into RAM, never the served memory map), the items gone from the
archive are removed from their lists, the new ones are added a chunk at a time, and the search parameter is
tuned again, so the manifest's recall is measured on the index as published. Once the items appended since
the last training exceed APPEND_MAX_SHARE of the archive, or the model, kind or list count changed, the caller
trains afresh (build_index).
"""

from __future__ import annotations

from typing import Any

import faiss
import numpy as np

from index.image_search import read_faiss
from index.layout import IMAGES_INDEX
from index.store import IndexVersion
from index.vectors import IndexSpec, add_in_chunks, given_setting, tune, tuning_queries

IVF_KINDS = ("ivf", "ivf-sq8", "ivf-pq")
# Above this share of items added since the quantiser was trained, retrain. benchmarks/index_drift.py measures
# what appending costs in recall against retraining on the same vectors (rows in benchmarks/RESULTS.md).
APPEND_MAX_SHARE = 0.2


def append_to_live(
    live: IndexVersion | None,
    fingerprint: str,
    vectors: np.ndarray,
    ids: np.ndarray,
    spec: IndexSpec,
    queries: np.ndarray | None = None,
    seed: int = 0,
) -> tuple[faiss.Index, dict[str, Any]] | None:
    """The live IVF index updated to hold exactly `ids` (with `vectors`), and its manifest description; None
    when it must be rebuilt instead (no live IVF index, another model or kind or list count, too much added)."""
    if live is None or live.manifest.fingerprint != fingerprint or len(ids) == 0:
        return None
    info = live.manifest.index
    kind = info.get("kind")
    if kind not in IVF_KINDS or spec.kind not in ("auto", kind) or (spec.nlist and spec.nlist != info.get("nlist")):
        return None
    live_ids = live.all_image_vectors()[0]
    new = ~np.isin(ids, live_ids, assume_unique=True)
    removed = live_ids[~np.isin(live_ids, ids, assume_unique=True)]
    trained_on = int(info.get("trained_on", len(live_ids)))
    appended = int(info.get("appended", 0)) + int(new.sum())
    if appended > APPEND_MAX_SHARE * max(1, len(ids)):
        return None
    index = read_faiss(live.path / IMAGES_INDEX, kind, mmap=False)  # a private, writable copy
    if len(removed):
        removed = np.ascontiguousarray(removed, dtype=np.int64)  # FAISS's id hash table takes an id array only
        index.remove_ids(faiss.IDSelectorArray(len(removed), faiss.swig_ptr(removed)))
    add_in_chunks(index, vectors, ids, new)
    held_out, described = tuning_queries(vectors, queries, seed)
    measured = tune(index, kind, vectors, ids, held_out, spec, given_setting(kind, spec, int(info["nlist"])))
    kept = {key: info[key] for key in ("nlist", "pq_m", "pq_bits") if key in info}
    return index, {
        "kind": kind,
        **kept,
        **measured,
        "tuning_queries": described,
        "trained_on": trained_on,
        "appended": appended,
        "reason": f"appended {int(new.sum())} and removed {len(removed)} items on the live version's quantiser "
        f"(trained on {trained_on}; {appended} appended since, retrain above {APPEND_MAX_SHARE:.0%})",
    }
