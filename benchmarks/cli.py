"""`posapl bench <name>` and `python -m benchmarks <name>`.

Each benchmark is a module in this package with two functions:

    add_arguments(parser: argparse.ArgumentParser) -> None    its own flags (sizes, repeats, paths)
    run(args: argparse.Namespace) -> Iterable[harness.Result] measure; `args.smoke` asks for tiny sizes

Each result is recorded as soon as `run` hands it over, so a generator keeps the rows of a long run
that is cut short.

The CLI adds the common flags (`--smoke`, `--results-dir`) and records every returned result, so a benchmark
module never writes files or tables itself. Modules are imported to build the parser, so they keep heavy
imports (torch, faiss, the service) inside `run`; a module that fails to import is listed as unavailable
instead of breaking every other benchmark.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
from pathlib import Path

from benchmarks.harness import record

BENCHMARKS: dict[str, tuple[str, str]] = {
    "quality": ("benchmarks.quality", "R@1/5/10 both directions and mR, zero-shot vs checkpoint, each re-ranking"),
    "text-encoding": ("benchmarks.text_encoding", "query text encoding: truncated vs 77-token, PyTorch vs ONNX"),
    "rerank-speed": ("benchmarks.rerank_speed", "cost of the re-ranking methods"),
    "rerank-agreement": ("benchmarks.rerank_agreement", "online vs offline re-ranking top-10 against profile size"),
    "index-throughput": ("benchmarks.index_throughput", "images/s of `posapl index build`"),
    "scene-indexing": ("benchmarks.scene_indexing", "tiles/s and peak RSS indexing one 20,000 px 4-band uint16 scene"),
    "scene-update": ("benchmarks.scene_update", "nightly update after a 3% rewrite of one scene vs embedding it whole"),
    "query-latency": ("benchmarks.query_latency", "/v1/search/text latency and throughput at 1/8/32 clients"),
    "filtered-search": (
        "benchmarks.filtered_search",
        "exact filters: subset vs ID-selector crossover; filtered vs unfiltered latency at 100k items",
    ),
    "scale": (
        "benchmarks.scale",
        "1M embedding-like vectors: exact vs each index kind as served (mmap, refine), recall@10 per query set",
    ),
    "index-drift": ("benchmarks.index_drift", "IVF nightly append vs retraining: nprobe, recall as new scenes come"),
    "peer": ("benchmarks.peer_clip_retrieval", "same queries against clip-retrieval's `clip back`, alternating"),
    "ray-overhead": ("benchmarks.ray_overhead", "images/s embedding through Ray Data vs in-process, same CPUs"),
    "soak": ("benchmarks.soak", "minutes of mixed load with index updates and swaps: errors, p50/p95, server RSS"),
    "runtime-agreement": (
        "benchmarks.runtime_agreement",
        "int8 (dynamic; static QDQ, which records its gate) vs fp32 ONNX towers: top-10 overlap, cosine, mR",
    ),
    "onnx-session": ("benchmarks.onnx_session", "ONNX Runtime session settings, text and image tower, batch 1"),
    "pos-tagging": ("benchmarks.pos_tagging", "POS tagging ms/query: full vs previous vs served spaCy pipeline"),
    "feedback": (
        "benchmarks.feedback",
        "relevance feedback (rocchio, probe) vs the static similar list: class images found among 60 reviewed",
    ),
    "detect": ("benchmarks.detect", "detection at 1M items in-process: threshold search (by rank) and dissolve"),
}


def _run(args: argparse.Namespace) -> int:
    try:
        module = importlib.import_module(args.bench_module)
    except ImportError as exc:
        print(f"benchmark {args.bench_name!r} is unavailable: {exc}", file=sys.stderr)
        return 2
    results_dir = args.results_dir
    if args.smoke and results_dir is None:
        results_dir = Path(tempfile.mkdtemp(prefix="posapl-bench-smoke-"))
    try:
        for result in module.run(args):
            path = record(result, smoke=args.smoke, results_dir=results_dir)
            print(f"[{result.benchmark}] {result.metrics}  -> {path}")
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"benchmark {args.bench_name!r} failed: {exc}", file=sys.stderr)
        return 1
    return 0


def add_benchmark_parsers(subparsers: argparse._SubParsersAction) -> None:
    """One sub-command per benchmark whose module imports; the others are listed as unavailable."""
    for name, (module_name, help_text) in BENCHMARKS.items():
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            sub = subparsers.add_parser(name, help=f"(unavailable: {exc})")
            sub.set_defaults(func=_run, bench_name=name, bench_module=module_name, smoke=False, results_dir=None)
            continue
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--smoke", action="store_true", help="tiny sizes, seconds; results go to a temp dir")
        sub.add_argument(
            "--results-dir", type=Path, default=None, help="where the JSON result goes (default benchmarks/results)"
        )
        module.add_arguments(sub)
        sub.set_defaults(func=_run, bench_name=name, bench_module=module_name)


def register(subparsers: argparse._SubParsersAction) -> None:
    bench = subparsers.add_parser("bench", help="run a benchmark and record it in benchmarks/RESULTS.md")
    add_benchmark_parsers(bench.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description="POSAPL benchmarks")
    add_benchmark_parsers(parser.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK"))
    args = parser.parse_args(argv)
    return int(args.func(args))
