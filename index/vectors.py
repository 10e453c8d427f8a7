"""FAISS indexes over L2-normalised vectors, keyed by int64 ids, chosen by archive size.

The rule follows autofaiss's: exact search (Flat) while a scan of every vector is cheap, an approximate index
above a size threshold, and compressed codes only when the float vectors do not fit the memory budget:

    kind "auto":  n < flat_max            -> flat     exact inner product (what evaluation measures)
                  float vectors <= budget  -> ivf      IVF-Flat: exact vectors in inverted lists
                  otherwise                -> ivf-sq8  IVF with 8-bit scalar-quantised codes (4x smaller)
    kind "hnsw" (override only): an HNSW graph over the exact vectors. In a trial on two loaded cores its build
    took 48 s for 30k vectors where IVF took 8 s, and every nightly update rebuilds the index, so auto does not
    pick it.

FLAT_MAX_VECTORS says where the size threshold comes from. An approximate index's
search parameter (efSearch for HNSW, nprobe for IVF) is tuned at build time: the smallest value whose
recall@K' against exact search on held-out queries reaches the target. The choice, the parameters and the
measured recall go into the manifest, and readers search with exactly those parameters.
Every index answers `reconstruct(id)`, so the filtered search can score a subset of stored vectors exactly and
an update can reuse stored vectors (for ivf-sq8 those are the decoded 8-bit codes, not the original floats).
Training and adding IVF run on a GPU when FAISS sees one; the file on disk is always a CPU index.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import faiss
import numpy as np

MIN_POINTS_PER_LIST = 39  # FAISS's own lower bound for a k-means centroid to be trained meaningfully
INDEX_KINDS = ("auto", "flat", "hnsw", "ivf", "ivf-sq8")
# Exact search of one query over 100k x 512 vectors takes 7.5-12 ms on one core of the 2-core CPU (query-latency
# rows of 2026-12-04 12:46 in benchmarks/RESULTS.md, quiet machine), 79 ms over 1M (scale rows of 12:57): below
# about 50k vectors a scan stays under ~6 ms and exact search, which has no recall to lose, is kept. Above it
# auto tries IVF and keeps it only where tuning shows it scans a small share of the lists.
FLAT_MAX_VECTORS = 50_000
HNSW_EF_CONSTRUCTION = 80
TUNE_QUERIES = 500
TRAIN_POINTS_PER_LIST = 40  # k-means sample per IVF list: just above FAISS's minimum of 39, minutes less on 2 cores
# auto: an IVF index that needs more than this share of its lists to reach the recall target scans about as many
# vectors as exact search (plus the coarse step), so exact search is used instead.
MAX_PROBED_SHARE = 0.25
TUNE_NOISE = 1.0  # norm of the Gaussian noise added to archive vectors when no caption bank gives queries


@dataclass(frozen=True)
class IndexSpec:
    """What the store asks for; `kind="auto"` leaves the choice to the archive size and memory budget.
    nlist / nprobe / ef_search set explicitly are used as given (overrides); None means chosen or tuned."""

    kind: str = "auto"
    nlist: int | None = None
    nprobe: int | None = None
    hnsw_m: int = 32
    ef_search: int | None = None
    flat_max: int = FLAT_MAX_VECTORS
    memory_mib: int | None = None  # budget for the image index in memory; None = no limit
    recall_target: float = 0.99
    recall_k: int = 100  # K' the service hands to re-ranking

    def validate(self, dim: int) -> None:
        if self.kind not in INDEX_KINDS:
            raise ValueError(f"index kind must be one of {', '.join(INDEX_KINDS)}, got {self.kind!r}")
        for name in ("nlist", "nprobe", "ef_search"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        if self.hnsw_m < 4 or not 0 < self.recall_target <= 1 or self.recall_k < 1 or self.flat_max < 0:
            raise ValueError("need hnsw_m >= 4, 0 < recall_target <= 1, recall_k >= 1 and flat_max >= 0")


def index_bytes(kind: str, count: int, dim: int, hnsw_m: int = 32) -> int:
    """Memory an index of `kind` needs for `count` vectors (ids and lists included, roughly)."""
    floats = count * dim * 4
    if kind == "ivf-sq8":
        return count * (dim + 16)
    if kind == "hnsw":
        return floats + count * (hnsw_m * 2 * 4 + 8 * 3)  # level-0 links dominate the graph
    return floats + count * 16


def choose_kind(count: int, dim: int, spec: IndexSpec) -> tuple[str, str]:
    """(kind, why) for an archive of `count` vectors."""
    if spec.kind != "auto":
        return spec.kind, f"requested {spec.kind!r}"
    if count < max(spec.flat_max, MIN_POINTS_PER_LIST):
        return "flat", f"auto: {count} vectors < {spec.flat_max} (exact search is cheap at this size)"
    budget = None if spec.memory_mib is None else spec.memory_mib * 2**20
    for kind in ("ivf", "ivf-sq8"):
        need = index_bytes(kind, count, dim, spec.hnsw_m)
        if budget is None or need <= budget or kind == "ivf-sq8":
            fits = "no memory budget" if budget is None else f"{need / 2**20:.0f} MiB within {spec.memory_mib} MiB"
            return kind, f"auto: {count} vectors >= {spec.flat_max}; {fits}"
    raise AssertionError("unreachable")


def _flat(vectors: np.ndarray, ids: np.ndarray) -> faiss.Index:
    index = faiss.IndexIDMap2(faiss.IndexFlatIP(vectors.shape[1]))
    index.add_with_ids(vectors, ids)
    return index


def _hnsw(vectors: np.ndarray, ids: np.ndarray, spec: IndexSpec) -> faiss.Index:
    inner = faiss.IndexHNSWFlat(vectors.shape[1], spec.hnsw_m, faiss.METRIC_INNER_PRODUCT)
    inner.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    index = faiss.IndexIDMap2(inner)
    index.add_with_ids(vectors, ids)
    return index


def default_nlist(count: int) -> int:
    """About 4·sqrt(n) lists (autofaiss's rule of thumb), a power of two, each trainable."""
    target = 2 ** int(round(np.log2(max(1.0, 4 * np.sqrt(count)))))
    return max(1, min(target, count // MIN_POINTS_PER_LIST))


def _ivf(vectors: np.ndarray, ids: np.ndarray, kind: str, nlist: int, seed: int) -> faiss.Index:
    dim = vectors.shape[1]
    quantizer = faiss.IndexFlatIP(dim)
    if kind == "ivf-sq8":
        index = faiss.IndexIVFScalarQuantizer(
            quantizer, dim, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
        )
    else:
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = seed
    sample = vectors
    cap = nlist * TRAIN_POINTS_PER_LIST
    if len(vectors) > cap:
        sample = vectors[np.random.default_rng(seed).choice(len(vectors), cap, replace=False)]
    if faiss.get_num_gpus() > 0 and kind == "ivf":
        resources = faiss.StandardGpuResources()
        gpu_index = faiss.index_cpu_to_gpu(resources, 0, index)
        gpu_index.train(sample)
        gpu_index.add_with_ids(vectors, ids)
        index = faiss.index_gpu_to_cpu(gpu_index)
    else:
        index.train(sample)
        index.add_with_ids(vectors, ids)
    index.set_direct_map_type(faiss.DirectMap.Hashtable)  # lets readers fetch a stored vector by its id
    return index


def set_search_parameter(index: faiss.Index, info: dict[str, Any]) -> None:
    """Apply the manifest's search parameter (nprobe or efSearch) to a loaded index."""
    if info.get("kind", "flat").startswith("ivf") and info.get("nprobe"):
        faiss.extract_index_ivf(index).nprobe = int(info["nprobe"])
    elif info.get("kind") == "hnsw" and info.get("ef_search"):
        inner = faiss.downcast_index(index.index if isinstance(index, faiss.IndexIDMap2) else index)
        inner.hnsw.efSearch = int(info["ef_search"])


def tuning_queries(vectors: np.ndarray, queries: np.ndarray | None, seed: int) -> tuple[np.ndarray, str]:
    """Held-out queries that look like real ones: caption-bank vectors when there are any, else archive vectors
    moved by noise as large as themselves (so a query is near, not on, its source), re-normalised."""
    rng = np.random.default_rng(seed)
    if queries is not None and len(queries):
        chosen = queries[rng.choice(len(queries), min(TUNE_QUERIES, len(queries)), replace=False)]
        return np.ascontiguousarray(chosen, dtype=np.float32), f"{len(chosen)} caption-bank vectors"
    chosen = vectors[rng.choice(len(vectors), min(TUNE_QUERIES, len(vectors)), replace=False)].copy()
    noise = rng.standard_normal(chosen.shape).astype(np.float32)
    noise *= TUNE_NOISE / np.linalg.norm(noise, axis=1, keepdims=True)
    chosen += noise
    chosen /= np.linalg.norm(chosen, axis=1, keepdims=True)
    return chosen, f"{len(chosen)} archive vectors plus noise of norm {TUNE_NOISE}"


def recall_at(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of each query's exact top-k that the approximate top-k holds."""
    hits = sum(len(set(f[f >= 0].tolist()) & set(t.tolist())) for f, t in zip(found, truth, strict=True))
    return hits / truth.size


def _candidates(kind: str, index: faiss.Index, k: int) -> list[int]:
    if kind == "hnsw":
        values, ef = [], 16
        while ef < 4096:
            values.append(max(ef, k))
            ef *= 2
        return sorted(set([*values, 4096]))
    nlist = faiss.extract_index_ivf(index).nlist
    values, nprobe = [], 1
    while nprobe < nlist:
        values.append(nprobe)
        nprobe *= 2
    return [*values, nlist]


def tune(
    index: faiss.Index, kind: str, vectors: np.ndarray, ids: np.ndarray, queries: np.ndarray, spec: IndexSpec,
    fixed: int | None,
) -> dict[str, Any]:
    """The smallest search parameter reaching recall@K' >= target on `queries` (or the given one), and the
    recall it measured. Exact truth comes from a brute-force scan of `vectors` (no second copy)."""
    k = min(spec.recall_k, len(vectors))
    _, rows = faiss.knn(queries, vectors, k, metric=faiss.METRIC_INNER_PRODUCT)
    truth = ids[rows]
    name = "ef_search" if kind == "hnsw" else "nprobe"
    sweep = []
    for value in [fixed] if fixed is not None else _candidates(kind, index, k):
        set_search_parameter(index, {"kind": kind, name: value})
        _, found = index.search(queries, k)
        sweep.append({name: value, "recall": recall_at(found, truth)})
        if fixed is None and sweep[-1]["recall"] >= spec.recall_target:
            break
    best = sweep[-1]
    set_search_parameter(index, {"kind": kind, name: best[name]})
    return {
        name: int(best[name]),
        "recall": round(float(best["recall"]), 4),
        "recall_k": k,
        "recall_target": spec.recall_target,
        "tuned": fixed is None,
        "sweep": sweep,
    }


def build_index(
    vectors: np.ndarray, ids: np.ndarray, spec: IndexSpec, seed: int = 0, queries: np.ndarray | None = None
) -> tuple[faiss.Index, dict[str, Any]]:
    """A CPU index holding `vectors` under `ids`, and its description for the manifest.

    `queries` (e.g. the caption bank's vectors) are what an approximate index is tuned on; without them, archive
    vectors plus noise stand in. An IVF index needs enough vectors to train; below MIN_POINTS_PER_LIST any kind
    falls back to exact search.
    """
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    if vectors.ndim != 2 or len(vectors) != len(ids):
        raise ValueError(f"vectors {vectors.shape} and ids {ids.shape} do not match")
    spec.validate(vectors.shape[1])
    kind, reason = choose_kind(len(vectors), vectors.shape[1], spec)
    if kind == "flat" or len(vectors) < MIN_POINTS_PER_LIST:
        if kind != "flat":
            reason = f"{reason}; too few vectors ({len(vectors)}) to train, exact instead"
        return _flat(vectors, ids), {"kind": "flat", "reason": reason}
    if kind == "hnsw":
        index = _hnsw(vectors, ids, spec)
        info: dict[str, Any] = {"kind": kind, "hnsw_m": spec.hnsw_m, "ef_construction": HNSW_EF_CONSTRUCTION}
        fixed = spec.ef_search
    else:
        nlist = min(spec.nlist, len(vectors) // MIN_POINTS_PER_LIST) if spec.nlist else default_nlist(len(vectors))
        index = _ivf(vectors, ids, kind, max(1, nlist), seed)
        info = {"kind": kind, "nlist": int(faiss.extract_index_ivf(index).nlist)}
        fixed = None if spec.nprobe is None else min(spec.nprobe, info["nlist"])
    held_out, described = tuning_queries(vectors, queries, seed)
    info.update(tune(index, kind, vectors, ids, held_out, spec, fixed), tuning_queries=described, reason=reason)
    if spec.kind == "auto" and kind == "ivf" and info["nprobe"] > MAX_PROBED_SHARE * info["nlist"]:
        why = (
            f"{reason}; IVF needed nprobe {info['nprobe']} of {info['nlist']} lists for recall@{info['recall_k']} "
            f"{info['recall']} (target {spec.recall_target}), about an exact scan, so exact search instead"
        )
        return _flat(vectors, ids), {"kind": "flat", "reason": why}
    return index, info


def stored_vectors(index: faiss.Index) -> tuple[np.ndarray, np.ndarray]:
    """(ids, vectors) of every entry of an index built here, read in bulk rather than id by id."""
    if isinstance(index, faiss.IndexIDMap2 | faiss.IndexIDMap):
        ids = faiss.vector_to_array(index.id_map).astype(np.int64)
        inner = faiss.downcast_index(index.index)
        vectors = inner.reconstruct_n(0, inner.ntotal) if inner.ntotal else np.zeros((0, index.d), np.float32)
        return ids, vectors
    ivf = faiss.extract_index_ivf(index)
    lists = ivf.invlists
    all_ids = [
        faiss.rev_swig_ptr(lists.get_ids(number), lists.list_size(number)).copy()
        for number in range(ivf.nlist)
        if lists.list_size(number)
    ]
    if not all_ids:
        return np.zeros(0, np.int64), np.zeros((0, ivf.d), np.float32)
    ids = np.concatenate(all_ids).astype(np.int64)
    return ids, index.reconstruct_batch(ids)
