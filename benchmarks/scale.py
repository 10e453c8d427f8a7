"""Archive scale: exact search vs each index kind on embedding-like vectors, as a reader serves them.

The archive is drawn from the model's own embeddings of the RSICD test images (benchmarks.embedding_like:
mixtures of two image embeddings plus noise) straight into a .npy file, and every index is built from that
memory map a chunk at a time, as a real build reads its vectors. Recall@10 against exact search is reported
for three query sets (benchmarks.embedding_like.query_sets): held-out image-like vectors plus noise,
gap-shifted ones (what a trained CLIP's text queries look like) and the random model's captions (the worst
case). The index is tuned at build time on archive vectors plus noise (`--tune-on archive`, what `auto` does
without a caption bank) or on the captions' other half.

Each index is written, then read back in a fresh process as the service reads it (index.image_search:
memory-mapped codes, exact re-scoring from the memory-mapped vector file), and measured there: that
process's private memory (RssAnon) and file-backed pages (RssFile: shared page cache), recall, and search-alone
latency one query per call on one FAISS thread; beside them disk, build time and the peak RAM the build added.
`--nprobes` and `--refine-factors` search one built index with several settings (a row each), and
`--reuse-index` searches the index an earlier run wrote; exact truth is kept beside the archive. A projection
row scales the measured per-item costs to larger archives.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
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
    parser.add_argument("--refine-factors", type=int, nargs="+",
                        help="compressed kinds: short list = k' x this; the first is built with, each one searched")
    parser.add_argument("--reuse-index", action="store_true",
                        help="search the index file (and its build record) a previous run of the same sizes wrote")
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


def _exact_truth(args: argparse.Namespace, ids_path: Path, base: np.ndarray, sets: dict[str, np.ndarray]
                 ) -> dict[str, np.ndarray]:
    """Exact top 10 of each query set, kept beside the archive (at 10M each set is a scan of 20 GB)."""
    import faiss

    cache = Path(str(ids_path).replace("-ids.npy", f"-truth-{args.queries}-{args.seed}.npz"))
    if cache.is_file():
        with np.load(cache) as data:
            if set(data.files) == set(sets):
                return {name: data[name] for name in sets}
    truth = {name: faiss.knn(q, base, 10, metric=faiss.METRIC_INNER_PRODUCT)[1] for name, q in sets.items()}
    np.savez(cache, **truth)
    return truth


def _reader_rows(
    index_path: Path, ids_path: Path, vectors_path: Path, info: dict, settings: list[dict], sets: dict[str, np.ndarray],
    truth: dict[str, np.ndarray], single_queries: int, threads: int,
) -> list[dict[str, float]]:
    """Runs in a fresh process, as a server reads a version: the index and the vector file mapped, then each
    search setting's recall@10 per query set and one-at-a-time latency, and the process's memory after it."""
    import faiss

    from index.image_search import ImageSearch, read_faiss
    from index.vector_file import VectorFile
    from index.vectors import recall_at, set_search_parameter

    faiss.omp_set_num_threads(threads)
    before = rss_mib()
    vectors = VectorFile.open(ids_path, vectors_path)
    loaded = read_faiss(index_path, info["kind"])
    loaded_rss = rss_mib()
    rows = []
    for setting in settings:
        served = {**info, **setting}
        set_search_parameter(loaded, served)
        search = ImageSearch(loaded, vectors, served)
        recalls = {f"recall@10_{name}": recall_at(search.search(q, 10)[1], truth[name]) for name, q in sets.items()}
        single = _single_query_ms(lambda q, search=search: search.search(q, 10), sets["gap-shifted"], single_queries)
        after = rss_mib()
        rows.append({
            "search_ms_p50": single["p50"],
            "search_ms_p95": single["p95"],
            **recalls,
            "loaded_private_MiB": loaded_rss["RssAnon"] - before["RssAnon"],
            "reader_private_MiB": after["RssAnon"],
            "reader_file_backed_MiB": after["RssFile"],
        })
    return rows


def _run(args: argparse.Namespace) -> Iterator[Result]:
    import faiss

    from index.vector_file import VectorFile
    from index.vectors import COMPRESSED_KINDS, IndexSpec, build_index

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
    truth = _exact_truth(args, ids_path, base, sets)
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
    factors = args.refine_factors or [None]
    for kind in args.kinds:
        index_path = args.work / f"index-{args.vectors}-{kind}.faiss"
        record = index_path.with_suffix(".json")
        built = json.loads(record.read_text()) if args.reuse_index and record.is_file() else None
        asked = {"nlist": args.nlist, "pq_m": args.pq_m}
        same = built and index_path.is_file() and all(v is None or built["info"].get(k) == v for k, v in asked.items())
        if not same:  # else search the index an earlier run built with these parameters
            spec = IndexSpec(kind=kind, flat_max=1000 if args.smoke else IndexSpec.flat_max, nlist=args.nlist,
                             pq_m=args.pq_m, refine_factor=factors[0],
                             nprobe=args.nprobes[0] if args.nprobes else None)
            began = time.perf_counter()
            with PeakRss() as peak:
                tune_on = tune_captions if args.tune_on == "captions" else None
                index, info = build_index(base, ids, spec, queries=tune_on)
            built = {"info": info, "build_s": time.perf_counter() - began, "build_peak_added_MiB": peak.added_mib}
            faiss.write_index(index, str(index_path))
            record.write_text(json.dumps(built, default=float))
            del index
        info = built["info"]
        searched = [{}]
        if info["kind"].startswith("ivf") and args.nprobes:
            searched = [{"nprobe": min(value, info["nlist"])} for value in args.nprobes]
        if info["kind"] in COMPRESSED_KINDS and args.refine_factors:
            searched = [{**one, "refine_factor": factor} for one in searched for factor in args.refine_factors]
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as reader:
            rows = reader.submit(_reader_rows, index_path, ids_path, vectors_path, info, searched, sets, truth,
                                 args.single_queries, args.threads).result()
        for setting, row in zip(searched, rows, strict=True):
            served = {**info, **setting}
            shown = {k: v for k, v in served.items() if k in ("kind", "nlist", "nprobe", "pq_m", "refine_factor")}
            row.update({
                "build_recall@100": info.get("recall", 1.0),
                "build_s": built["build_s"],
                "build_peak_added_MiB": built["build_peak_added_MiB"],
                "index_file_MiB": index_path.stat().st_size / 2**20,
                "index_bytes_per_item": index_path.stat().st_size / args.vectors,
            })
            label = "-".join([info["kind"], *(f"{name}{value}" for name, value in setting.items())])
            measured.append((label, row))
            yield Result(
                benchmark="scale",
                params={**data, "index": f"{kind} -> {info['kind']}", **shown},
                metrics=row,
                raw={"index": info},
                notes="search alone (codes, then exact re-scoring from the memory-mapped vector file for compressed "
                "kinds) in a fresh reader process; reader_private is that process's RssAnon (interpreter and "
                "libraries included), reader_file_backed its RssFile (shared, reclaimable page cache: mapped "
                "codes and vector rows, with the kernel's fault-around of up to 64 KiB per read); build_recall "
                "is what the build measured on its tuning queries and recorded in the manifest",
            )
        if args.refine_flat and info["kind"] == "sq8":
            yield _refine_flat_row(base, info, sets, truth, latency_queries, args, data)
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
