"""`posapl train` and `posapl eval`.

Exit codes: 0 success, 1 the job failed (unreadable data, missing weights, a run that cannot be resumed),
2 invalid arguments or settings.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from posapl.cli import settings_from_args
from training.settings import RERANK_CHOICES, TrainSettings

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _model_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", choices=["rsitmd", "rsicd"], help="adapter layout (default rsitmd)")
    parser.add_argument("--arch", help="open_clip architecture or JSON model config path (default ViT-B-32)")
    parser.add_argument("--pretrained", help="open_clip tag, local weights file, or 'random' (tests only)")
    parser.add_argument("--device", help="auto (default), cpu, cuda, cuda:N")
    parser.add_argument("--num-workers", type=int, help="image decoding processes")
    parser.add_argument("--pos-cache", type=Path, help="POS tag cache file")
    parser.add_argument("--threads", type=int, help="CPU threads for torch (fewer is faster on a busy machine)")
    parser.add_argument("--no-progress", dest="progress", action="store_const", const=False)


def register(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser("train", help="train POSAPL adapters; select on val, report test")
    train.add_argument("--train", type=Path, help="training annotations (Karpathy JSON, HarMA JSON or precomp)")
    train.add_argument("--val", type=Path, help="validation annotations: model selection uses these")
    train.add_argument("--test", type=Path, help="test annotations: reported once for the selected epoch")
    for name in ("train", "val", "test"):
        train.add_argument(f"--{name}-split", help=f"split name of --{name} inside Karpathy files")
        train.add_argument(f"--{name}-images", type=Path, help=f"image folder of --{name} (default: beside it)")
    train.add_argument("--train-limit", type=int, help="train on the first N images only (smoke runs)")
    _model_flags(train)
    train.add_argument("--epochs", type=int)
    train.add_argument("--batch-size", type=int)
    train.add_argument("--lr", type=float)
    train.add_argument("--weight-decay", type=float)
    train.add_argument("--seed", type=int)
    train.add_argument("--eval-batch-size", type=int)
    train.add_argument("--exp-logit-scale", action="store_const", const=True,
                       help="scale logits by exp(logit_scale) as CLIP does (the reference uses logit_scale)")
    train.add_argument("--autocontrast", choices=["reference", "fixed"],
                       help="RandAugment AutoContrast: the reference's uint8 wrap-around quirk (default) or fixed")
    train.add_argument("--sharpness", choices=["reference", "fixed"],
                       help="RandAugment Sharpness: the reference's unclipped uint8 cast (default) or clipped")
    train.add_argument("--precision", choices=["fp32", "bf16"],
                       help="training forward pass: float32 as the reference (default) or bf16 autocast")
    train.add_argument("--keep-last-batch", dest="drop_last", action="store_const", const=False,
                       help="also train on the last partial batch (the reference drops it)")
    train.add_argument("--out", type=Path, help="run directory (default runs/posapl)")
    train.add_argument("--no-resume", dest="resume", action="store_const", const=False,
                       help="start over instead of continuing the run in --out")
    train.set_defaults(func=_train)

    evaluate = subparsers.add_parser("eval", help="retrieval metrics of a checkpoint or zero-shot CLIP on a split")
    source = evaluate.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", type=Path, help="checkpoint directory (e.g. RUN/best)")
    source.add_argument("--zero-shot", action="store_const", const=True, help="base CLIP with zero adapters")
    evaluate.add_argument("--split", type=Path, required=True, help="annotation file (any supported format)")
    evaluate.add_argument("--split-name", help="which split of a Karpathy file (default test)")
    evaluate.add_argument("--images", type=Path, help="image folder when not beside the annotation file")
    evaluate.add_argument("--rerank", choices=RERANK_CHOICES, help="re-ranking (default none; all = every method)")
    evaluate.add_argument("--reciprocal-k", type=int, help="k of the reciprocal re-weighting (default 10)")
    evaluate.add_argument("--reciprocal-alpha", type=float, help="alpha of the reciprocal re-weighting (default 0.1)")
    evaluate.add_argument(
        "--tune-reciprocal",
        action="store_const",
        const=True,
        help="grid-search reciprocal k and alpha by mR on --split; give a validation split, never test",
    )
    evaluate.add_argument("--batch-size", dest="eval_batch_size", type=int)
    evaluate.add_argument("--out", dest="results", type=Path, help="write the metrics JSON here")
    _model_flags(evaluate)
    evaluate.set_defaults(func=_eval)


def _fail(command: str, exc: BaseException) -> int:
    print(f"posapl {command}: {exc}", file=sys.stderr)
    return EXIT_FAILED


def _train(args: argparse.Namespace) -> int:
    from training.trainer import train

    settings = settings_from_args(TrainSettings, args)
    try:
        result = train(settings)
    except (ValueError, OSError, RuntimeError) as exc:
        return _fail("train", exc)
    print(json.dumps({"best_epoch": result.best_epoch, "val": result.val, "test": result.test,
                      "checkpoint": str(result.checkpoint)}, indent=2))
    return EXIT_OK


def _eval(args: argparse.Namespace) -> int:
    settings = settings_from_args(TrainSettings, args)
    try:
        metrics = run_eval(settings)
    except (ValueError, OSError, RuntimeError) as exc:
        return _fail("eval", exc)
    text = json.dumps(metrics, indent=2)
    print(text)
    if settings.results is not None:
        settings.results.parent.mkdir(parents=True, exist_ok=True)
        settings.results.write_text(text + "\n")
    return EXIT_OK


def run_eval(settings: TrainSettings) -> dict:
    """One metric dict for a single re-ranking method, else one per method (plus "reciprocal_tuning" when
    asked for)."""
    import torch

    from posapl.checkpoint import load_model
    from posapl.pos import PosTagger
    from training.annotations import load_eval_split
    from training.datasets import PosCache
    from training.evaluate import metrics_for, rerank_methods, resolve_device, similarities, tune_reciprocal

    if settings.split is None:
        raise ValueError("eval needs --split")
    methods = rerank_methods(settings.rerank)
    if settings.threads:
        torch.set_num_threads(settings.threads)
    split = load_eval_split(settings.split, settings.images, settings.split_name)
    if settings.checkpoint is None and not settings.zero_shot:
        raise ValueError("eval needs --checkpoint DIR or --zero-shot")
    # Only explicitly given base settings reach the loader: a checkpoint names its own base model.
    given = {field: getattr(settings, field) for field in ("pretrained", "arch") if field in settings.model_fields_set}
    model = load_model(settings.checkpoint, given.get("pretrained"), settings.preset, given.get("arch"))
    model.to(resolve_device(settings.device))
    pos_cache = PosCache(settings.pos_cache, PosTagger())
    sims = similarities(model, split, pos_cache, settings.eval_batch_size, settings.num_workers, settings.progress)
    reciprocal = {"k": settings.reciprocal_k, "alpha": settings.reciprocal_alpha}
    results = {m: metrics_for(sims, split, m, **(reciprocal if m == "reciprocal" else {})) for m in methods}
    if settings.tune_reciprocal:
        return {**results, "reciprocal_tuning": tune_reciprocal(sims, split)}
    return results[methods[0]] if len(methods) == 1 else results
