"""What appending to a trained IVF index costs in recall, against retraining on the same vectors.

The nightly update (index.ivf_append) appends new items to the live lists while the items appended since the
last training stay within APPEND_MAX_SHARE. Appending only hurts when the new items differ from what the
quantiser was trained on, so the new items here come from scenes the old archive never had: the seed images
are split in two, the old archive mixes seeds of the first part only, and each appended share mixes seeds of
the second part. For each share the appended index (quantiser trained on the old archive) and a retrained one
(trained on old + new) are tuned to the same recall target; the row reports the nprobe each needs and recall@10
of both at the appended index's nprobe, on gap-shifted queries drawn from all seeds.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import numpy as np

from benchmarks.embedding_like import mixed_archive, query_sets, seed_embeddings
from benchmarks.harness import DEFAULT_SPLIT, Result, faiss_threads, smoke_arch, split_path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--vectors", type=int, default=200_000, help="old archive size")
    parser.add_argument("--shares", type=float, nargs="+", default=[0.05, 0.1, 0.2, 0.4])
    parser.add_argument("--kind", default="ivf-pq", choices=["ivf", "ivf-sq8", "ivf-pq"])
    parser.add_argument("--split", default=str(DEFAULT_SPLIT))
    parser.add_argument("--arch", default="ViT-B-32")
    parser.add_argument("--noise", type=float, default=0.5)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> Iterator[Result]:
    with faiss_threads(args.threads):
        yield from _run(args)


def _run(args: argparse.Namespace) -> Iterator[Result]:
    import faiss

    from index.vectors import IndexSpec, build_index, recall_at, row_lookup, search_with, set_search_parameter, tune

    arch = str(smoke_arch()) if args.smoke else args.arch
    if args.smoke:
        args.vectors, args.queries, args.shares = 5_000, 50, [0.1, 0.4]
    seeds, captions = seed_embeddings(arch, split_path(args.split), 60 if args.smoke else None)
    split = len(seeds) * 4 // 5
    old = mixed_archive(seeds[:split], args.vectors, args.noise, args.seed)
    queries = query_sets(seeds, captions, args.queries, args.noise, args.seed)["gap-shifted"]
    spec = IndexSpec(kind=args.kind)
    trained, info = build_index(old, np.arange(args.vectors, dtype=np.int64), spec, seed=args.seed)
    serialized = faiss.serialize_index(trained)
    for share in args.shares:
        count = int(args.vectors * share)
        new = mixed_archive(seeds[split:], count, args.noise, args.seed + 1)
        vectors = np.concatenate([old, new])
        ids = np.arange(len(vectors), dtype=np.int64)
        appended = faiss.deserialize_index(serialized)
        appended.add_with_ids(new, ids[args.vectors :])
        appended_info = {**info, **tune(appended, args.kind, vectors, ids, queries, spec, None)}
        retrained, retrained_info = build_index(vectors, ids, spec, seed=args.seed, queries=queries)
        _, truth = faiss.knn(queries, vectors, 10, metric=faiss.METRIC_INNER_PRODUCT)
        lookup = row_lookup(vectors, ids)
        set_search_parameter(retrained, {**retrained_info, "nprobe": appended_info["nprobe"]})
        at_same = {**retrained_info, "nprobe": appended_info["nprobe"]}
        yield Result(
            benchmark="index-drift",
            params={"kind": args.kind, "old_vectors": args.vectors, "appended_share": share,
                    "nlist": info["nlist"], "new": "mixtures of seeds the old archive never had",
                    "queries": f"{len(queries)} gap-shifted", "threads": args.threads},
            metrics={
                "appended_nprobe": appended_info["nprobe"],
                "retrained_nprobe": retrained_info["nprobe"],
                "appended_recall@100": appended_info["recall"],
                "retrained_recall@100": retrained_info["recall"],
                "appended_recall@10": recall_at(search_with(appended, appended_info, queries, 10, lookup)[1], truth),
                "retrained_recall@10_same_nprobe": recall_at(search_with(retrained, at_same, queries, 10, lookup)[1],
                                                              truth),
            },
        )
