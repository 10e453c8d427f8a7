"""The static int8 (QDQ) rows of `posapl bench runtime-agreement`: calibrate each tower on RSICD train data,
measure its top-10 overlap with the float32 graph on test queries, and record that as the tower's gate.

Kept apart from `runtime_agreement` (the dynamic-int8 row) because it owns the calibration data and writes
the gate record beside the graphs, which the service reads (`posapl.quantize.refusal`).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from pathlib import Path

from benchmarks.harness import Result


def _train_dir(args: argparse.Namespace, split: Path) -> Path:
    return Path(args.train_dir) if args.train_dir else split.parent


def _calibration_captions(train: Path, count: int) -> list[str]:
    from posapl.text import normalize_caption

    lines = [line for line in (train / "train_caps.txt").read_text().splitlines() if line.strip()]
    return list(dict.fromkeys(normalize_caption(line) for line in lines))[:count]


def _images(paths: list[Path], image_size: int):
    import torch
    from PIL import Image

    from posapl.preprocess import eval_transform

    transform = eval_transform(image_size)
    tensors = []
    for path in paths:
        with Image.open(path) as image:
            tensors.append(transform(image))
    return torch.stack(tensors)


def static_rows(args: argparse.Namespace, model, fp32, captions: list[str], pos: list[list[str]], archive,
                split: Path) -> Iterator[Result]:
    """One row per tower: calibrate, quantise, measure against float32, record the gate."""
    import numpy as np

    from posapl import onnx_export, quantize
    from posapl.pos import PosTagger
    from posapl.runtime import OnnxEncoder
    from training.annotations import load_eval_split

    cache = Path(args.cache_dir) if args.cache_dir else onnx_export.default_cache_dir()
    train = _train_dir(args, split)
    n_captions = 40 if args.smoke else args.calibration_captions
    n_images = 8 if args.smoke else args.calibration_images
    n_image_queries = 20 if args.smoke else args.image_queries

    calibration = _calibration_captions(train, n_captions)
    names = (train / "train_filename.txt").read_text().split()[:n_images]
    test_images = _images(load_eval_split(split).image_paths[:n_image_queries], model.image_size)
    feeds = {
        "text": lambda: quantize.text_feeds(model, calibration, PosTagger().tag(calibration)),
        "image": lambda: quantize.image_feeds(_images([train / "train" / name for name in names], model.image_size)),
    }
    fp32_graphs = {tower: onnx_export.cached_tower(model, cache, tower) for tower in ("text", "image")}
    for tower in args.towers:
        started = time.perf_counter()
        graph = quantize.quantize_tower(model, cache, tower, feeds[tower](), args.fp32_tail)
        quantize_s = time.perf_counter() - started
        static = OnnxEncoder(model, graph if tower == "text" else fp32_graphs["text"],
                             graph if tower == "image" else fp32_graphs["image"], None,
                             "int8-static" if tower == "text" else "fp32",
                             "int8-static" if tower == "image" else "fp32")
        if tower == "text":
            got, want = static.encode_texts(captions, pos), fp32.encode_texts(captions, pos)
        else:
            got, want = static.encode_images(test_images), fp32.encode_images(test_images)
        overlap = quantize.top_k_overlap(got, want, archive, args.k)
        cosine = np.sum(got * want, axis=1)
        gate = quantize.record_agreement(graph, tower, float(overlap.mean()), len(got), len(archive))
        yield Result(
            benchmark="runtime-agreement-static",
            params={
                "arch": "smoke" if args.smoke else args.arch,
                "weights": "random",
                "tower": tower,
                "queries": len(got),
                "vectors": len(archive),
                "k": args.k,
                "calibration": f"{len(calibration)} train captions" if tower == "text"
                else f"{len(names)} train images",
                "fp32_tail": args.fp32_tail,
                "int8": "onnxruntime quantize_static QDQ, weight MatMul/Gemm/Conv only, per-channel QInt8 weights, "
                "QUInt8 activations, MinMax",
            },
            metrics={
                "top10_overlap_static_vs_fp32": gate.overlap,
                "top10_overlap_min": float(overlap.min()),
                "cosine_static_fp32_mean": float(cosine.mean()),
                "cosine_static_fp32_min": float(cosine.min()),
                "gate_passed": int(gate.passed),
                "graph_mb": graph.stat().st_size / 2**20,
                "fp32_graph_mb": fp32_graphs[tower].stat().st_size / 2**20,
            },
            raw={"overlap": overlap.tolist(), "cosine": cosine.tolist(), "quantize_s": quantize_s,
                 "train": str(train), "split": str(split)},
            notes=f"gate {'passed' if gate.passed else 'FAILED'} (>= {gate.threshold}), recorded in "
            f"{quantize.AGREEMENT_FILE} beside the graph; calibrated on train, measured on test",
        )
