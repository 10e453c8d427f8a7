"""Ranking a version's images: unfiltered search, search among a filter's matches, and stored vectors.

One job, split out of index.store (which opens versions and answers metadata queries). Exact scores always
come from the version's memory-mapped float vectors (index.vector_file), whatever the index kind: for a
filter's few matches (scored directly), for the short list of a compressed index (index.refine) and for
"search with this indexed image". FAISS's own search serves everything else.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from index.refine import rescore
from index.vector_file import VectorFile
from index.vectors import COMPRESSED_KINDS

# Up to this many ids, gathering their stored vectors and scoring them exactly beats a FAISS search with an ID
# selector over the whole index; above it the selector wins (filtered-search-crossover rows of
# benchmarks/RESULTS.md, 100k vectors: exact faster at 300 ids, the selector at 1,000 and more).
SUBSET_EXACT_MAX = 300


def read_faiss(path: Path, kind: str, mmap: bool = True) -> faiss.Index:
    """Readers map index files instead of reading them, so codes stay in the page cache, shared by every
    process serving the version: IO_FLAG_MMAP maps IVF lists, IO_FLAG_MMAP_IFC flat and scalar-quantised codes
    (HNSW's graph is read into RAM). The two cannot be combined: MMAP_IFC's reader is no file for IVF's hook."""
    if not mmap:
        return faiss.read_index(str(path))
    flag = faiss.IO_FLAG_MMAP if kind.startswith("ivf") else faiss.IO_FLAG_MMAP_IFC
    return faiss.read_index(str(path), flag | faiss.IO_FLAG_READ_ONLY)


class ImageSearch:
    """Search over one version's image index and vector file; safe to share between threads."""

    def __init__(self, index: faiss.Index, vectors: VectorFile, info: dict[str, Any]) -> None:
        self.index = index  # may be moved to a GPU (IndexVersion.to_gpu); `cpu_index` stays
        self.cpu_index = index
        self.vectors = vectors
        self.refine_factor = int(info.get("refine_factor") or 0) if info.get("kind") in COMPRESSED_KINDS else 0
        self.recall_k = int(info.get("recall_k") or 1)
        self._id_rows: tuple[np.ndarray, np.ndarray] | None = None
        self._lock = threading.Lock()

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self.refine_factor:
            _, candidates = self.index.search(queries, self.short_list(k))
            return rescore(queries, candidates, self.vectors.get, k)
        return self.index.search(queries, k)

    def short_list(self, k: int) -> int:
        """Candidates re-scored for a top k: refine_factor x K' at least, the list the recall was tuned on, so
        a top 10 is as good as the top K' it belongs to (and not cut to 10 x factor)."""
        return self.refine_factor * max(k, self.recall_k)

    def search_in(
        self, queries: np.ndarray, k: int, ids: np.ndarray, method: str = "auto"
    ) -> tuple[np.ndarray, np.ndarray]:
        """The top k of `ids` only (every one of them is a candidate); see IndexVersion.search_images_in."""
        ids = np.unique(np.asarray(ids, dtype=np.int64))
        k = max(1, k)
        if len(ids) == 0:
            return np.full((len(queries), k), -np.inf, np.float32), np.full((len(queries), k), -1, np.int64)
        if method == "selector" or (method == "auto" and len(ids) > SUBSET_EXACT_MAX):
            want = min(k, len(ids))
            scores, found = self._search_selected(queries, self.short_list(want) if self.refine_factor else want, ids)
            if self.refine_factor:
                scores, found = rescore(queries, found, self.vectors.get, want)
            if method == "selector" or (found >= 0).sum(axis=1).min() >= want:
                return _pad(scores, found, k)
            # an approximate index can miss members of a sparse selection: score them all exactly instead
        return _pad(*self.score_exactly(queries, min(k, len(ids)), ids), k)

    def score_exactly(self, queries: np.ndarray, k: int, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Top k of `ids` by exact inner product with their stored vectors (rows of the memory map)."""
        scores = queries @ self.vectors.get(ids).T  # (Q, m)
        top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(scores, top, axis=1).astype(np.float32), ids[top]

    def _rows(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(sorted ids, row of each) of an IndexIDMap2 image index, built once per version; None for IVF."""
        index = self.cpu_index
        if not isinstance(index, faiss.IndexIDMap2):
            return None
        with self._lock:
            if self._id_rows is None:
                id_map = faiss.vector_to_array(index.id_map).astype(np.int64)
                order = np.argsort(id_map, kind="stable")
                self._id_rows = (id_map[order], order)
        return self._id_rows

    def _search_selected(self, queries: np.ndarray, k: int, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """FAISS search restricted to `ids`: a bitmap over the rows of an IDMap2 index's inner index (one bit
        test per vector, no hashing), or a hash set of ids inside an IVF index's lists."""
        index = self.cpu_index
        rows = self._rows()
        if rows is not None:
            sorted_ids, order = rows
            members = order[np.searchsorted(sorted_ids, ids)]
            bits = np.zeros((index.ntotal + 7) // 8, dtype=np.uint8)
            np.bitwise_or.at(bits, members >> 3, (1 << (members & 7)).astype(np.uint8))
            selector = faiss.IDSelectorBitmap(index.ntotal, faiss.swig_ptr(bits))
            inner = faiss.downcast_index(index.index)
            if isinstance(inner, faiss.IndexHNSW):
                # the graph walk visits members and non-members alike: widen the beam by the inverse of the
                # selected share so about as many members are seen as unfiltered search sees vectors
                ef = max(inner.hnsw.efSearch, k) * index.ntotal // len(ids)
                params = faiss.SearchParametersHNSW(sel=selector, efSearch=int(min(index.ntotal, ef)))
            else:
                params = faiss.SearchParameters(sel=selector)
            scores, found = inner.search(queries, k, params=params)
            id_map = faiss.vector_to_array(index.id_map) if found.size else np.zeros(0, np.int64)
            return scores, np.where(found >= 0, id_map[np.maximum(found, 0)], -1)
        selector = faiss.IDSelectorBatch(ids)
        ivf = faiss.extract_index_ivf(index)
        params = faiss.SearchParametersIVF(sel=selector, nprobe=ivf.nprobe)
        return index.search(queries, k, params=params)


def _pad(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Widen (Q, k') results to (Q, k) with FAISS's "no result" (-1, -inf) when fewer than k exist."""
    if scores.shape[1] >= k:
        return scores, ids
    extra = k - scores.shape[1]
    return (
        np.pad(scores, ((0, 0), (0, extra)), constant_values=-np.inf).astype(np.float32),
        np.pad(ids, ((0, 0), (0, extra)), constant_values=-1),
    )
