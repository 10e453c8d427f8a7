"""FAISS indexes over L2-normalised vectors, keyed by int64 ids.

Exact inner product (IndexIDMap2 over IndexFlatIP) is the default: it is what evaluation measures. Above
about a million vectors IVF-Flat trades a little recall for much faster search. IVF-Flat (not IVF-PQ) keeps
exact vectors, so an update can reuse them to retrain without drift, where PQ codes would lose precision
every night. `nprobe` is recorded in the manifest so readers search as the builder intended.
Training and adding run on a GPU when FAISS sees one; the file on disk is always a CPU index.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import faiss
import numpy as np

MIN_POINTS_PER_LIST = 39  # FAISS's own lower bound for a k-means centroid to be trained meaningfully


@dataclass(frozen=True)
class IndexSpec:
    kind: str = "flat"  # "flat" | "ivf"
    nlist: int = 4096
    nprobe: int = 32

    def validate(self, dim: int) -> None:
        if self.kind not in ("flat", "ivf"):
            raise ValueError(f"index kind must be 'flat' or 'ivf', got {self.kind!r}")
        if self.kind == "ivf" and (self.nlist < 1 or self.nprobe < 1):
            raise ValueError("IVF needs nlist >= 1 and nprobe >= 1")


def _flat(vectors: np.ndarray, ids: np.ndarray) -> tuple[faiss.Index, dict[str, Any]]:
    index = faiss.IndexIDMap2(faiss.IndexFlatIP(vectors.shape[1]))
    index.add_with_ids(vectors, ids)
    return index, {"kind": "flat"}


def _ivf(vectors: np.ndarray, ids: np.ndarray, spec: IndexSpec, seed: int) -> tuple[faiss.Index, dict[str, Any]]:
    dim = vectors.shape[1]
    nlist = max(1, min(spec.nlist, len(vectors) // MIN_POINTS_PER_LIST))
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = seed
    sample = vectors
    cap = nlist * 256
    if len(vectors) > cap:
        sample = vectors[np.random.default_rng(seed).choice(len(vectors), cap, replace=False)]
    if faiss.get_num_gpus() > 0:
        resources = faiss.StandardGpuResources()
        gpu_index = faiss.index_cpu_to_gpu(resources, 0, index)
        gpu_index.train(sample)
        gpu_index.add_with_ids(vectors, ids)
        index = faiss.index_gpu_to_cpu(gpu_index)
    else:
        index.train(sample)
        index.add_with_ids(vectors, ids)
    index.set_direct_map_type(faiss.DirectMap.Hashtable)  # lets readers fetch a stored vector by its id
    index.nprobe = min(spec.nprobe, nlist)
    info = {"kind": "ivf", "nlist": nlist, "nprobe": int(index.nprobe)}
    return index, info


def build_index(vectors: np.ndarray, ids: np.ndarray, spec: IndexSpec, seed: int = 0) -> tuple[faiss.Index, dict]:
    """A CPU index holding `vectors` under `ids`, and its description for the manifest.

    An IVF index needs enough vectors to train; below MIN_POINTS_PER_LIST it falls back to exact search.
    """
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    if vectors.ndim != 2 or len(vectors) != len(ids):
        raise ValueError(f"vectors {vectors.shape} and ids {ids.shape} do not match")
    spec.validate(vectors.shape[1])
    if spec.kind == "flat" or len(vectors) < MIN_POINTS_PER_LIST:
        return _flat(vectors, ids)
    return _ivf(vectors, ids, spec, seed)


def stored_vectors(index: faiss.Index) -> tuple[np.ndarray, np.ndarray]:
    """(ids, vectors) of every entry of an index built here, read in bulk rather than id by id."""
    if isinstance(index, faiss.IndexIDMap2 | faiss.IndexIDMap):
        ids = faiss.vector_to_array(index.id_map).astype(np.int64)
        inner = faiss.downcast_index(index.index)
        vectors = inner.reconstruct_n(0, inner.ntotal) if inner.ntotal else np.zeros((0, index.d), np.float32)
        return ids, vectors
    ivf = faiss.extract_index_ivf(index)
    lists = ivf.invlists
    all_ids, all_vectors = [], []
    for number in range(ivf.nlist):
        size = lists.list_size(number)
        if size == 0:
            continue
        all_ids.append(faiss.rev_swig_ptr(lists.get_ids(number), size).copy())
        codes = faiss.rev_swig_ptr(lists.get_codes(number), size * lists.code_size).copy()
        all_vectors.append(codes.view(np.float32).reshape(size, ivf.d))
    if not all_ids:
        return np.zeros(0, np.int64), np.zeros((0, ivf.d), np.float32)
    return np.concatenate(all_ids).astype(np.int64), np.concatenate(all_vectors)
