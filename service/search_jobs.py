"""Exact FAISS searches of many concurrent queries, grouped into as few FAISS calls as the jobs allow.

The search micro-batcher (`service.batching`) hands `run_searches` every job that arrived within one batching
window; unfiltered jobs against one (version, target) share one FAISS call, filtered jobs run alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import faiss
import numpy as np

from index.store import IndexVersion

Target = Literal["images", "captions"]
# Exact FAISS search scans every vector per query unless a batch goes through BLAS (one pass over the
# vectors for all queries). On the 2-core CPU with 100k x 512 vectors BLAS costs about 4 single scans whatever
# the batch size up to 8 (single scan 7-9 ms, BLAS 29-41 ms, one thread, quiet machine), so batches of 4+ take it.
BLAS_MIN_BATCH = 4


@dataclass(frozen=True)
class SearchJob:
    version: IndexVersion
    target: Target
    vector: np.ndarray
    k: int
    among: np.ndarray | None = None  # image ids a filter selected: rank only these


@dataclass(frozen=True)
class Candidates:
    ids: np.ndarray
    scores: np.ndarray


def use_blas_from(queries: int, dim: int) -> None:
    """Exact searches of at least `queries` vectors of `dim` go through BLAS, smaller ones scan.

    The faiss-gpu 1.15 wheel compares queries x dimension, not the number of queries, with its threshold
    (tests/test_search_paths.py shows which path answers): a threshold of 4 sent every single query through
    BLAS, 4x slower than the scan (31 ms instead of 7.5 at 100k x 512), for all of the service's history.
    """
    faiss.cvar.distance_compute_blas_threshold = queries * dim


def run_searches(jobs: list[SearchJob]) -> list[Candidates]:
    """One FAISS call per (version, target) group of unfiltered jobs: a batch of queries costs far less than one
    call each. A filtered job ranks its own id set, so it runs alone."""
    results: list[Candidates | None] = [None] * len(jobs)
    groups: dict[tuple[int, Target], list[int]] = {}
    for i, job in enumerate(jobs):
        if job.among is not None:
            scores, ids = job.version.search_images_in(job.vector[None, :], job.k, job.among)
            keep = ids[0] >= 0
            results[i] = Candidates(ids[0][keep], scores[0][keep])
            continue
        groups.setdefault((id(job.version), job.target), []).append(i)
    for members in groups.values():
        first = jobs[members[0]]
        total = first.version.manifest.counts["images" if first.target == "images" else "captions"]
        k = max(1, min(max(jobs[i].k for i in members), total))
        queries = np.stack([jobs[i].vector for i in members])
        search = first.version.search_images if first.target == "images" else first.version.search_captions
        scores, ids = search(queries, k)
        for row, i in enumerate(members):
            keep = ids[row, : jobs[i].k] >= 0
            results[i] = Candidates(ids[row, : jobs[i].k][keep], scores[row, : jobs[i].k][keep])
    return [r for r in results if r is not None]
