"""Seconds of a nightly `update` after a rewrite of a few percent of one large scene, against a build that
embeds the whole rewritten scene (what every update of a changed scene cost before windows were reused).

The scene is 4-band uint16 (4,000 x 4,000 px by default, 441 windows of 256 px at 0.25 overlap) with random
texture plus a lattice of low and high values, so its 2nd/98th percentile stretch stays put when a square of
`--changed` of its area is rewritten with new texture: then only the windows touching the square change.
(A rewrite that moves the stretch changes every window's 8-bit pixels and re-embeds the scene whole.)
All three runs go through `index.job.run_update` in this process: build, update, and the reference build of
the rewritten scene into a second store.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

from benchmarks.harness import Result, load_average, smoke_arch


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--size", type=int, default=4000, help="scene width and height in pixels")
    parser.add_argument("--changed", type=float, default=0.03, help="fraction of the scene's area rewritten")
    parser.add_argument("--arch", default="smoke", help="open_clip architecture (random weights), or 'smoke'")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--num-workers", type=int, default=2)


def _texture(size: int, seed: int, top: int = 0, rows: int | None = None):
    """Rows [top, top + rows) of the 4-band scene made with `seed`: random 2000..8000, every tenth pixel of a
    diagonal lattice at 1000 or 9000 (those fix the percentiles)."""
    import numpy as np

    rows = size - top if rows is None else rows
    data = np.random.default_rng([seed, top]).integers(2000, 8000, size=(4, rows, size), dtype=np.uint16)
    ys, xs = np.mgrid[top : top + rows, 0:size]
    data[:, (xs + ys) % 10 == 0] = 1000
    data[:, (xs + ys) % 10 == 5] = 9000
    return data


def write_scene(path: Path, size: int, seed: int, square: tuple[int, int] | None = None) -> None:
    """The scene of `seed`, with the square (origin, side) taken from another seed; written in 512-row strips."""
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    profile = dict(
        driver="GTiff", width=size, height=size, count=4, dtype="uint16", crs="EPSG:32633",
        transform=from_origin(300000, 5500000, 10, 10), tiled=True, blockxsize=512, blockysize=512,
        compress="deflate", zlevel=1, bigtiff="IF_SAFER",
    )  # fmt: skip
    with rasterio.open(path, "w", **profile) as out:
        for top in range(0, size, 512):
            rows = min(512, size - top)
            data = _texture(size, seed, top, rows)
            if square is not None:
                origin, side = square
                low, high = max(top, origin), min(top + rows, origin + side)
                if low < high:
                    other = _texture(size, seed + 1, low, high - low)
                    data[:, low - top : high - top, origin : origin + side] = other[:, :, origin : origin + side]
            out.write(data, window=Window(0, top, size, rows))


def run(args: argparse.Namespace) -> list[Result]:
    from index.job import run_update
    from index.settings import IndexSettings

    size = 1024 if args.smoke else args.size
    arch = str(smoke_arch()) if args.smoke or args.arch == "smoke" else args.arch
    workers = 0 if args.smoke else args.num_workers
    side = max(1, round(size * math.sqrt(args.changed)))
    square = (size // 4, side)
    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="posapl-bench-scene-update-") as scratch:
        scratch = Path(scratch)
        scenes = scratch / "scenes"
        scenes.mkdir()
        write_scene(scenes / "scene.tif", size, seed=1)

        def timed(root: Path, build: bool):
            settings = IndexSettings(
                root=root, images=[scenes] if build else None, pretrained="random", arch=arch, device=args.device,
                batch_size=args.batch_size, num_workers=workers, progress=False,
            )  # fmt: skip
            began = time.perf_counter()
            report = run_update(root, settings, settings.store_config() if build else None)
            return time.perf_counter() - began, report

        build_s, build = timed(scratch / "store", build=True)
        write_scene(scenes / "scene.tif", size, seed=1, square=square)
        update_s, update = timed(scratch / "store", build=False)
        rebuild_s, rebuild = timed(scratch / "reference", build=True)
    counts = update.counts
    if counts["files_changed"] != 1 or counts["items_embedded"] + counts["items_reused"] != rebuild.counts["images"]:
        raise RuntimeError(f"the update did not replace the scene's windows: {counts}")
    metrics = {
        "update_s": round(update_s, 2),
        "whole_scene_s": round(rebuild_s, 2),
        "speedup": round(rebuild_s / update_s, 2),
        "windows": rebuild.counts["images"],
        "embedded": counts["items_embedded"],
        "reused": counts["items_reused"],
    }
    params = {
        "scene": f"{size}x{size}x4 uint16 deflate",
        "changed": f"{side}x{side} px square ({side * side / size / size:.1%} of the area)",
        "arch": "smoke" if arch.endswith(".json") else arch,
        "device": args.device,
        "tile": "256px overlap 0.25",
        "batch_size": args.batch_size,
        "num_workers": workers,
    }
    raw = {
        "build_s": build_s,
        "update_counts": counts,
        "load_avg_before": load_before,
        "load_avg_after": load_average(),
    }
    notes = (
        "whole run_update each (model load, scan, planning, decode workers, encoder, FAISS, profiles, publish); "
        "whole_scene_s is a build of the rewritten scene: the work an update did before windows were reused"
    )
    return [Result("scene-update", params, metrics, raw, notes)]
