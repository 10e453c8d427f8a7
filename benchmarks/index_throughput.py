"""Images/s of the index build: the embedding stage alone (decode + resize workers + encoder) and the whole
`posapl index build` end to end (model load, hashing, embedding, FAISS, metadata, publish).

Weights are random: throughput does not depend on their values, only on the architecture, so no download
is needed. The embedding stage is measured with index.embed.embed_files, the code the build runs.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from benchmarks.harness import SHARED_DATA, Result, load_average, smoke_arch, staged_images


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--images", type=Path, default=SHARED_DATA / "rsicd" / "test", help="image folder")
    parser.add_argument("--arch", default="ViT-B-32", help="open_clip architecture (random weights)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--num-workers", type=int, default=min(8, os.cpu_count() or 1))
    parser.add_argument("--limit", type=int, default=0, help="use only the first N images (0 = all)")


def run(args: argparse.Namespace) -> list[Result]:
    import torch

    from index.embed import WorkLog, embed_files
    from index.job import run_update
    from index.settings import IndexSettings
    from posapl.checkpoint import load_model

    limit = 32 if args.smoke else args.limit
    arch = str(smoke_arch()) if args.smoke else args.arch
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    workers = 0 if args.smoke else args.num_workers
    load_before = load_average()

    with tempfile.TemporaryDirectory(prefix="posapl-bench-index-") as scratch:
        scratch = Path(scratch)
        folder, items = staged_images(Path(args.images), limit, scratch)
        model = load_model(None, "random", "rsitmd", arch).to(device).eval()
        warm = items[: args.batch_size]
        embed_files(model, warm, WorkLog(scratch / "warm"), args.batch_size, 0, 40_000_000, progress=False)
        began = time.perf_counter()
        embed_files(model, items, WorkLog(scratch / "work"), args.batch_size, workers, 40_000_000, progress=False)
        embed_s = time.perf_counter() - began

        settings = IndexSettings(
            root=scratch / "store",
            images=[folder],
            pretrained="random",
            arch=arch,
            device=device,
            batch_size=args.batch_size,
            num_workers=workers,
            progress=False,
        )
        began = time.perf_counter()
        report = run_update(scratch / "store", settings, settings.store_config())
        build_s = time.perf_counter() - began

    metrics = {
        "embed_images_per_s": round(len(items) / embed_s, 1),
        "build_images_per_s": round(report.counts["images"] / build_s, 1),
        "images": len(items),
    }
    params = {
        "arch": "smoke" if args.smoke else arch,
        "device": device,
        "batch_size": args.batch_size,
        "num_workers": workers,
    }
    raw = {
        "embed_s": embed_s,
        "build_s": build_s,
        "load_avg_before": load_before,
        "load_avg_after": load_average(),
        "report_counts": report.counts,
    }
    notes = "build includes model load, hashing, FAISS, SQLite and publish"
    return [Result("index-throughput", params, metrics, raw, notes)]
