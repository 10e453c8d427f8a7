"""Tiles/s and peak memory of `posapl index build` over one large scene: a synthetic 4-band uint16, tiled and
compressed GeoTIFF (20,000 x 20,000 px by default) made with rasterio strip by strip.

The build runs as its own process (`posapl index build`, the command users run); its peak memory is the highest
sum of the proportional set size (Pss) of the process and all its decode workers, and the largest resident set
(RSS) of any one of them, sampled from /proc every 100 ms. The scene's
pixels are cheap (64 px cells of constant value) so that the file writes quickly; tiles/s depends on the decode, the
resize and the encoder, not on what the pixels show.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.harness import Result, load_average, smoke_arch

PAGE = os.sysconf("SC_PAGE_SIZE")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--size", type=int, default=20_000, help="scene width and height in pixels")
    parser.add_argument("--arch", default="ViT-B-32", help="open_clip architecture (random weights), or 'smoke'")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--num-workers", type=int, default=min(4, os.cpu_count() or 1))
    parser.add_argument("--tile-size", type=int, default=256)
    parser.add_argument("--tile-overlap", type=float, default=0.25)


def write_scene(path: Path, size: int) -> None:
    """4-band uint16, 512 px tiles, deflate; written one block row at a time so memory stays small."""
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    profile = dict(
        driver="GTiff", width=size, height=size, count=4, dtype="uint16", crs="EPSG:32633",
        transform=from_origin(300000, 5500000, 10, 10), tiled=True, blockxsize=512, blockysize=512,
        compress="deflate", zlevel=1, bigtiff="IF_SAFER",
    )
    cells = np.arange(size, dtype=np.uint16) // 64  # 64 px cells of constant value: cheap to write and compress
    with rasterio.open(path, "w", **profile) as out:
        for top in range(0, size, 512):
            rows = min(512, size - top)
            ys = (np.arange(top, top + rows, dtype=np.uint16) // 64)[:, None]
            base = ((cells[None, :] * 7 + ys * 13) % 251).astype(np.uint16) * 100 + 500
            out.write(np.stack([base + 1000 * band for band in range(4)]), window=Window(0, top, size, rows))


def _memory(pid: int) -> tuple[int, int]:
    """(Pss, Rss) bytes of one process: Pss splits shared pages (libraries, fork-inherited memory) between the
    processes sharing them, so the Pss of a process tree adds up to the memory it really uses."""
    values = {}
    with open(f"/proc/{pid}/smaps_rollup") as handle:
        for line in handle:
            name, _, rest = line.partition(":")
            if name in ("Pss", "Rss"):
                values[name] = int(rest.split()[0]) * 1024
    return values.get("Pss", 0), values.get("Rss", 0)


def _tree_memory(pid: int) -> tuple[int, int]:
    """(summed Pss, largest single-process Rss) of `pid` and all its descendants."""
    pss, rss, todo = 0, 0, [pid]
    while todo:
        current = todo.pop()
        try:
            one_pss, one_rss = _memory(current)
            pss, rss = pss + one_pss, max(rss, one_rss)
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as handle:
                    todo.extend(int(child) for child in handle.read().split())
        except (OSError, ValueError):
            continue
    return pss, rss


def run(args: argparse.Namespace) -> list[Result]:
    size = 1024 if args.smoke else args.size
    arch = str(smoke_arch()) if args.smoke or args.arch == "smoke" else args.arch
    workers = 0 if args.smoke else args.num_workers
    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="posapl-bench-scene-") as scratch:
        scratch = Path(scratch)
        (scratch / "scenes").mkdir()
        began = time.perf_counter()
        write_scene(scratch / "scenes" / "scene.tif", size)
        write_s = time.perf_counter() - began
        command = [
            sys.executable, "-m", "posapl.cli", "index", "build", "--images", str(scratch / "scenes"),
            "--out", str(scratch / "store"), "--pretrained", "random", "--arch", arch, "--device", args.device,
            "--batch-size", str(args.batch_size), "--num-workers", str(workers), "--no-progress",
            "--tile-sizes", str(args.tile_size), "--tile-overlap", str(args.tile_overlap),
        ]
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        began = time.perf_counter()
        process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        peak, peak_rss = 0, 0
        done = threading.Event()

        def sample() -> None:
            nonlocal peak, peak_rss
            while not done.is_set():
                pss, rss = _tree_memory(process.pid)
                peak, peak_rss = max(peak, pss), max(peak_rss, rss)
                time.sleep(0.1)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        out, err = process.communicate()
        done.set()
        sampler.join()
        build_s = time.perf_counter() - began
        if process.returncode != 0:
            raise RuntimeError(f"index build failed ({process.returncode}): {err[-2000:]}")
        from index.store import open_version

        with open_version(scratch / "store") as version:
            tiles = version.manifest.counts["images"]
            skipped = version.skipped()
        if tiles == 0:
            raise RuntimeError(f"the build indexed no tile: {skipped}")
    metrics = {
        "tiles_per_s": round(tiles / build_s, 1),
        "peak_tree_pss_mb": round(peak / 2**20),
        "peak_process_rss_mb": round(peak_rss / 2**20),
        "tiles": tiles,
    }
    params = {
        "scene": f"{size}x{size}x4 uint16 deflate",
        "arch": "smoke" if arch.endswith(".json") else arch,
        "device": args.device,
        "tile": f"{args.tile_size}px overlap {args.tile_overlap}",
        "batch_size": args.batch_size,
        "num_workers": workers,
    }
    raw = {
        "build_s": build_s,
        "write_scene_s": write_s,
        "peak_tree_pss_bytes": peak,
        "peak_process_rss_bytes": peak_rss,
        "stdout": out[-2000:],
        "load_avg_before": load_before,
        "load_avg_after": load_average(),
    }
    notes = "whole `posapl index build` (model load, planning, decode workers, encoder, FAISS, publish); tree Pss"
    return [Result("scene-indexing", params, metrics, raw, notes)]
