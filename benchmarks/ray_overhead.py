"""What Ray costs on one machine: images/s of the embedding stage through Ray Data (`posapl index … --ray`)
against the in-process path, at the same CPUs.

Both runs embed the same files with the same model into a checkpoint log, through the code the index job
runs (index.embed.embed_files and index.cluster.cluster_embedder). Resources are matched: a local Ray cluster
of N CPUs gets N/2 single-threaded embedding actors and N/2 CPUs for decode tasks; the in-process run gets
N/2 torch threads and N/2 DataLoader decode workers. The Ray time includes its per-run costs (actors
loading the model, task scheduling, results streaming back) but not starting the cluster, which a cluster
pays once, not per run; that start time is reported separately. Both logs are compared: the vectors must agree.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.harness import SHARED_DATA, Result, load_average, smoke_arch, staged_images


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--images", type=Path, default=SHARED_DATA / "rsicd" / "test", help="image folder")
    parser.add_argument("--arch", default="ViT-B-32", help="open_clip architecture (random weights)")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray cluster and of the in-process run")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--limit", type=int, default=256, help="use only the first N images (0 = all)")


def _vectors(log_dir: Path, dim: int) -> dict[str, np.ndarray]:
    from index.embed import WorkLog

    return WorkLog(log_dir).load(dim).vectors


def run(args: argparse.Namespace) -> list[Result]:
    import ray
    import torch

    from index.cluster import cluster_embedder
    from index.embed import WorkLog, embed_files
    from index.settings import IndexSettings, StoreConfig
    from posapl.checkpoint import load_model

    if ray.is_initialized():
        raise RuntimeError("this benchmark starts its own local Ray cluster; this process already joined one")
    limit = 24 if args.smoke else args.limit
    arch = str(smoke_arch()) if args.smoke else args.arch
    batch = 8 if args.smoke else args.batch_size
    cpus = 2 if args.smoke else args.cpus
    embed_cpus = max(1, cpus // 2)
    max_pixels = 40_000_000
    load_before = load_average()

    with tempfile.TemporaryDirectory(prefix="posapl-bench-ray-") as scratch:
        scratch = Path(scratch)
        folder, items = staged_images(Path(args.images), limit, scratch)
        config = StoreConfig(sources=[folder], pretrained="random", arch=arch, preset="rsitmd", max_pixels=max_pixels)
        model = load_model(None, "random", "rsitmd", arch).eval()
        threads_before = torch.get_num_threads()
        torch.set_num_threads(embed_cpus)
        try:
            workers = cpus - embed_cpus
            embed_files(model, items[:batch], WorkLog(scratch / "warm"), batch, 0, max_pixels, progress=False)
            began = time.perf_counter()
            embed_files(model, items, WorkLog(scratch / "single"), batch, workers, max_pixels, progress=False)
            single_s = time.perf_counter() - began
        finally:
            torch.set_num_threads(threads_before)

        began = time.perf_counter()
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
        start_s = time.perf_counter() - began
        try:
            settings = IndexSettings(ray_address="local", batch_size=batch, progress=False, ray_actors=embed_cpus)
            embed = cluster_embedder(config, settings)
            if not args.smoke:  # starts and caches the decode worker processes, as on a cluster that has run before
                embed(model, items[:batch], WorkLog(scratch / "ray-warm"), batch, 0, max_pixels, progress=False)
            began = time.perf_counter()
            embed(model, items, WorkLog(scratch / "ray"), batch, 0, max_pixels, progress=False)
            ray_s = time.perf_counter() - began
        finally:
            ray.shutdown()

        single = _vectors(scratch / "single", model.embed_dim)
        clustered = _vectors(scratch / "ray", model.embed_dim)
        if set(single) != set(clustered) or len(single) != len(items):
            raise RuntimeError(f"the runs embedded different files ({len(single)} vs {len(clustered)})")
        max_diff = max(float(np.abs(single[k] - clustered[k]).max()) for k in single)

    metrics = {
        "single_images_per_s": round(len(items) / single_s, 2),
        "ray_images_per_s": round(len(items) / ray_s, 2),
        "overhead_ratio": round(ray_s / single_s, 3),
        "ray_start_s": round(start_s, 1),
        "max_abs_diff": max_diff,
        "images": len(items),
    }
    params = {"arch": "smoke" if args.smoke else arch, "device": "cpu", "cpus": cpus, "batch_size": batch}
    raw = {
        "single_s": single_s,
        "ray_s": ray_s,
        "embed_cpus": embed_cpus,
        "decode_cpus": cpus - embed_cpus,
        "load_avg_before": load_before,
        "load_avg_after": load_average(),
    }
    notes = "overhead_ratio = Ray time / in-process time; warm runs, cluster start excluded"
    return [Result("ray-overhead", params, metrics, raw, notes)]
