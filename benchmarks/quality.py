"""Retrieval quality: R@1/5/10 in both directions and mR on a split, for zero-shot CLIP and a POSAPL
checkpoint, each without and with every offline re-ranking method.

One table row per (system, re-ranking). The embeddings of a system are computed once and every
re-ranking method is applied to the same similarity matrix, so differences between rows of one system
come from re-ranking alone. Embedding, re-ranking and scoring are `training.evaluate`'s, so these rows and
`posapl eval` cannot disagree. With `--pretrained random` the numbers are chance level; the point of such a
run is that the whole path works on the real split and how long it takes.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from benchmarks.harness import DEFAULT_SPLIT, Result, smoke_arch, split_path
from posapl.config import DEFAULT_PRETRAINED

RERANK_METHODS = ("none", "multivariate", "reciprocal")  # training.evaluate.RERANK_METHODS, importable without torch


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--split", default=str(DEFAULT_SPLIT), help="annotation file (any supported format)")
    parser.add_argument("--split-name", default="test", help="which split of the annotation file")
    parser.add_argument("--image-root", type=Path, default=None, help="images folder when not beside the file")
    parser.add_argument(
        "--pretrained",
        default=None,
        help="base weights: open_clip tag, local weights file, or 'random' (timing/plumbing only); default: "
        "laion2b_s34b_b79k for zero-shot, a checkpoint's own base for --checkpoint",
    )
    parser.add_argument("--arch", default="ViT-B-32", help="open_clip architecture of the zero-shot model")
    parser.add_argument("--preset", default="rsitmd", choices=["rsitmd", "rsicd"], help="zero-shot preset")
    parser.add_argument("--checkpoint", type=Path, default=None, help="POSAPL checkpoint directory to compare")
    parser.add_argument("--no-zero-shot", action="store_true", help="evaluate only the checkpoint")
    parser.add_argument("--rerank", nargs="+", default=list(RERANK_METHODS), choices=RERANK_METHODS)
    parser.add_argument("--limit-images", type=int, default=None, help="first N images only (quick checks)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--num-workers", type=int, default=2, help="image decode processes")


def subset(split, count: int):
    """The first `count` images and their captions, indices renumbered, as the same EvalSplit type."""
    from dataclasses import replace

    if count >= len(split.image_paths):
        return split
    keep_texts = sorted(t for i in range(count) for t in split.img2txt[i])
    new_text = {old: new for new, old in enumerate(keep_texts)}
    return replace(
        split,
        image_paths=split.image_paths[:count],
        captions=[split.captions[t] for t in keep_texts],
        img2txt={i: [new_text[t] for t in split.img2txt[i]] for i in range(count)},
        txt2img={new_text[t]: split.txt2img[t] for t in keep_texts},
    )


def _systems(args: argparse.Namespace, arch: str, pretrained: str | None):
    """(label, loader) pairs; models load one at a time so two ViT-B/32 copies never share the 2-core box."""
    from posapl.checkpoint import load_model

    systems = []
    if not args.no_zero_shot:
        systems.append(("zero-shot", lambda: load_model(None, pretrained, args.preset, arch)))
    if args.checkpoint is not None:
        systems.append((f"checkpoint {args.checkpoint.name}", lambda: load_model(args.checkpoint, pretrained)))
    if not systems:
        raise ValueError("nothing to evaluate: give --checkpoint or drop --no-zero-shot")
    return systems


def _smoke_checkpoint(arch: str) -> Path:
    """A checkpoint of the smoke architecture with non-zero adapters, so the checkpoint path is exercised
    and differs from zero-shot."""
    import tempfile

    import torch

    from posapl.checkpoint import save_checkpoint
    from posapl.model import build_model

    model = build_model("rsicd", "random", arch=arch)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in model.adapters.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * 0.02)
    return save_checkpoint(model, Path(tempfile.mkdtemp(prefix="posapl-bench-ckpt-")))


def run(args: argparse.Namespace) -> list[Result]:
    from posapl.pos import PosTagger
    from training.annotations import load_annotations
    from training.datasets import PosCache
    from training.evaluate import embed_images, embed_texts, metrics_for

    arch, pretrained, limit = args.arch, args.pretrained, args.limit_images
    if args.smoke:
        arch, pretrained, limit = str(smoke_arch()), "random", 16
        args.checkpoint = args.checkpoint or _smoke_checkpoint(arch)
    path = split_path(args.split)
    data = load_annotations(path, args.split_name, args.image_root)
    if limit is not None:
        data = subset(data, limit)
    pos_cache = PosCache(None, PosTagger())

    results = []
    for label, load in _systems(args, arch, pretrained):
        began = time.perf_counter()
        model = load().eval()
        load_s = time.perf_counter() - began
        began = time.perf_counter()
        images = embed_images(model, data, args.batch_size, 0 if args.smoke else args.num_workers)
        image_s = time.perf_counter() - began
        began = time.perf_counter()
        texts = embed_texts(model, data, pos_cache)
        text_s = time.perf_counter() - began
        sims = images @ texts.T
        del model
        for method in args.rerank:
            began = time.perf_counter()
            metrics = metrics_for(sims, data, method)
            rerank_s = time.perf_counter() - began
            results.append(
                Result(
                    benchmark="quality",
                    params={
                        "split": f"{path.name}:{args.split_name}",
                        "images": len(data.image_paths),
                        "captions": len(data.captions),
                        "system": label,
                        "arch": "smoke" if args.smoke else Path(arch).name,
                        "weights": pretrained or (DEFAULT_PRETRAINED if label == "zero-shot" else "checkpoint base"),
                        "rerank": method,
                    },
                    metrics=metrics,
                    raw={
                        "load_s": load_s,
                        "image_encode_s": image_s,
                        "text_encode_s": text_s,
                        "rerank_and_score_s": rerank_s,
                        "split_path": str(path),
                    },
                    notes=f"encode {image_s:.0f} s images + {text_s:.0f} s captions, re-rank + score {rerank_s:.1f} s"
                    + ("; random weights: chance level" if pretrained == "random" else ""),
                )
            )
    return results
