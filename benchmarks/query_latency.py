"""`/v1/search/text` latency percentiles and throughput at 1/8/32 concurrent clients, with and without
re-ranking, against real `posapl serve` processes and an index of synthetic unit vectors; and
`/v1/search/image` with a 256 px JPEG.

With several encoder runtimes (`--runtimes torch onnx`), worker counts (`--workers 1 2`) or a baseline commit
(`--baseline REF`: the same server from that commit's code, to measure one change), one server per variant runs
over the same index and the measurement windows alternate between them (torch, onnx, torch, onnx, ...), so
drift of a shared machine hits all of them alike and the ratios between variants come from the same minutes.

The image side is synthetic (random unit vectors: FAISS cost depends only on count and dimension); the
caption bank and the queries are real RSICD captions, so POS tagging, tokenisation and re-ranking profiles
see real text. The server's query cache is disabled: every request pays tagging and encoding, which is the
honest worst case. Client threads run on the same machine as the server and compete with it for the CPU.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.harness import (
    DEFAULT_SPLIT,
    WORK_DIR,
    Result,
    load_average,
    percentile,
    query_captions,
    smoke_arch,
    split_path,
)
from benchmarks.server_process import Server, free_port
from benchmarks.synthetic_store import publish_synthetic_store

STAGES = ("pos", "encode", "search", "rerank", "total")
IMAGE_STAGES = ("decode", "encode", "search", "rerank", "total")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--split", default=str(DEFAULT_SPLIT), help="annotation file for queries and caption bank")
    parser.add_argument("--arch", default="ViT-B-32", help="open_clip architecture (random weights)")
    parser.add_argument("--vectors", type=int, default=100_000, help="synthetic image vectors in the index")
    parser.add_argument("--bank", type=int, default=1000, help="real captions in the caption bank")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--duration", type=float, default=20.0, help="timed seconds per (clients, rerank) cell")
    parser.add_argument("--rerank", nargs="+", default=["none", "multivariate"])
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--torch-threads", type=int, help="server POSAPL_TORCH_THREADS (default: torch's)")
    parser.add_argument("--faiss-threads", type=int, help="server POSAPL_FAISS_THREADS (default: the service's, 1)")
    parser.add_argument("--onnx-threads", type=int, help="server POSAPL_ONNX_THREADS (default: one per core)")
    parser.add_argument("--runtimes", nargs="+", default=["torch", "onnx"], choices=["torch", "onnx", "onnx-int8"],
                        help="encoder runtimes, one server each, measured in alternating windows")
    parser.add_argument("--workers", type=int, nargs="+", default=[1], help="server worker processes (variants)")
    parser.add_argument("--index-kinds", nargs="+", default=["auto"],
                        help="image index kinds (index.vectors.INDEX_KINDS), one store each (variants): e.g. flat "
                        "sq8 for the compressed scan")
    parser.add_argument("--baseline", help="git ref whose code serves one more variant per runtime (1 worker)")
    parser.add_argument("--windows", type=int, default=2, help="alternating windows per variant and cell")
    parser.add_argument("--reuse-store", action="store_true",
                        help="serve the store a previous run with the same sizes left, instead of building it again")
    parser.add_argument("--image-clients", type=int, nargs="*", default=[1],
                        help="client counts for /v1/search/image with a 256 px JPEG (none: skip)")


def _build_store(root: Path, arch: str, vectors: int, bank: list[str], kind: str) -> str:
    """Publish one version: synthetic image vectors, the real caption bank, profiles, the image index of `kind`.
    Returns the fingerprint."""
    import numpy as np

    from index.vectors import IndexSpec
    from posapl.checkpoint import load_model
    from posapl.encode import embed_captions
    from posapl.pos import PosTagger

    model = load_model(None, "random", "rsitmd", arch).eval()
    caption_vectors = embed_captions(model, PosTagger(), bank)
    rng = np.random.default_rng(0)
    image_vectors = rng.standard_normal((vectors, model.embed_dim), dtype=np.float32)
    image_vectors /= np.linalg.norm(image_vectors, axis=1, keepdims=True)
    return publish_synthetic_store(root, arch, image_vectors, bank, caption_vectors, spec=IndexSpec(kind=kind))


@dataclass(frozen=True)
class Variant:
    """One server configuration under test: encoder runtime, worker processes, whose code (None: this one) and
    the image index kind of the store it serves."""

    runtime: str
    workers: int = 1
    code: str | None = None
    index: str = "auto"

    @property
    def label(self) -> str:
        workers = f" x{self.workers}" if self.workers != 1 else ""
        index = f" {self.index}" if self.index != "auto" else ""
        return self.runtime + workers + index + (f" @{self.code}" if self.code else "")


def checkout(ref: str, target: Path) -> Path:
    """The files of commit `ref` of this repository under `target` (git archive: no second work tree)."""
    repo = Path(__file__).resolve().parents[1]
    target.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(repo), "archive", ref], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target


def _server(
    root: Path, arch: str, port: int, log: Path, extra_env: dict[str, str], workers: int = 1, code: Path | None = None
) -> Server:
    env = {**os.environ, "POSAPL_CACHE_SIZE": "0", "HF_HUB_OFFLINE": "1", **extra_env}
    if code is not None:  # `python -m` puts the working directory first on the path: run from the checkout
        env["PYTHONPATH"] = str(code)
    command = [
        sys.executable,
        "-m",
        "posapl.cli",
        "serve",
        "--root",
        str(root),
        "--pretrained",
        "random",
        "--arch",
        arch,
        "--device",
        "cpu",
        "--port",
        str(port),
        *(["--workers", str(workers)] if workers != 1 else []),
    ]
    return Server("posapl serve", command, f"http://127.0.0.1:{port}/readyz", env, log, cwd=code)


def runtime_env(runtime: str) -> dict[str, str]:
    """Server settings that select an encoder runtime (`onnx-int8`: ONNX Runtime with the int8 text tower)."""
    if runtime == "onnx-int8":
        return {"POSAPL_ENCODER_RUNTIME": "onnx", "POSAPL_ONNX_TEXT_PRECISION": "int8"}
    return {"POSAPL_ENCODER_RUNTIME": runtime}


def jpeg_256(split: Path) -> bytes:
    """The split's first image as a 256 x 256 JPEG (quality 90): an upload of the size users send."""
    import io
    import json

    from PIL import Image

    first = json.loads(split.read_text())[0]["image"]
    with Image.open(split.parent / first) as image:
        buffer = io.BytesIO()
        image.convert("RGB").resize((256, 256), Image.Resampling.BICUBIC).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def _load(
    url: str, queries: list[str], clients: int, duration: float, rerank: str, k: int, image: bytes | None = None
) -> dict:
    """`clients` threads, each sending its next query as soon as the previous answer arrives; with `image`,
    every request is an image search with that upload instead of a text query."""
    import httpx

    counter = itertools.count()
    lock = threading.Lock()
    latencies: list[float] = []
    stage_names = IMAGE_STAGES if image is not None else STAGES
    stages: dict[str, list[float]] = {stage: [] for stage in stage_names}
    errors: list[str] = []
    stop_at = time.perf_counter() + duration

    def send(http: httpx.Client, query: str) -> httpx.Response:
        if image is not None:
            files = {"file": ("query.jpg", image, "image/jpeg")}
            return http.post("/v1/search/image", files=files, data={"k_images": str(k), "rerank": rerank})
        return http.post("/v1/search/text", json={"query": query, "k": k, "rerank": rerank})

    def client() -> None:
        with httpx.Client(base_url=url, timeout=60) as http:
            while time.perf_counter() < stop_at:
                with lock:
                    query = queries[next(counter) % len(queries)]
                began = time.perf_counter()
                try:
                    response = send(http, query)
                except httpx.HTTPError as exc:
                    errors.append(type(exc).__name__)
                    continue
                elapsed = time.perf_counter() - began
                if response.status_code != 200:
                    errors.append(str(response.status_code))
                    continue
                timings = response.json()["timings_ms"]
                with lock:
                    latencies.append(elapsed * 1000.0)
                    for stage in stage_names:
                        stages[stage].append(timings[stage])

    threads = [threading.Thread(target=client) for _ in range(clients)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - began
    return {"latencies_ms": latencies, "stages_ms": stages, "errors": errors, "wall_s": wall}


def _merge(windows: list[dict]) -> dict:
    """One runtime's alternating windows of a cell as one sample (wall time summed)."""
    stages = {stage: [v for w in windows for v in w["stages_ms"][stage]] for stage in windows[0]["stages_ms"]}
    return {
        "latencies_ms": [v for w in windows for v in w["latencies_ms"]],
        "stages_ms": stages,
        "errors": [e for w in windows for e in w["errors"]],
        "wall_s": sum(w["wall_s"] for w in windows),
        "windows": len(windows),
    }


def _cell(name: str, params: dict, measured: dict, benchmark: str = "query-latency") -> Result:
    latencies = measured["latencies_ms"]
    if not latencies:
        raise RuntimeError(f"{name}: no successful request ({len(measured['errors'])} errors)")
    stage_p50 = {f"{stage}_p50_ms": statistics.median(values) for stage, values in measured["stages_ms"].items()}
    return Result(
        benchmark=benchmark,
        params=params,
        metrics={
            "p50_ms": percentile(latencies, 50),
            "p95_ms": percentile(latencies, 95),
            "p99_ms": percentile(latencies, 99),
            "req_per_s": len(latencies) / measured["wall_s"],
            "errors": len(measured["errors"]),
            **{key: value for key, value in stage_p50.items() if key != "total_p50_ms"},
        },
        raw={**measured, "load_avg_after": load_average()},
        notes=f"{len(latencies)} requests; client-side latency; per-stage medians from timings_ms",
    )


def run(args: argparse.Namespace) -> list[Result]:
    from index.vectors import INDEX_KINDS  # imports faiss: not at parser-building time (benchmarks.cli)

    unknown = sorted(set(args.index_kinds) - set(INDEX_KINDS))
    if unknown:
        raise ValueError(f"--index-kinds: unknown {', '.join(unknown)}; choose from {', '.join(INDEX_KINDS)}")
    arch = str(smoke_arch()) if args.smoke else args.arch
    vectors = 2000 if args.smoke else args.vectors
    bank_size = 100 if args.smoke else args.bank
    clients_list = [1, 4] if args.smoke else args.clients
    duration = 2.0 if args.smoke else args.duration
    split = split_path(args.split)
    print(f"load average before: {load_average()}", flush=True)

    captions = query_captions(split, bank_size + (200 if args.smoke else 2000))
    bank, queries = captions[:bank_size], captions[bank_size:]
    work = WORK_DIR / "query-latency" / f"{'smoke' if args.smoke else Path(arch).stem}-{vectors}-{bank_size}"
    stores = {kind: work / ("index" if kind == "auto" else f"index-{kind}") for kind in args.index_kinds}
    for kind, root in stores.items():
        if args.reuse_store and (root / "CURRENT").is_file():
            print(f"reusing the {kind} store under {root} (built from the same split, sizes and seed)", flush=True)
            continue
        if root.exists():
            shutil.rmtree(root)
        root.parent.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        _build_store(root, arch, vectors, bank, kind)
        took = time.perf_counter() - started
        print(f"{kind} index of {vectors} vectors + {bank_size} captions built in {took:.0f} s", flush=True)

    runtimes = ["torch", "onnx"] if args.smoke else args.runtimes
    variants = [Variant(runtime, workers, index=kind)
                for kind in args.index_kinds for runtime in runtimes for workers in args.workers]
    code_dirs: dict[str, Path] = {}
    if args.baseline:
        code_dirs[args.baseline] = checkout(args.baseline, work / f"baseline-{args.baseline}")
        variants += [Variant(runtime, 1, args.baseline, args.index_kinds[0]) for runtime in runtimes]
    threads = {"torch_threads": args.torch_threads, "faiss_threads": args.faiss_threads,
               "onnx_threads": args.onnx_threads}
    extra_env = {f"POSAPL_{name.upper()}": str(value) for name, value in threads.items() if value is not None}
    servers: dict[Variant, tuple[Server, str]] = {}
    results = []
    labels = "+".join(variant.label for variant in variants)
    try:
        for variant in variants:  # one at a time: a first ONNX export should not compete with another server
            port = free_port()
            log = work / f"server-{variant.label.replace(' ', '-')}.log"
            server = _server(stores[variant.index], arch, port, log, {**extra_env, **runtime_env(variant.runtime)},
                             variant.workers, code_dirs.get(variant.code or ""))
            servers[variant] = (server, f"http://127.0.0.1:{port}")
            server.wait_ready()
            server.wait_runtime(variant.runtime)
            _load(servers[variant][1], queries, variant.workers, 1.0 if args.smoke else 5.0, "none", args.k)  # warm
        windows = 1 if args.smoke else args.windows
        cells = [(rerank, clients, None) for rerank in args.rerank for clients in clients_list]
        image = jpeg_256(split) if args.image_clients else None
        if image is not None:
            cells += [("none", clients, image) for clients in ([1] if args.smoke else args.image_clients)]
        for rerank, clients, upload in cells:
            kind = "image" if upload is not None else "text"
            print(f"load average {load_average()}; {kind}, {clients} clients, rerank={rerank}", flush=True)
            measured: dict[Variant, list[dict]] = {variant: [] for variant in variants}
            for _ in range(windows):
                for variant in variants:
                    url = servers[variant][1]
                    measured[variant].append(_load(url, queries, clients, duration / windows, rerank, args.k, upload))
            merged = {variant: _merge(samples) for variant, samples in measured.items()}
            for variant in variants:
                params = {
                    "arch": "smoke" if args.smoke else arch,
                    "weights": "random",
                    "vectors": vectors,
                    "bank": bank_size,
                    "query": "image 256px JPEG" if upload is not None else "text",
                    "clients": clients,
                    "rerank": rerank,
                    "k": args.k,
                    "duration_s": duration,
                    "cache": "off",
                    "runtime": variant.runtime,
                    "workers": variant.workers,
                    "code": variant.code or "this commit",
                    "index": variant.index,
                    "alternating": labels,
                    **{name: value or "default" for name, value in threads.items()},
                }
                name = f"{kind} {variant.label} {clients} clients {rerank}"
                result = _cell(name, params, merged[variant],
                               "image-latency" if upload is not None else "query-latency")
                if variant != variants[0]:  # ratios against the first variant, from the same alternating minutes
                    first = merged[variants[0]]["latencies_ms"]
                    result.metrics[f"p50_vs_{variants[0].label.replace(' ', '_')}"] = percentile(
                        merged[variant]["latencies_ms"], 50) / percentile(first, 50)
                results.append(result)
                print(f"  {variant.label}: {result.metrics}", flush=True)
    finally:
        for server, _ in servers.values():
            server.stop()
    return results
