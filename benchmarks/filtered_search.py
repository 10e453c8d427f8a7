"""Exact filtered search: the subset-scoring vs ID-selector crossover, and filtered vs unfiltered text-query
latency against a real `posapl serve` at 100k items with a time or area filter matching 100 of them.

Archive vectors are embedding-like (benchmarks.embedding_like: mixtures of the random-weight model's RSICD
image embeddings plus noise). Item i sits at column x = (i-1) mod 1000, row y = (i-1) div 1000 of a grid of
WGS84 footprints, CELL degrees a side (about 1 km tiles) starting at (ORIGIN_LON, ORIGIN_LAT); it has mtime i
and was acquired i minutes after ACQUIRED_FROM. A time window, an acquisition-time window or a lon/lat box
over 10 x 10 cells (through the footprint R*Tree) each select exactly 100 items. Every filtered answer must
hold k results and report matched = 100, or the run fails: a fast answer that drops matches is no answer.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from benchmarks.embedding_like import mixed_archive, seed_embeddings
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
from benchmarks.query_latency import _server
from benchmarks.server_process import free_port
from benchmarks.synthetic_store import publish_synthetic_store

GRID = 1000  # items per row of the synthetic footprint grid
CELL = 0.01  # degrees per footprint side
ORIGIN_LON, ORIGIN_LAT = -10.0, 40.0
ACQUIRED_FROM = datetime(2020, 1, 1, tzinfo=UTC)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--split", default=str(DEFAULT_SPLIT), help="annotation file: seed images, queries, bank")
    parser.add_argument("--arch", default="ViT-B-32", help="open_clip architecture (random weights)")
    parser.add_argument("--vectors", type=int, default=100_000)
    parser.add_argument("--bank", type=int, default=1000, help="real captions in the caption bank")
    parser.add_argument("--noise", type=float, default=0.5, help="noise norm relative to the seeds' spread")
    parser.add_argument("--index-kind", default="auto", help="image index kind of the store (index.vectors)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 300, 1000, 3000, 10000, 30000])
    parser.add_argument("--repeat", type=int, default=30, help="queries per crossover point and strategy")
    parser.add_argument("--requests", type=int, default=200, help="HTTP requests per latency cell (1 client)")
    parser.add_argument("--k", type=int, default=10)


def _lon(x: float) -> float:
    return ORIGIN_LON + x * CELL


def _lat(y: float) -> float:
    return ORIGIN_LAT + y * CELL


def _footprint(x: int, y: int) -> str:
    west, south, east, north = _lon(x), _lat(y), _lon(x + 1), _lat(y + 1)
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    return json.dumps({"type": "Polygon", "coordinates": [ring]})


def _records(count: int) -> list:
    from index.store import ImageRecord

    return [
        ImageRecord(i, 0, f"synthetic/{i}.jpg", f"{i:064x}", 0, 224, 224, float(i), 3, "uint8", "", None, None,
                    footprint=_footprint((i - 1) % GRID, (i - 1) // GRID),
                    time=(ACQUIRED_FROM + timedelta(minutes=i)).isoformat())
        for i in range(1, count + 1)
    ]


def _crossover(root: Path, queries: np.ndarray, sizes: list[int], repeat: int, k: int) -> list[Result]:
    """Per selection size: median ms of exact subset scoring and of the ID-selector search, one query each."""
    from index.store import SUBSET_EXACT_MAX, open_version

    rng = np.random.default_rng(0)
    rows = []
    with open_version(root) as version:
        ids = version.image_ids()
        kind = version.manifest.index["kind"]
        for size in [s for s in sizes if s <= len(ids)]:
            timings: dict[str, list[float]] = {"exact": [], "selector": []}
            agree = []
            for n in range(repeat):
                among = rng.choice(ids, size, replace=False)
                query = queries[n % len(queries)][None, :]
                found = {}
                for method in timings:
                    began = time.perf_counter()
                    _, found[method] = version.search_images_in(query, k, among, method=method)
                    timings[method].append((time.perf_counter() - began) * 1e3)
                agree.append(len(set(found["exact"][0]) & set(found["selector"][0])) / min(k, size))
            exact, selector = np.median(timings["exact"]), np.median(timings["selector"])
            rows.append(
                Result(
                    benchmark="filtered-search-crossover",
                    params={"vectors": len(ids), "index": kind, "selected": size, "k": k, "repeat": repeat},
                    metrics={
                        "exact_ms_p50": float(exact),
                        "selector_ms_p50": float(selector),
                        "faster": "exact" if exact < selector else "selector",
                        "selector_agrees_with_exact": float(np.mean(agree)),
                        "chosen_by_store": "exact" if size <= SUBSET_EXACT_MAX else "selector",
                    },
                    raw={"timings_ms": timings},
                    notes="one query per call, in-process; exact = scoring the selected stored vectors",
                )
            )
            print(f"  {rows[-1].params} {rows[-1].metrics}", flush=True)
    return rows


def _latency(url: str, queries: list[str], requests: int, k: int, rerank: str, filters: dict | None) -> dict:
    import httpx

    latencies, matched, short = [], set(), 0
    with httpx.Client(base_url=url, timeout=120) as http:
        for n in range(requests):
            body = {"query": queries[n % len(queries)], "k": k, "rerank": rerank}
            if filters:
                body["filters"] = filters
            began = time.perf_counter()
            response = http.post("/v1/search/text", json=body)
            latencies.append((time.perf_counter() - began) * 1e3)
            if response.status_code != 200:
                raise RuntimeError(f"HTTP {response.status_code}: {response.text[:200]}")
            answer = response.json()
            short += len(answer["results"]) < k
            matched.add(answer["matched"])
    return {"latencies_ms": latencies, "short_answers": short, "matched": sorted(matched, key=str)}


def run(args: argparse.Namespace) -> list[Result]:
    arch = str(smoke_arch()) if args.smoke else args.arch
    count = 10_000 if args.smoke else args.vectors
    bank_size = 100 if args.smoke else args.bank
    requests = 10 if args.smoke else args.requests
    sizes = [10, 300, 2000] if args.smoke else args.sizes
    repeat = 3 if args.smoke else args.repeat
    split = split_path(args.split)
    print(f"load average before: {load_average()}", flush=True)
    seeds, caption_vectors = seed_embeddings(arch, split, 60 if args.smoke else None)
    captions = query_captions(split, bank_size + (50 if args.smoke else 500))
    bank, queries = captions[:bank_size], captions[bank_size:]
    work = WORK_DIR / "filtered-search" / f"{'smoke' if args.smoke else Path(arch).stem}-{count}"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    from index.vectors import IndexSpec

    bank_vectors = caption_vectors[:bank_size]  # seed_embeddings keeps the split's distinct captions in order
    began = time.perf_counter()
    archive = mixed_archive(seeds, count, args.noise)
    spec = IndexSpec(kind=args.index_kind, flat_max=1000 if args.smoke else IndexSpec().flat_max)
    publish_synthetic_store(work / "index", arch, archive, bank, bank_vectors, _records(count), spec)
    build_s = time.perf_counter() - began
    del archive
    from index.store import open_version

    with open_version(work / "index") as version:
        index_info = {k: v for k, v in version.manifest.index.items() if k not in ("sweep", "requested")}
    print(f"store of {count} items built in {build_s:.0f} s: {index_info}", flush=True)
    results = _crossover(work / "index", caption_vectors, sizes, repeat, args.k)

    side = 10  # a side x side box of the footprint grid, and time windows of the same count
    x0, y0 = GRID // 2, max(0, min(5, count // GRID - side))
    area = [_lon(x0 + 0.2), _lat(y0 + 0.2), _lon(x0 + side - 0.2), _lat(y0 + side - 0.2)]
    first = y0 * GRID + x0 + 1
    cells = {
        "none": None,
        "time": {"min_mtime": float(first), "max_mtime": float(first + side * side - 1)},
        "acquired": {"time_from": (ACQUIRED_FROM + timedelta(minutes=first)).isoformat(),
                     "time_to": (ACQUIRED_FROM + timedelta(minutes=first + side * side - 1)).isoformat()},
        "area": {"bbox": area},
        "area+time": {"bbox": area, "min_mtime": 0.0},
    }
    port = free_port()
    server = _server(work / "index", arch, port, work / "server.log", {})
    url = f"http://127.0.0.1:{port}"
    try:
        server.wait_ready()
        _latency(url, queries, 5, args.k, "none", None)  # warm-up
        for rerank in ("none", "multivariate"):
            for name, filters in cells.items():
                measured = _latency(url, queries, requests, args.k, rerank, filters)
                if filters is not None and (measured["short_answers"] or measured["matched"] != [side * side]):
                    raise RuntimeError(f"filter {name}: {measured['short_answers']} short answers, "
                                       f"matched {measured['matched']} (expected {side * side})")
                lat = measured["latencies_ms"]
                results.append(
                    Result(
                        benchmark="filtered-search",
                        params={"arch": "smoke" if args.smoke else arch, "weights": "random", "vectors": count,
                                "index": index_info["kind"], "filter": name, "rerank": rerank, "k": args.k,
                                "clients": 1, "requests": requests, "cache": "off"},
                        metrics={
                            "p50_ms": percentile(lat, 50),
                            "p95_ms": percentile(lat, 95),
                            "matched": measured["matched"][0] if filters else "n/a",
                            "short_answers": measured["short_answers"],
                        },
                        raw={**measured, "index": index_info, "filters": filters, "load_avg_after": load_average()},
                        notes="client-side latency; every filtered answer held k results",
                    )
                )
                print(f"  {name} {rerank}: {results[-1].metrics}", flush=True)
    finally:
        server.stop()
    return results
