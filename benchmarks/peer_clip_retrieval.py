"""Peer comparison: our `/v1/search/text` against clip-retrieval's `clip back` `/knn-service`.

Both servers run on this machine at the same time over the same number of synthetic vectors, with the
same OpenCLIP ViT-B/32 architecture (random weights: the cost does not depend on the weight values) and
the same real query texts. Each measurement window runs one server only, the servers alternate window by
window (peer, ours, peer, ours, ...), so slow drift of a shared machine hits both; the table reports the
ratios. Our query cache is disabled, because the peer has none and a replayed query set would otherwise
measure the cache.

clip-retrieval pins older numpy/open_clip/faiss than this project, so it lives in its own virtualenv under
`benchmarks/work/` (see benchmarks/README.md); this module only talks to it through processes and HTTP.
A second measurement runs `clip inference` and `posapl index build` alternately on the same image folder.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.harness import (
    DEFAULT_SPLIT,
    SHARED_DATA,
    WORK_DIR,
    Result,
    percentile,
    query_captions,
    split_path,
)
from benchmarks.server_process import Server, free_port
from benchmarks.synthetic_store import publish_synthetic_store

PEER_VENV = WORK_DIR / "peer-venv"
PEER_WORK = WORK_DIR / "peer"
PEER_INDEX_NAME = "bench"
# A working set for Python 3.11: clip-retrieval caps numpy<2 and open_clip<3; torchvision's compiled ops
# need the PyPI torch build it was made for; clip-anytorch still imports pkg_resources (setuptools<81).
PEER_REQUIREMENTS = "clip-retrieval==2.45.0 torch==2.15.0 torchvision==0.29.2 'numpy<2' 'setuptools<81'"

# Run with the peer venv's python: random ViT-B/32 weights in the file format open_clip 2.x loads.
_SAVE_WEIGHTS = """
import sys, torch, open_clip
torch.manual_seed(0)
model = open_clip.create_model(sys.argv[1], pretrained=None)
torch.save({"state_dict": model.state_dict()}, sys.argv[2])
"""

# Run with the peer venv's python: the index folder layout `clip back` reads (image.index + metadata/*.parquet).
_WRITE_PEER_INDEX = """
import sys, numpy as np, pandas as pd, faiss, os
vectors = np.load(sys.argv[1])
folder = sys.argv[2]
os.makedirs(folder + "/metadata", exist_ok=True)
index = faiss.IndexFlatIP(vectors.shape[1])
index.add(vectors)
faiss.write_index(index, folder + "/image.index")
ids = np.arange(len(vectors))
pd.DataFrame({"image_path": [f"synthetic/{i:07d}.jpg" for i in ids], "caption": [""] * len(ids)}).to_parquet(
    folder + "/metadata/metadata_0.parquet")
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--peer-venv", type=Path, default=PEER_VENV, help="virtualenv with clip-retrieval")
    parser.add_argument("--vectors", type=int, default=100_000, help="index size of both servers")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--window-s", type=float, default=15.0, help="length of one measurement window")
    parser.add_argument("--rounds", type=int, default=2, help="windows per server and client count")
    parser.add_argument("--queries", type=int, default=2000, help="distinct real query captions")
    parser.add_argument("--split", default=str(DEFAULT_SPLIT))
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--rerank", default="none", choices=["none", "multivariate", "reciprocal"],
                        help="our re-ranking (the peer has none, so 'none' compares equal work)")
    parser.add_argument("--arch", default="ViT-B-32")
    parser.add_argument("--runtime", default="onnx", choices=["torch", "onnx", "onnx-int8"],
                        help="our encoder runtime (measuring starts once it serves)")
    parser.add_argument("--images", type=Path, default=SHARED_DATA / "rsicd" / "test",
                        help="image folder for the indexing comparison")
    parser.add_argument("--skip-serving", action="store_true")
    parser.add_argument("--skip-indexing", action="store_true")
    parser.add_argument("--index-rounds", type=int, default=2)
    parser.add_argument("--index-limit", type=int, default=0, help="index only the first N images (0 = all)")


def write_synthetic_store(root: Path, vectors, arch: str, captions: int = 1000) -> None:
    """Our store over the peer's vectors, with a small synthetic caption bank so re-ranking profiles exist."""
    import numpy as np

    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    rng = np.random.default_rng(1)
    caption_vectors = rng.standard_normal((captions, vectors.shape[1]), dtype=np.float32)
    caption_vectors /= np.linalg.norm(caption_vectors, axis=1, keepdims=True)
    texts = [f"synthetic caption {i}" for i in range(captions)]
    publish_synthetic_store(root, arch, vectors, texts, caption_vectors)


def _peer_python(venv: Path) -> Path:
    python = venv / "bin" / "python"
    if not (venv / "bin" / "clip-retrieval").exists():
        raise RuntimeError(
            f"clip-retrieval is not installed in {venv}; set it up as benchmarks/README.md says "
            f"(python3.11 -m venv {venv} && {venv}/bin/pip install {PEER_REQUIREMENTS})"
        )
    return python


def _peer_weights(python: Path, arch: str, work: Path) -> Path:
    path = work / f"{arch}-random.pt"
    if not path.exists():
        subprocess.run([str(python), "-c", _SAVE_WEIGHTS, arch, str(path)], check=True)
    return path


def _start_peer(python: Path, weights: Path, folder: Path, work: Path, arch: str) -> tuple[Server, str]:
    port = free_port()
    paths = work / "indices_paths.json"
    paths.write_text(json.dumps({PEER_INDEX_NAME: str(folder)}))
    command = [
        str(python.parent / "clip-retrieval"), "back", "--port", str(port), "--indices_paths", str(paths),
        "--clip_model", f"open_clip:{arch}/{weights}", "--enable_mclip_option", "False", "--use_jit", "False",
        "--provide_aesthetic_embeddings", "False", "--provide_safety_model", "False",
        "--provide_violence_detector", "False", "--columns_to_return", '["image_path", "caption"]',
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    server = Server("clip back", command, f"http://127.0.0.1:{port}/indices-list", env, work / "peer-server.log")
    return server, f"http://127.0.0.1:{port}/knn-service"


def _start_ours(root: Path, work: Path, arch: str, runtime: str) -> tuple[Server, str]:
    from benchmarks.query_latency import runtime_env

    port = free_port()
    env = {
        **os.environ, "POSAPL_INDEX_ROOT": str(root), "POSAPL_PRETRAINED": "random", "POSAPL_ARCH": arch,
        "POSAPL_PORT": str(port), "POSAPL_HOST": "127.0.0.1", "POSAPL_CACHE_SIZE": "0",
        "POSAPL_RELOAD_POLL_S": "3600", "HF_HUB_OFFLINE": "1", **runtime_env(runtime),
    }
    command = [sys.executable, "-m", "posapl.cli", "serve"]
    server = Server("posapl serve", command, f"http://127.0.0.1:{port}/readyz", env, work / "ours-server.log")
    return server, f"http://127.0.0.1:{port}/v1/search/text"


def _payload(system: str, query: str, k: int, rerank: str) -> dict:
    if system == "peer":
        return {"text": query, "modality": "image", "num_images": k, "num_result_ids": k,
                "indice_name": PEER_INDEX_NAME, "deduplicate": False, "use_safety_model": False,
                "use_violence_detector": False, "aesthetic_score": "", "aesthetic_weight": ""}
    return {"query": query, "k": k, "rerank": rerank}


def _has_results(system: str, body: object) -> bool:
    """An answer counts only when it holds hits: the peer answers a bare list, we answer {"results": [...]}."""
    hits = body if system == "peer" else body.get("results") if isinstance(body, dict) else None
    return isinstance(hits, list) and len(hits) > 0


async def _window(url: str, system: str, queries: list[str], offset: int, clients: int, seconds: float,
                  k: int, rerank: str) -> dict:
    """`clients` closed-loop clients for `seconds`; each takes the next unused query."""
    import httpx

    latencies: list[float] = []
    errors = 0
    counter = {"next": offset}
    stop_at = time.perf_counter() + seconds

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal errors
        while time.perf_counter() < stop_at:
            query = queries[counter["next"] % len(queries)]
            counter["next"] += 1
            began = time.perf_counter()
            try:
                response = await http.post(url, json=_payload(system, query, k, rerank))
                ok = response.status_code == 200 and _has_results(system, response.json())
            except (httpx.HTTPError, ValueError):
                ok = False
            if ok:
                latencies.append(time.perf_counter() - began)
            else:
                errors += 1

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    began = time.perf_counter()
    async with httpx.AsyncClient(timeout=120, limits=limits) as http:
        await asyncio.gather(*(client(http) for _ in range(clients)))
    elapsed = time.perf_counter() - began
    return {"latencies_s": latencies, "errors": errors, "elapsed_s": elapsed, "used": counter["next"] - offset}


def _build_indexes(python: Path, work: Path, peer_folder: Path, ours_root: Path, count: int, arch: str) -> None:
    """The same synthetic vectors in both servers' formats; kept between runs (keyed by size and arch) so a
    repeated measurement does not spend minutes rebuilding. Uniform random unit vectors, as in the
    query-latency benchmark: both servers search exactly, whose cost depends only on count and dimension."""
    import numpy as np

    key_file, key = work / "indexes.json", {"vectors": count, "arch": arch, "seed": 0, "data": "uniform"}
    if key_file.exists() and json.loads(key_file.read_text()) == key and peer_folder.exists() and ours_root.exists():
        return
    key_file.unlink(missing_ok=True)
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((count, 512), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    vector_file = work / "vectors.npy"
    np.save(vector_file, vectors)
    shutil.rmtree(peer_folder, ignore_errors=True)
    subprocess.run([str(python), "-c", _WRITE_PEER_INDEX, str(vector_file), str(peer_folder)], check=True)
    vector_file.unlink()
    write_synthetic_store(ours_root, vectors, arch)
    key_file.write_text(json.dumps(key))


def _summary(windows: list[dict]) -> dict[str, float]:
    latencies = [x for w in windows for x in w["latencies_s"]]
    if not latencies:
        return {"rps": 0.0, "p50_ms": float("nan"), "p95_ms": float("nan"), "errors": sum(w["errors"] for w in windows)}
    return {
        "rps": len(latencies) / sum(w["elapsed_s"] for w in windows),
        "p50_ms": percentile(latencies, 50) * 1e3,
        "p95_ms": percentile(latencies, 95) * 1e3,
        "errors": sum(w["errors"] for w in windows),
    }


def _serving(args: argparse.Namespace, python: Path, work: Path, smoke: bool) -> list[Result]:
    count = 2_000 if smoke else args.vectors
    clients = [1, 2] if smoke else args.clients
    window_s, rounds = (1.0, 1) if smoke else (args.window_s, args.rounds)
    queries = query_captions(split_path(args.split), 50 if smoke else args.queries)
    peer_folder, ours_root = work / "peer-index", work / "ours-index"
    _build_indexes(python, work, peer_folder, ours_root, count, args.arch)
    weights = _peer_weights(python, args.arch, work)

    servers = {}
    try:
        peer, peer_url = _start_peer(python, weights, peer_folder, work, args.arch)
        ours, ours_url = _start_ours(ours_root, work, args.arch, args.runtime)
        servers = {"peer": peer, "ours": ours}
        for server in servers.values():
            server.wait_ready()
        ours.wait_runtime(args.runtime)
        urls = {"peer": peer_url, "ours": ours_url}
        for system in ("peer", "ours"):  # warm-up: first requests pay lazy initialisation
            asyncio.run(_window(urls[system], system, queries, 0, 1, min(2.0, window_s), args.k, args.rerank))
        results, offset = [], 0
        for n_clients in clients:
            windows: dict[str, list[dict]] = {"peer": [], "ours": []}
            for _ in range(rounds):
                for system in ("peer", "ours"):
                    window = asyncio.run(
                        _window(urls[system], system, queries, offset, n_clients, window_s, args.k, args.rerank)
                    )
                    windows[system].append(window)
            stats = {system: _summary(ws) for system, ws in windows.items()}
            offset += 7919
            peer_s, ours_s = stats["peer"], stats["ours"]
            results.append(
                Result(
                    benchmark="peer-serving",
                    params={
                        "clients": n_clients, "vectors": count, "arch": args.arch, "weights": "random", "k": args.k,
                        "our_rerank": args.rerank, "our_cache": "off", "window_s": window_s, "rounds": rounds,
                        "our_runtime": args.runtime,
                    },
                    metrics={
                        "throughput_ratio": ours_s["rps"] / peer_s["rps"] if peer_s["rps"] else float("inf"),
                        "p95_ratio": ours_s["p95_ms"] / peer_s["p95_ms"],
                        "ours_rps": ours_s["rps"], "peer_rps": peer_s["rps"],
                        "ours_p50_ms": ours_s["p50_ms"], "peer_p50_ms": peer_s["p50_ms"],
                        "ours_p95_ms": ours_s["p95_ms"], "peer_p95_ms": peer_s["p95_ms"],
                        "errors": ours_s["errors"] + peer_s["errors"],
                    },
                    raw={"windows": windows},
                    notes="ratios = ours / clip-retrieval; windows alternate peer/ours",
                )
            )
        return results
    finally:
        for server in servers.values():
            server.stop()


def _count_images(folder: Path) -> int:
    return sum(1 for p in folder.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".tif", ".tiff"})


def _indexing(args: argparse.Namespace, python: Path, work: Path, smoke: bool) -> list[Result]:
    """End-to-end wall time of each tool's own command on the same folder, model load included."""
    images = args.images
    limit = 8 if smoke else args.index_limit
    if limit:
        images = work / f"first-{limit}-images"
        shutil.rmtree(images, ignore_errors=True)
        images.mkdir()
        for path in sorted(args.images.glob("*.jpg"))[:limit]:
            shutil.copy2(path, images / path.name)
    count = _count_images(images)
    if count == 0:
        raise ValueError(f"no images in {images}")
    weights = _peer_weights(python, args.arch, work)
    workers = str(min(2, os.cpu_count() or 1))
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    times: dict[str, list[float]] = {"peer": [], "ours": []}
    for _ in range(1 if smoke else args.index_rounds):
        for system in ("peer", "ours"):
            out = Path(tempfile.mkdtemp(prefix=f"{system}-", dir=work))
            if system == "peer":
                command = [str(python.parent / "clip-retrieval"), "inference", "--input_dataset", str(images),
                           "--output_folder", str(out / "embeddings"),
                           "--clip_model", f"open_clip:{args.arch}/{weights}",
                           "--batch_size", "64", "--num_prepro_workers", workers, "--enable_text", "False",
                           "--enable_metadata", "False"]
            else:
                command = [sys.executable, "-m", "posapl.cli", "index", "build", "--out", str(out / "index"),
                           "--images", str(images), "--no-progress", "--pretrained", "random", "--arch", args.arch,
                           "--num-workers", workers, "--batch-size", "64"]
            began = time.perf_counter()
            done = subprocess.run(command, env=env, capture_output=True, text=True)
            elapsed = time.perf_counter() - began
            shutil.rmtree(out, ignore_errors=True)
            if done.returncode != 0:
                raise RuntimeError(f"{' '.join(command[:3])} failed ({done.returncode}): {done.stderr[-2000:]}")
            times[system].append(elapsed)
    best = {system: min(samples) for system, samples in times.items()}
    return [
        Result(
            benchmark="peer-indexing",
            params={"images": count, "folder": images.name, "arch": args.arch, "weights": "random",
                    "device": "cpu", "batch": 64, "workers": int(workers), "rounds": len(times["ours"])},
            metrics={
                "ours_images_per_s": count / best["ours"], "peer_images_per_s": count / best["peer"],
                "ratio": best["peer"] / best["ours"],
            },
            raw={"wall_s": times},
            notes="end-to-end command wall time incl. start-up and model load, best of rounds; alternating",
        )
    ]


def run(args: argparse.Namespace) -> list[Result]:
    python = _peer_python(args.peer_venv)
    work = Path(tempfile.mkdtemp(prefix="peer-smoke-", dir=WORK_DIR)) if args.smoke else PEER_WORK
    work.mkdir(parents=True, exist_ok=True)
    results = []
    if not args.skip_serving:
        results += _serving(args, python, work, args.smoke)
    if not args.skip_indexing:
        results += _indexing(args, python, work, args.smoke)
    if args.smoke:
        shutil.rmtree(work, ignore_errors=True)
    return results
