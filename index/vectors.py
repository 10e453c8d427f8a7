"""FAISS indexes over L2-normalised vectors, keyed by int64 ids, chosen by archive size.

The rule follows autofaiss's: exact search (Flat) while a scan of every vector is cheap, an approximate index
above a size threshold, and compressed codes only when the float vectors do not fit the memory budget:

    kind "auto":  n < flat_max            -> flat     exact inner product (what evaluation measures)
                  float vectors <= budget  -> ivf      IVF-Flat: exact vectors in inverted lists
                  8-bit codes <= budget    -> ivf-sq8  IVF with 8-bit scalar-quantised codes (4x smaller)
                  otherwise                -> ivf-pq   IVF with product-quantised codes (dim/8 bytes: 32x smaller)
    kinds "sq8" and "ivf-pq" may also be asked for: sq8 scans every 8-bit code (no lists, no training beyond
    the per-dimension ranges), the cheap compressed scan for archives whose codes fit in RAM.
    kind "hnsw" (override only): an HNSW graph over the exact vectors. In a trial on two loaded cores its build
    took 48 s for 30k vectors where IVF took 8 s, and every nightly update rebuilds the index, so auto does not
    pick it.

FLAT_MAX_VECTORS says where the size threshold comes from. An approximate index's
search parameter (efSearch for HNSW, nprobe for IVF) is tuned at build time: the smallest value whose
recall@K' against exact search on held-out queries reaches the target. The choice, the parameters and the
measured recall go into the manifest, and readers search with exactly those parameters.
The compressed kinds (COMPRESSED_KINDS) rank by codes and re-score a short list of refine_factor x K' candidates
exactly from the float vectors (index.refine), which a version keeps on disk and readers memory-map
(index.vector_file); their recall is measured with that re-scoring, and the IVF ones tune nprobe and
refine_factor together (`_compressed_sweep`). Vectors are added a chunk at a time
(ADD_CHUNK) and k-means trains on a sample, so `vectors` may be a memory map larger than RAM.
Training and adding IVF run on a GPU when FAISS sees one; the file on disk is always a CPU index.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import faiss
import numpy as np

from index.refine import Lookup, search_refined

MIN_POINTS_PER_LIST = 39  # FAISS's own lower bound for a k-means centroid to be trained meaningfully
INDEX_KINDS = ("auto", "flat", "hnsw", "ivf", "ivf-sq8", "sq8", "ivf-pq")
COMPRESSED_KINDS = ("sq8", "ivf-sq8", "ivf-pq")  # ranked by codes, re-scored exactly (index.refine)
REFINE_FACTORS = (1, 2, 4, 8, 16, 32)  # sq8 tunes its short list over these; IVF kinds go from DEFAULT_REFINE up
DEFAULT_REFINE = {"ivf-sq8": 2, "ivf-pq": 8}  # PQ codes rank coarsely: a longer list to re-score
# Compressed IVF tuning: doubling nprobe that gains less recall than this means the codes, not the lists, hold
# recall back (more lists only crowd the short list), so the short list doubles instead, up to REFINE_FACTORS[-1].
PLATEAU_GAIN = 0.005
PQ_BITS = 8
PQ_TRAIN_POINTS = 64 * 2**PQ_BITS  # k-means sample of each PQ sub-quantiser (FAISS asks for >= 39 x 256)
ADD_CHUNK = 100_000  # vectors converted and added at a time (200 MB of float32 at 512 d)
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
    refine_factor: int | None = None  # compressed kinds: candidates re-scored = k x this; None = tuned/default
    pq_m: int | None = None  # ivf-pq: bytes per vector (sub-quantisers); None = dim / 8

    def validate(self, dim: int) -> None:
        if self.kind not in INDEX_KINDS:
            raise ValueError(f"index kind must be one of {', '.join(INDEX_KINDS)}, got {self.kind!r}")
        for name in ("nlist", "nprobe", "ef_search", "refine_factor", "pq_m"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        if self.hnsw_m < 4 or not 0 < self.recall_target <= 1 or self.recall_k < 1 or self.flat_max < 0:
            raise ValueError("need hnsw_m >= 4, 0 < recall_target <= 1, recall_k >= 1 and flat_max >= 0")
        if self.kind == "ivf-pq" and dim % pq_subquantizers(dim, self) != 0:
            raise ValueError(f"ivf-pq needs pq_m dividing the dimension {dim}, got {pq_subquantizers(dim, self)}")


def pq_subquantizers(dim: int, spec: IndexSpec) -> int:
    """Bytes per vector of ivf-pq codes: as given, else dim / 8 (PQ64 at 512 d, 8 dims per sub-quantiser)."""
    return spec.pq_m or max(1, dim // 8)


def index_bytes(kind: str, count: int, dim: int, hnsw_m: int = 32) -> int:
    """Memory an index of `kind` needs for `count` vectors (ids and lists included, roughly)."""
    floats = count * dim * 4
    if kind == "sq8":
        return count * (dim + 8)
    if kind == "ivf-sq8":
        return count * (dim + 16)
    if kind == "ivf-pq":
        return count * (max(1, dim // 8) + 16)
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
    kinds = ("ivf", "ivf-sq8", "ivf-pq") if dim % pq_subquantizers(dim, spec) == 0 else ("ivf", "ivf-sq8")
    for kind in kinds:
        need = index_bytes(kind, count, dim, spec.hnsw_m)
        if budget is None or need <= budget or kind == kinds[-1]:
            fits = "no memory budget" if budget is None else f"{need / 2**20:.0f} MiB within {spec.memory_mib} MiB"
            return kind, f"auto: {count} vectors >= {spec.flat_max}; {fits}"
    raise AssertionError("unreachable")


def add_in_chunks(index: faiss.Index, vectors: np.ndarray, ids: np.ndarray, only: np.ndarray | None = None) -> None:
    """Add ADD_CHUNK rows at a time (of those where the boolean mask `only` is set, when given), in row order, so
    a memory-mapped `vectors` is never copied whole into RAM."""
    rows = None if only is None else np.flatnonzero(only)
    for start in range(0, len(ids) if rows is None else len(rows), ADD_CHUNK):
        chunk = slice(start, start + ADD_CHUNK) if rows is None else rows[start : start + ADD_CHUNK]
        index.add_with_ids(np.ascontiguousarray(vectors[chunk], dtype=np.float32), ids[chunk])


def _sample(vectors: np.ndarray, cap: int, seed: int) -> np.ndarray:
    """At most `cap` rows drawn without replacement, in file order (a forward read of a memory map)."""
    if len(vectors) <= cap:
        return np.ascontiguousarray(vectors, dtype=np.float32)
    rows = np.sort(np.random.default_rng(seed).choice(len(vectors), cap, replace=False))
    return np.ascontiguousarray(vectors[rows], dtype=np.float32)


def _flat(vectors: np.ndarray, ids: np.ndarray) -> faiss.Index:
    index = faiss.IndexIDMap2(faiss.IndexFlatIP(vectors.shape[1]))
    add_in_chunks(index, vectors, ids)
    return index


def _sq8(vectors: np.ndarray, ids: np.ndarray, seed: int) -> faiss.Index:
    """8-bit codes over every vector; training only finds each dimension's range (from a sample)."""
    inner = faiss.IndexScalarQuantizer(vectors.shape[1], faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
    inner.train(_sample(vectors, PQ_TRAIN_POINTS, seed))
    index = faiss.IndexIDMap2(inner)
    add_in_chunks(index, vectors, ids)
    return index


def _hnsw(vectors: np.ndarray, ids: np.ndarray, spec: IndexSpec) -> faiss.Index:
    inner = faiss.IndexHNSWFlat(vectors.shape[1], spec.hnsw_m, faiss.METRIC_INNER_PRODUCT)
    inner.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    index = faiss.IndexIDMap2(inner)
    add_in_chunks(index, vectors, ids)
    return index


def default_nlist(count: int) -> int:
    """About 4·sqrt(n) lists (autofaiss's rule of thumb), a power of two, each trainable."""
    target = 2 ** int(round(np.log2(max(1.0, 4 * np.sqrt(count)))))
    return max(1, min(target, count // MIN_POINTS_PER_LIST))


def _ivf(vectors: np.ndarray, ids: np.ndarray, kind: str, nlist: int, seed: int, pq_m: int) -> faiss.Index:
    dim = vectors.shape[1]
    quantizer = faiss.IndexFlatIP(dim)
    cap = nlist * TRAIN_POINTS_PER_LIST
    if kind == "ivf-pq":
        index = faiss.IndexIVFPQ(quantizer, dim, nlist, pq_m, PQ_BITS, faiss.METRIC_INNER_PRODUCT)
        cap = max(cap, PQ_TRAIN_POINTS)
    elif kind == "ivf-sq8":
        index = faiss.IndexIVFScalarQuantizer(
            quantizer, dim, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
        )
    else:
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = seed
    sample = _sample(vectors, cap, seed)
    if faiss.get_num_gpus() > 0 and kind == "ivf":
        resources = faiss.StandardGpuResources()
        gpu_index = faiss.index_cpu_to_gpu(resources, 0, index)
        gpu_index.train(sample)
        add_in_chunks(gpu_index, vectors, ids)
        index = faiss.index_gpu_to_cpu(gpu_index)
    else:
        index.train(sample)
        add_in_chunks(index, vectors, ids)
    index.set_direct_map_type(faiss.DirectMap.Hashtable)  # lets readers fetch a stored vector by its id
    return index


def set_search_parameter(index: faiss.Index, info: dict[str, Any]) -> None:
    """Apply the manifest's search parameter (nprobe or efSearch) to a loaded index (refine_factor is the
    reader's: index.refine)."""
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
    chosen = np.array(vectors[np.sort(rng.choice(len(vectors), min(TUNE_QUERIES, len(vectors)), replace=False))])
    noise = rng.standard_normal(chosen.shape).astype(np.float32)
    noise *= TUNE_NOISE / np.linalg.norm(noise, axis=1, keepdims=True)
    chosen += noise
    chosen /= np.linalg.norm(chosen, axis=1, keepdims=True)
    return chosen, f"{len(chosen)} archive vectors plus noise of norm {TUNE_NOISE}"


def recall_at(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of each query's exact top-k that the approximate top-k holds."""
    hits = sum(len(set(f[f >= 0].tolist()) & set(t.tolist())) for f, t in zip(found, truth, strict=True))
    return hits / truth.size


def _candidates(kind: str, index: faiss.Index, k: int) -> list[dict[str, int]]:
    """Search settings to try, cheapest first, for HNSW, sq8 and IVF-Flat (compressed IVF: `_compressed_sweep`)."""
    if kind == "hnsw":
        values, ef = [], 16
        while ef < 4096:
            values.append(max(ef, k))
            ef *= 2
        return [{"ef_search": value} for value in sorted(set([*values, 4096]))]
    if kind == "sq8":
        return [{"refine_factor": factor} for factor in REFINE_FACTORS]
    nlist = faiss.extract_index_ivf(index).nlist
    values, nprobe = [], 1
    while nprobe < nlist:
        values.append(nprobe)
        nprobe *= 2
    return [{"nprobe": value} for value in [*values, nlist]]


def _compressed_sweep(
    measure: Callable[[dict[str, int]], float], nlist: int, factor: int, max_factor: int, target: float
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(every setting tried with its recall, the one chosen) for a compressed IVF index.

    nprobe doubles from 1 while each doubling gains at least PLATEAU_GAIN. When it stops paying, the codes'
    ranking is what loses the true neighbours (more lists only add look-alikes to the short list), so the short
    list (refine_factor) doubles instead, up to `max_factor`, and nprobe is tried again after it. The search
    stops at the target or when neither doubling pays. Without the second parameter, codes that could not reach
    the target drove nprobe to every list: a full scan of the codes for the recall of a fraction of them.
    """
    first = {"nprobe": 1, "refine_factor": factor}
    current = {**first, "recall": measure(first)}
    sweep = [current]
    while current["recall"] < target:
        steps = []
        if current["nprobe"] < nlist:
            steps.append({"nprobe": min(2 * current["nprobe"], nlist), "refine_factor": current["refine_factor"]})
        if current["refine_factor"] < max_factor:
            steps.append({"nprobe": current["nprobe"], "refine_factor": min(2 * current["refine_factor"], max_factor)})
        for step in steps:
            tried = {**step, "recall": measure(step)}
            sweep.append(tried)
            if tried["recall"] >= target or tried["recall"] - current["recall"] >= PLATEAU_GAIN:
                current = tried
                break
        else:
            break
    return sweep, current


def row_lookup(vectors: np.ndarray, ids: np.ndarray) -> Lookup:
    """ids -> their rows of `vectors` (which are in `ids`' order), for re-scoring while tuning."""
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    return lambda wanted: np.asarray(vectors[order[np.searchsorted(sorted_ids, wanted)]], dtype=np.float32)


def search_with(
    index: faiss.Index, info: dict[str, Any], queries: np.ndarray, k: int, lookup: Lookup
) -> tuple[np.ndarray, np.ndarray]:
    """Search as a reader does with these manifest settings: compressed kinds re-score a short list of
    refine_factor x max(k, recall_k) candidates (index.image_search.ImageSearch.short_list)."""
    factor = info.get("refine_factor")
    if info.get("kind") in COMPRESSED_KINDS and factor:
        return search_refined(index, queries, k, int(factor) * max(k, int(info.get("recall_k", 1))), lookup)
    return index.search(queries, k)


def tune(
    index: faiss.Index, kind: str, vectors: np.ndarray, ids: np.ndarray, queries: np.ndarray, spec: IndexSpec,
    fixed: dict[str, int] | None,
) -> dict[str, Any]:
    """The cheapest search setting reaching recall@K' >= target on `queries` (or the given one), and the
    recall it measured; for compressed IVF kinds, whose codes may never reach the target, the setting where
    more stops paying (`_compressed_sweep`). Exact truth comes from a brute-force scan of `vectors`."""
    k = min(spec.recall_k, len(vectors))
    _, rows = faiss.knn(queries, vectors, k, metric=faiss.METRIC_INNER_PRODUCT)
    truth = ids[rows]
    lookup = row_lookup(vectors, ids)

    def measure(setting: dict[str, int]) -> float:
        set_search_parameter(index, {"kind": kind, **setting})
        return recall_at(search_with(index, {"kind": kind, **setting}, queries, k, lookup)[1], truth)

    if fixed is not None:
        sweep = [{**fixed, "recall": measure(fixed)}]
        chosen = sweep[0]
    elif kind in ("ivf-sq8", "ivf-pq"):
        nlist = faiss.extract_index_ivf(index).nlist
        factor = spec.refine_factor or DEFAULT_REFINE[kind]  # one given explicitly is kept as given
        sweep, chosen = _compressed_sweep(measure, nlist, factor, spec.refine_factor or REFINE_FACTORS[-1],
                                          spec.recall_target)
    else:
        sweep = []
        for setting in _candidates(kind, index, k):
            sweep.append({**setting, "recall": measure(setting)})
            if sweep[-1]["recall"] >= spec.recall_target:
                break
        chosen = sweep[-1]
    best = {name: int(value) for name, value in chosen.items() if name != "recall"}
    set_search_parameter(index, {"kind": kind, **best})
    return {
        **best,
        "recall": round(float(chosen["recall"]), 4),
        "recall_k": k,
        "recall_target": spec.recall_target,
        "tuned": fixed is None,
        "sweep": sweep,
    }


def given_setting(kind: str, spec: IndexSpec, nlist: int | None) -> dict[str, int] | None:
    """The search setting given explicitly, or None when it is to be tuned."""
    if kind == "hnsw":
        return None if spec.ef_search is None else {"ef_search": spec.ef_search}
    if kind == "sq8":
        return None if spec.refine_factor is None else {"refine_factor": spec.refine_factor}
    if spec.nprobe is None or nlist is None:
        return None
    extra = {"refine_factor": spec.refine_factor or DEFAULT_REFINE[kind]} if kind in COMPRESSED_KINDS else {}
    return {"nprobe": min(spec.nprobe, nlist), **extra}


def build_index(
    vectors: np.ndarray, ids: np.ndarray, spec: IndexSpec, seed: int = 0, queries: np.ndarray | None = None
) -> tuple[faiss.Index, dict[str, Any]]:
    """A CPU index holding `vectors` under `ids`, and its description for the manifest.

    `vectors` may be a float32 memory map (it is read a chunk at a time). `queries` (e.g. the caption bank's
    vectors) are what an approximate index is tuned on; without them, archive vectors plus noise stand in. An
    IVF index needs enough vectors to train; below MIN_POINTS_PER_LIST any kind falls back to exact search.
    """
    if not (isinstance(vectors, np.ndarray) and vectors.dtype == np.float32):
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
    nlist = None
    if kind == "hnsw":
        index = _hnsw(vectors, ids, spec)
        info: dict[str, Any] = {"kind": kind, "hnsw_m": spec.hnsw_m, "ef_construction": HNSW_EF_CONSTRUCTION}
    elif kind == "sq8":
        index, info = _sq8(vectors, ids, seed), {"kind": kind}
    else:
        nlist = min(spec.nlist, len(vectors) // MIN_POINTS_PER_LIST) if spec.nlist else default_nlist(len(vectors))
        pq_m = pq_subquantizers(vectors.shape[1], spec)
        index = _ivf(vectors, ids, kind, max(1, nlist), seed, pq_m)
        nlist = int(faiss.extract_index_ivf(index).nlist)
        info = {"kind": kind, "nlist": nlist, **({"pq_m": pq_m, "pq_bits": PQ_BITS} if kind == "ivf-pq" else {})}
        info["trained_on"] = len(vectors)  # index.ivf_append retrains once enough has been appended since
    held_out, described = tuning_queries(vectors, queries, seed)
    measured = tune(index, kind, vectors, ids, held_out, spec, given_setting(kind, spec, nlist))
    info.update(measured, tuning_queries=described, reason=reason)
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
