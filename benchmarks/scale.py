"""Archive scale: exact search vs the index `build_index` chooses (auto) on embedding-like vectors.

The archive is drawn from the model's own embeddings of the RSICD test images (benchmarks.embedding_like:
mixtures of two image embeddings plus noise), and the queries are the model's embeddings of real captions, so
they sit across the text/image gap as real text queries do; easy synthetic clusters made IVF look better than
it is. The captions are split in two: one half tunes the index's search parameter at build time (as the
caption bank does in a real store), the other half measures recall, so no query tuned what it is scored on.
With random weights text and image embeddings are nearly unrelated (a wider gap than a trained model's), so
recall is also measured on image-like queries: fresh mixtures of the seeds, drawn like the archive but not in it.
Latency is one query per call (what a single analyst waits for), FAISS on one thread as the service runs it.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator

import numpy as np

from benchmarks.embedding_like import mixed_archive, nearest_cosine, seed_embeddings
from benchmarks.harness import DEFAULT_SPLIT, Result, faiss_threads, percentile, smoke_arch, split_path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--vectors", type=int, default=1_000_000)
    parser.add_argument("--split", default=str(DEFAULT_SPLIT), help="annotation file: seed images and queries")
    parser.add_argument("--arch", default="ViT-B-32", help="open_clip architecture (random weights)")
    parser.add_argument("--noise", type=float, default=0.5, help="noise norm relative to the seeds' spread")
    parser.add_argument("--kinds", nargs="+", default=["auto"], help="index kinds to compare with exact search")
    parser.add_argument("--queries", type=int, default=1000, help="held-out caption queries for recall")
    parser.add_argument("--single-queries", type=int, default=200, help="one-at-a-time queries for latency")
    parser.add_argument("--threads", type=int, default=1, help="FAISS threads (the service uses 1)")
    parser.add_argument("--seed", type=int, default=0)


def _single_query_ms(search, queries: np.ndarray, count: int) -> dict[str, float]:
    samples = []
    for row in queries[:count]:
        start = time.perf_counter()
        search(row[None, :])
        samples.append((time.perf_counter() - start) * 1e3)
    return {"p50": percentile(samples, 50), "p95": percentile(samples, 95)}


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    from index.vectors import recall_at

    return recall_at(found, truth)


def run(args: argparse.Namespace) -> Iterator[Result]:
    """Yields each row as soon as it is measured, so a long run that is cut short keeps what it finished."""
    with faiss_threads(args.threads):
        yield from _run(args)


def _run(args: argparse.Namespace) -> Iterator[Result]:
    import faiss

    from index.vectors import IndexSpec, build_index, index_bytes

    arch = str(smoke_arch()) if args.smoke else args.arch
    if args.smoke:
        args.vectors, args.queries, args.single_queries = 20_000, 100, 20
    if args.vectors < 1 or args.queries < 1:
        raise ValueError("--vectors and --queries must be positive")
    seeds, captions = seed_embeddings(arch, split_path(args.split), 60 if args.smoke else None)
    order = np.random.default_rng(args.seed).permutation(len(captions))
    tune_queries = captions[order[: len(order) // 2]]
    queries = np.ascontiguousarray(captions[order[len(order) // 2 :]][: args.queries])
    image_queries = mixed_archive(seeds, args.queries, args.noise, args.seed + 1)
    began = time.perf_counter()
    base = mixed_archive(seeds, args.vectors, args.noise, args.seed)
    generate_s = time.perf_counter() - began
    ids = np.arange(args.vectors, dtype=np.int64)
    data = {
        "vectors": args.vectors,
        "dim": int(base.shape[1]),
        "data": f"mixtures of 2 of {len(seeds)} {'smoke' if args.smoke else arch} RSICD image embeddings "
        f"(random weights) + noise {args.noise}",
        "queries": f"{len(queries)} held-out caption embeddings + {len(image_queries)} image-like",
        "threads": args.threads,
    }
    facts = {"nearest_cosine_p50": nearest_cosine(base[:100_000]), "query_to_archive_top1_cosine_p50": None}
    began = time.perf_counter()
    scores, truth100 = faiss.knn(queries, base, min(100, args.vectors), metric=faiss.METRIC_INNER_PRODUCT)
    batch_s = time.perf_counter() - began
    facts["query_to_archive_top1_cosine_p50"] = float(np.median(scores[:, 0]))
    truth10 = truth100[:, :10]
    _, image_truth10 = faiss.knn(image_queries, base, min(10, args.vectors), metric=faiss.METRIC_INNER_PRODUCT)
    exact = _single_query_ms(lambda q: faiss.knn(q, base, 10, metric=faiss.METRIC_INNER_PRODUCT), queries,
                             args.single_queries)
    yield Result(
        benchmark="scale",
        params={**data, "index": "flat (exact)"},
        metrics={"single_query_ms_p50": exact["p50"], "single_query_ms_p95": exact["p95"], "recall@10": 1.0,
                 "batch_ms_per_query": batch_s / len(queries) * 1e3, **facts},
        raw={"generate_s": generate_s},
    )
    for kind in args.kinds:
        began = time.perf_counter()
        spec = IndexSpec(kind=kind, flat_max=1000) if args.smoke else IndexSpec(kind=kind)
        index, info = build_index(base, ids, spec, queries=tune_queries)
        build_s = time.perf_counter() - began
        _, found = index.search(queries, min(100, args.vectors))
        _, image_found = index.search(image_queries, min(10, args.vectors))
        single = _single_query_ms(lambda q, index=index: index.search(q, 10), queries, args.single_queries)
        shown = {k: v for k, v in info.items() if k in ("kind", "nlist", "nprobe", "hnsw_m", "ef_search")}
        yield Result(
            benchmark="scale",
            params={**data, "index": f"{kind} -> {info['kind']}", **shown},
            metrics={
                "single_query_ms_p50": single["p50"],
                "single_query_ms_p95": single["p95"],
                "recall@10": _recall(found[:, :10], truth10),
                "recall@100": _recall(found, truth100),
                "image_query_recall@10": _recall(image_found, image_truth10),
                "build_recall@100": info.get("recall", 1.0),
                "build_s": build_s,
                "index_MiB_estimated": index_bytes(info["kind"], args.vectors, base.shape[1]) / 2**20,
            },
            raw={"index": info},
            notes="recall against exact search on held-out caption queries; build_recall is what the build "
            "measured on the tuning half and recorded in the manifest",
        )
        del index
