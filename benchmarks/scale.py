"""Archive scale: exact search vs each index kind on embedding-like vectors, as a reader serves them.

The archive is drawn from the model's own embeddings of the RSICD test images (benchmarks.embedding_like:
mixtures of two image embeddings plus noise) straight into a .npy file, and every index is built from that
memory map a chunk at a time, as a real build reads its vectors. Recall@10 against exact search is reported
for three query sets (benchmarks.embedding_like.query_sets): held-out image-like vectors plus noise,
gap-shifted ones (what a trained CLIP's text queries look like) and the random model's captions (the worst
case). The index is tuned at build time on archive vectors plus noise (`--tune-on archive`, what `auto` does
without a caption bank) or on the captions' other half.

Each index is written, then read back as the service reads it (index.image_search: memory-mapped codes, exact
re-scoring from the memory-mapped vector file), and measured: private RAM it adds (RssAnon), page cache it
touched (RssFile), disk, search-alone latency one query per call on one FAISS thread, build time and the peak
RAM the build added. A projection row scales the measured per-item costs to larger archives.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from benchmarks.embedding_like import fill_mixed, nearest_cosine, query_sets, seed_embeddings
from benchmarks.harness import DEFAULT_SPLIT, WORK_DIR, Result, faiss_threads, percentile, smoke_arch, split_path

PROJECT_TO = (10_000_000, 100_000_000, 1_000_000_000)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--vectors", type=int, default=1_000_000)
    parser.add_argument("--split", default=str(DEFAULT_SPLIT), help="annotation file: seed images and queries")
    parser.add_argument("--arch", default="ViT-B-32", help="open_clip architecture (random weights)")
    parser.add_argument("--noise", type=float, default=0.5, help="noise norm relative to the seeds' spread")
    parser.add_argument("--kinds", nargs="+", default=["auto", "sq8", "ivf-sq8", "ivf-pq"],
                        help="index kinds to compare with exact search")
    parser.add_argument("--tune-on", choices=["archive", "captions"], default="archive")
    parser.add_argument("--queries", type=int, default=1000, help="queries per set for recall")
    parser.add_argument("--single-queries", type=int, default=200, help="one-at-a-time queries for latency")
    parser.add_argument("--threads", type=int, default=1, help="FAISS threads while searching (the service uses 1)")
    parser.add_argument("--build-threads", type=int, default=os.cpu_count() or 1,
                        help="FAISS threads while building and computing exact truth (the indexer uses all cores)")
    parser.add_argument("--nlist", type=int, help="IVF lists (default: about 4·sqrt(n))")
    parser.add_argument("--pq-m", type=int, help="ivf-pq bytes per vector (default: dim / 8)")
    parser.add_argument("--refine-factor", type=int, help="compressed kinds: short list = k' x this")
    parser.add_argument("--nprobes", type=int, nargs="+",
                        help="IVF kinds: search these nprobe values (one row each) instead of tuning at build")
    parser.add_argument("--exact-queries", type=int, default=50,
                        help="one-at-a-time queries for the exact-scan row (each reads every vector)")
    parser.add_argument("--refine-flat", action="store_true",
                        help="also measure sq8 with FAISS's IndexRefineFlat (float vectors in RAM)")
    parser.add_argument("--work", type=Path, default=WORK_DIR / "scale", help="archive and index files go here")
    parser.add_argument("--seed", type=int, default=0)


def rss_mib() -> dict[str, float]:
    """This process's private (anonymous) and file-backed resident memory."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return {key: int(fields[key].split()[0]) / 1024 for key in ("RssAnon", "RssFile")}


class PeakRss:
    """Highest RssAnon while the block runs, sampled every 20 ms by a thread (a build's own peak)."""

    def __enter__(self) -> PeakRss:
        self.start, self.peak, self._stop = rss_mib()["RssAnon"], 0.0, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, rss_mib()["RssAnon"])

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mib()["RssAnon"])

    @property
    def added_mib(self) -> float:
        return self.peak - self.start


def _single_query_ms(search, queries: np.ndarray, count: int) -> dict[str, float]:
    samples = []
    for row in queries[:count]:
        start = time.perf_counter()
        search(row[None, :])
        samples.append((time.perf_counter() - start) * 1e3)
    return {"p50": percentile(samples, 50), "p95": percentile(samples, 95)}


def run(args: argparse.Namespace) -> Iterator[Result]:
    """Yields each row as soon as it is measured, so a long run that is cut short keeps what it finished.
    Building and exact truth use --build-threads; each measured search runs on --threads."""
    with faiss_threads(args.build_threads):
        yield from _run(args)


def _archive(args: argparse.Namespace, seeds: np.ndarray) -> tuple[Path, Path, float]:
    """(ids file, vectors file, seconds): the archive written a block at a time into a memory-mapped .npy."""
    from numpy.lib.format import open_memmap

    args.work.mkdir(parents=True, exist_ok=True)
    stem = args.work / f"archive-{args.vectors}-{args.seed}-{len(seeds)}-{args.noise}"
    ids_path, vectors_path = Path(f"{stem}-ids.npy"), Path(f"{stem}-vectors.npy")
    began = time.perf_counter()
    if not vectors_path.is_file():
        out = open_memmap(f"{vectors_path}.tmp.npy", mode="w+", dtype=np.float32, shape=(args.vectors, seeds.shape[1]))
        fill_mixed(out, seeds, args.noise, args.seed)
        out.flush()
        del out
        Path(f"{vectors_path}.tmp.npy").rename(vectors_path)
        np.save(ids_path, np.arange(args.vectors, dtype=np.int64))
    return ids_path, vectors_path, time.perf_counter() - began


def _run(args: argparse.Namespace) -> Iterator[Result]:
    import faiss

    from index.image_search import ImageSearch, read_faiss
    from index.vector_file import VectorFile
    from index.vectors import IndexSpec, build_index, recall_at, set_search_parameter

    arch = str(smoke_arch()) if args.smoke else args.arch
    if args.smoke:
        args.vectors, args.queries, args.single_queries = 20_000, 100, 20
        args.work = Path(args.results_dir or WORK_DIR) / "scale-smoke"
    if args.vectors < 1 or args.queries < 1:
        raise ValueError("--vectors and --queries must be positive")
    seeds, captions = seed_embeddings(arch, split_path(args.split), 60 if args.smoke else None)
    order = np.random.default_rng(args.seed).permutation(len(captions))
    tune_captions, test_captions = captions[order[: len(order) // 2]], captions[order[len(order) // 2 :]]
    sets = query_sets(seeds, test_captions, args.queries, args.noise, args.seed)
    ids_path, vectors_path, generate_s = _archive(args, seeds)
    stored = VectorFile.open(ids_path, vectors_path)
    base, ids = stored.vectors, stored.ids
    data = {
        "vectors": args.vectors,
        "dim": int(base.shape[1]),
        "data": f"mixtures of 2 of {len(seeds)} {'smoke' if args.smoke else arch} RSICD image embeddings "
        f"(random weights) + noise {args.noise}",
        "queries": " + ".join(f"{len(q)} {name}" for name, q in sets.items()),
        "tuned_on": args.tune_on,
        "threads": args.threads,
        "build_threads": args.build_threads,
    }
    truth = {name: faiss.knn(q, base, 10, metric=faiss.METRIC_INNER_PRODUCT)[1] for name, q in sets.items()}
    latency_queries = sets["gap-shifted"]
    with faiss_threads(args.threads):
        exact = _single_query_ms(lambda q: faiss.knn(q, base, 10, metric=faiss.METRIC_INNER_PRODUCT),
                                 latency_queries, min(args.single_queries, args.exact_queries))
    facts = {"nearest_cosine_p50": nearest_cosine(np.asarray(base[:100_000]))}
    yield Result(
        benchmark="scale",
        params={**data, "index": "flat (exact, numpy memory map)"},
        metrics={"search_ms_p50": exact["p50"], "search_ms_p95": exact["p95"], "vector_file_MiB":
                 vectors_path.stat().st_size / 2**20, **facts},
        raw={"generate_s": generate_s},
    )
    measured = []
    for kind in args.kinds:
        spec = IndexSpec(kind=kind, flat_max=1000 if args.smoke else IndexSpec.flat_max, nlist=args.nlist,
                         pq_m=args.pq_m, refine_factor=args.refine_factor,
                         nprobe=args.nprobes[0] if args.nprobes else None)
        began = time.perf_counter()
        with PeakRss() as peak:
            index, info = build_index(base, ids, spec, queries=tune_captions if args.tune_on == "captions" else None)
        build_s = time.perf_counter() - began
        index_path = args.work / f"index-{args.vectors}-{kind}.faiss"
        faiss.write_index(index, str(index_path))
        del index
        before = rss_mib()
        # The reader maps the vector file afresh, as a server does: pages the exact truth already mapped into
        # `stored` would otherwise not count as touched by the search.
        reader_vectors = VectorFile.open(ids_path, vectors_path)
        loaded = read_faiss(index_path, info["kind"])
        loaded_rss = rss_mib()
        settings = [{}] if not (args.nprobes and info["kind"].startswith("ivf")) else [
            {"nprobe": min(value, info["nlist"])} for value in args.nprobes
        ]
        for setting in settings:
            served = {**info, **setting}
            set_search_parameter(loaded, served)
            search = ImageSearch(loaded, reader_vectors, served)
            with faiss_threads(args.threads):
                recalls = {f"recall@10_{name}": recall_at(search.search(q, 10)[1], truth[name])
                           for name, q in sets.items()}
                single = _single_query_ms(lambda q, search=search: search.search(q, 10), latency_queries,
                                          args.single_queries)
            after = rss_mib()
            shown = {k: v for k, v in served.items() if k in ("kind", "nlist", "nprobe", "pq_m", "refine_factor")}
            row = {
                "search_ms_p50": single["p50"],
                "search_ms_p95": single["p95"],
                **recalls,
                "build_recall@100": info.get("recall", 1.0),
                "build_s": build_s,
                "build_peak_added_MiB": peak.added_mib,
                "index_file_MiB": index_path.stat().st_size / 2**20,
                "index_bytes_per_item": index_path.stat().st_size / args.vectors,
                "loaded_private_MiB": loaded_rss["RssAnon"] - before["RssAnon"],
                "page_cache_touched_MiB": after["RssFile"] - before["RssFile"],
                "resident_added_MiB": after["RssAnon"] + after["RssFile"] - before["RssAnon"] - before["RssFile"],
            }
            measured.append((f"{info['kind']}" + (f"-nprobe{setting['nprobe']}" if setting else ""), row))
            yield Result(
                benchmark="scale",
                params={**data, "index": f"{kind} -> {info['kind']}", **shown},
                metrics=row,
                raw={"index": info},
                notes="search alone (codes, then exact re-scoring from the memory-mapped vector file for compressed "
                "kinds); build_recall is what the build measured on its tuning queries and recorded in the "
                "manifest; resident_added is the private memory and page cache this index added to the process",
            )
        if args.refine_flat and info["kind"] == "sq8":
            yield _refine_flat_row(base, info, sets, truth, latency_queries, args, data)
        del search, loaded, reader_vectors
    yield _projection(measured, args.vectors, int(base.shape[1]), data)


def _refine_flat_row(base, info, sets, truth, latency_queries, args, data) -> Result:
    """FAISS's documented route for comparison: IndexRefineFlat keeps a second, in-RAM copy of every float."""
    import faiss

    from index.vectors import recall_at

    before = rss_mib()
    inner = faiss.IndexScalarQuantizer(base.shape[1], faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
    inner.train(np.asarray(base[: min(len(base), 65_536)]))
    refined = faiss.IndexRefineFlat(inner)
    for start in range(0, len(base), 100_000):
        refined.add(np.ascontiguousarray(base[start : start + 100_000]))
    refined.k_factor = float(info["refine_factor"])
    added = rss_mib()["RssAnon"] - before["RssAnon"]
    recalls = {f"recall@10_{name}": recall_at(refined.search(q, 10)[1], truth[name]) for name, q in sets.items()}
    with faiss_threads(args.threads):
        single = _single_query_ms(lambda q: refined.search(q, 10), latency_queries, args.single_queries)
    return Result(
        benchmark="scale",
        params={**data, "index": "sq8 + faiss.IndexRefineFlat (floats in RAM)", "refine_factor": info["refine_factor"]},
        metrics={"search_ms_p50": single["p50"], "search_ms_p95": single["p95"], **recalls,
                 "loaded_private_MiB": added},
    )


def _projection(measured: list[tuple[str, dict]], count: int, dim: int, data: dict) -> Result:
    """Per-item bytes times N for RAM (codes resident) and disk (codes + float32 vector file); latency scaled
    by sqrt(N / n) for IVF kinds (about 4·sqrt(N) lists at a fixed nprobe: the coarse step and the probed lists
    both grow as sqrt(N)) and by N / n for full scans (flat, sq8). Refine reads k·factor rows per query from
    disk at any N. A projection, not a measurement."""
    metrics: dict[str, float] = {}
    for kind, row in measured:
        per_item = row["index_bytes_per_item"]
        for target in PROJECT_TO:
            label = f"{kind}_{target // 1_000_000}M"
            grow = np.sqrt(target / count) if kind.startswith("ivf") else target / count
            metrics[f"{label}_ram_GiB"] = per_item * target / 2**30
            metrics[f"{label}_disk_GiB"] = (per_item + dim * 4) * target / 2**30
            metrics[f"{label}_search_ms"] = row["search_ms_p50"] * float(grow)
    return Result(benchmark="scale-projection", params={**data, "measured_at": count}, metrics=metrics,
                  notes=_projection.__doc__.replace("\n", " ").strip())
