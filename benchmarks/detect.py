"""How long a detection takes at archive scale, in-process: the service's own threshold search
(`service.detect.threshold.passing`, a growing FAISS top-k over an exact flat index) and dissolve
(`service.detect.dissolve`) over synthetic vectors and footprints.

Items lie on a grid of touching square footprints; vectors are a cluster centre per 32 x 32 block of cells plus
noise, so a query's detections come as contiguous areas, as real detections of one land cover do. The SQLite
look-up of the detected items' records is not included (a benchmark of the store, not of detection).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from benchmarks.harness import Result, faiss_threads

BLOCK = 32
CELL_DEG = 0.001


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--vectors", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--ranks", type=int, nargs="+", default=[1_000, 10_000, 100_000], help="thresholds by rank")
    parser.add_argument("--noise", type=float, default=0.5, help="noise per component relative to the centres'")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)


@dataclass(frozen=True)
class _Manifest:
    counts: dict[str, int]


class _FlatArchive:
    """The two calls `passing` makes on an index version, over an in-memory exact index."""

    def __init__(self, index, count: int) -> None:
        self.index = index
        self.manifest = _Manifest({"images": count})

    def search_images(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return self.index.search(queries, k)


def _archive(count: int, dim: int, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(vectors, block centres, grid side): item i sits in cell (i % side, i // side)."""
    rng = np.random.default_rng(seed)
    side = int(np.ceil(np.sqrt(count)))
    per_row = -(-side // BLOCK)
    centres = rng.standard_normal((per_row * per_row, dim)).astype(np.float32)
    vectors = np.empty((count, dim), np.float32)
    for start in range(0, count, 100_000):
        rows = np.arange(start, min(count, start + 100_000))
        block = (rows // side // BLOCK) * per_row + (rows % side) // BLOCK
        chunk = centres[block] + noise * rng.standard_normal((len(rows), dim)).astype(np.float32)
        vectors[rows] = chunk / np.linalg.norm(chunk, axis=1, keepdims=True)
    return vectors, centres, side


def run(args: argparse.Namespace) -> Iterator[Result]:
    """FAISS on one thread, as the service runs it."""
    with faiss_threads(1):
        yield from _run(args)


def _run(args: argparse.Namespace) -> Iterator[Result]:
    import faiss
    import shapely

    from service.detect.dissolve import dissolve
    from service.detect.threshold import passing

    count = 20_000 if args.smoke else args.vectors
    dim = 64 if args.smoke else args.dim
    ranks = [r for r in ([100, 1_000] if args.smoke else args.ranks) if r <= count]
    vectors, centres, side = _archive(count, dim, args.noise, args.seed)
    index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
    index.add_with_ids(vectors, np.arange(count, dtype=np.int64))
    del vectors
    archive = _FlatArchive(index, count)
    query = centres[0] / np.linalg.norm(centres[0])
    rows = []
    for rank in ranks:
        search_ms, dissolve_ms, dissolve_cpu_ms = [], [], []
        for _ in range(args.repeat):
            started = time.perf_counter()
            found = passing(archive, query, None, None, rank, cap=100_000)
            searched, cpu = time.perf_counter(), time.process_time()
            x, y = (found.ids % side) * CELL_DEG, (found.ids // side) * CELL_DEG
            parts = dissolve(list(shapely.box(x, y, x + CELL_DEG, y + CELL_DEG)), found.scores.astype(np.float64))
            done = time.perf_counter()
            search_ms.append((searched - started) * 1e3)
            dissolve_ms.append((done - searched) * 1e3)
            dissolve_cpu_ms.append((time.process_time() - cpu) * 1e3)
        rows.append({
            "rank": rank, "detections": len(found.ids), "polygons": len(parts),
            "search_ms": float(np.median(search_ms)), "dissolve_ms": float(np.median(dissolve_ms)),
            "dissolve_cpu_ms": float(np.median(dissolve_cpu_ms)),
        })
    metrics = {}
    for row in rows:
        metrics[f"n{row['rank']}_search_ms"] = round(row["search_ms"], 1)
        metrics[f"n{row['rank']}_dissolve_ms"] = round(row["dissolve_ms"], 1)
        metrics[f"n{row['rank']}_dissolve_cpu_ms"] = round(row["dissolve_cpu_ms"], 1)
        metrics[f"n{row['rank']}_polygons"] = row["polygons"]
    yield Result(
        benchmark="detect",
        params={"vectors": count, "dim": dim, "index": "flat (exact)", "threads": 1, "block": f"{BLOCK}x{BLOCK}",
                "repeat": args.repeat},
        metrics=metrics,
        raw={"rows": rows},
        notes="threshold by rank N; median of repeats; in-process, footprints dissolved with shapely; "
        "dissolve_cpu_ms is the process's CPU time (single-threaded), steadier than wall time on a loaded machine; "
        "record look-up excluded",
    )
