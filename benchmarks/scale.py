"""Archive scale: exact inner-product search vs IVF indexes on synthetic unit vectors.

Uniform random vectors on a 512-d sphere have no neighbourhood structure (every point is nearly
orthogonal to every other), which makes IVF look worse than on real embeddings. CLIP embeddings are
clustered, so the data here is a mixture of Gaussians projected onto the sphere; queries are fresh draws
from the same mixture, never base vectors, so no query finds itself.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator

import numpy as np

from benchmarks.harness import Result, percentile, time_repeated


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--vectors", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--clusters", type=int, default=2000, help="mixture components of the synthetic data")
    parser.add_argument("--spread", type=float, default=0.6, help="noise norm relative to the unit centre")
    parser.add_argument("--queries", type=int, default=1000, help="queries for recall@10 and batch latency")
    parser.add_argument(
        "--indexes",
        nargs="+",
        default=["IVF1024,Flat", "IVF4096,Flat", "IVF1024,PQ64"],
        help="FAISS factory strings compared against Flat (exact)",
    )
    parser.add_argument("--nprobe", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--train-size", type=int, default=160_000, help="vectors used to train IVF/PQ")
    parser.add_argument("--single-queries", type=int, default=200, help="one-at-a-time queries for latency")
    parser.add_argument("--seed", type=int, default=0)


def unit_centres(rng: np.random.Generator, clusters: int, dim: int) -> np.ndarray:
    vectors = rng.standard_normal((clusters, dim), dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def clustered_unit_vectors(
    rng: np.random.Generator, count: int, centres: np.ndarray, spread: float
) -> np.ndarray:
    """Draw around the centres, then normalise: a cheap stand-in for the clumpy geometry of embeddings.
    Built in blocks so 1M x 512 never needs a second 2 GB temporary."""
    dim = centres.shape[1]
    out = np.empty((count, dim), dtype=np.float32)
    step = 100_000
    for start in range(0, count, step):
        n = min(step, count - start)
        block = rng.standard_normal((n, dim), dtype=np.float32)
        block *= np.float32(spread / np.sqrt(dim))
        block += centres[rng.integers(0, len(centres), size=n)]
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start : start + n] = block
    return out


def _skip_polysemous_training(index) -> None:
    """The factory turns on polysemous training for IVF-PQ: a simulated-annealing pass that only serves
    Hamming-filtered search (not used here) and takes minutes on 2 cores."""
    import faiss

    inner = faiss.downcast_index(index)
    if hasattr(inner, "do_polysemous_training"):
        inner.do_polysemous_training = False


def _index_bytes(index) -> int:
    import faiss

    return int(faiss.serialize_index(index).nbytes)


def _single_query_ms(index, queries, count: int) -> dict[str, float]:
    samples = []
    for row in queries[:count]:
        start = time.perf_counter()
        index.search(row[None, :], 10)
        samples.append((time.perf_counter() - start) * 1e3)
    return {"p50": percentile(samples, 50), "p95": percentile(samples, 95), "min": min(samples), "max": max(samples)}


def _recall_at_10(found, truth) -> float:
    hits = sum(len(set(f) & set(t)) for f, t in zip(found.tolist(), truth.tolist(), strict=True))
    return hits / truth.size


def run(args: argparse.Namespace) -> Iterator[Result]:
    """Yields each row as soon as it is measured, so a long run that is cut short keeps what it finished."""
    import faiss

    if args.smoke:
        args.vectors, args.dim, args.clusters, args.queries = 20_000, 64, 50, 100
        args.indexes, args.nprobe = ["IVF64,Flat", "IVF64,PQ8x4"], [1, 8]
        args.train_size, args.single_queries = 10_000, 20
    if args.vectors < 1 or args.queries < 1:
        raise ValueError("--vectors and --queries must be positive")
    rng = np.random.default_rng(args.seed)
    centres = unit_centres(rng, args.clusters, args.dim)
    began = time.perf_counter()
    base = clustered_unit_vectors(rng, args.vectors, centres, args.spread)
    queries = clustered_unit_vectors(rng, args.queries, centres, args.spread)
    generate_s = time.perf_counter() - began
    threads = faiss.omp_get_max_threads()
    data = {
        "vectors": args.vectors,
        "dim": args.dim,
        "data": f"clustered: {args.clusters}-Gaussian mixture on the sphere, spread {args.spread}",
        "threads": threads,
    }
    began = time.perf_counter()
    exact = faiss.IndexFlatIP(args.dim)
    exact.add(base)
    exact_build = time.perf_counter() - began
    _, truth = exact.search(queries, 10)  # also the warm-up of the timed searches below
    batch = time_repeated(lambda index=exact: index.search(queries, 10), repeat=1 if args.smoke else 2, warmup=0)
    yield (
        Result(
            benchmark="scale",
            params={**data, "index": "Flat (exact)"},
            metrics={
                "build_s": exact_build,
                "index_MiB": _index_bytes(exact) / 2**20,
                "single_query_ms_p50": _single_query_ms(exact, queries, args.single_queries)["p50"],
                "batch_ms_per_query": batch.median / args.queries * 1e3,
                "recall@10": 1.0,
            },
            raw={"batch": batch.to_dict(), "generate_s": generate_s},
        )
    )
    del exact

    train = base[rng.choice(args.vectors, size=min(args.train_size, args.vectors), replace=False)]
    for factory in args.indexes:
        index = faiss.index_factory(args.dim, factory, faiss.METRIC_INNER_PRODUCT)
        _skip_polysemous_training(index)
        began = time.perf_counter()
        index.train(train)
        train_s = time.perf_counter() - began
        began = time.perf_counter()
        index.add(base)
        add_s = time.perf_counter() - began
        size = _index_bytes(index)
        ivf = faiss.extract_index_ivf(index)
        sweep = []
        for nprobe in args.nprobe:
            ivf.nprobe = nprobe
            batch = time_repeated(lambda index=index: index.search(queries, 10), repeat=1 if args.smoke else 3)
            _, found = index.search(queries, 10)
            single = _single_query_ms(index, queries, args.single_queries)
            sweep.append(
                {
                    "nprobe": nprobe,
                    "recall@10": _recall_at_10(found, truth),
                    "single_query_ms": single,
                    "batch": batch.to_dict(),
                    "batch_ms_per_query": batch.median / args.queries * 1e3,
                }
            )
        for point in sweep:
            yield (
                Result(
                    benchmark="scale",
                    params={**data, "index": factory, "nprobe": point["nprobe"], "train_vectors": len(train)},
                    metrics={
                        "build_s": train_s + add_s,
                        "index_MiB": size / 2**20,
                        "single_query_ms_p50": point["single_query_ms"]["p50"],
                        "batch_ms_per_query": point["batch_ms_per_query"],
                        "recall@10": point["recall@10"],
                    },
                    raw={"train_s": train_s, "add_s": add_s, **point},
                    notes="recall@10 against exact search on the same queries",
                )
            )
        del index
