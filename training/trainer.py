"""Train POSAPL adapters on a frozen CLIP, select the epoch on the validation split, report it on test.

Run directory (`--out`):
  epoch-NNN/      adapters + config (a loadable checkpoint) + trainer_state.pt (optimizer, scheduler,
                  progress); trainer_state.pt is written last, so a directory without it is an interrupted
                  save and is ignored. Only the latest and the best epoch are kept.
  best/           the selected epoch's checkpoint (what `posapl eval --checkpoint` and indexing use)
  log.jsonl       one line per epoch (losses, lr, val metrics), then one line with the final test metrics
  results.json    selected epoch, its val and test metrics
The test split is evaluated once, after training, for the selected epoch only: it never influences the
choice. Each epoch reseeds shuffling and augmentation from (seed, epoch), so a resumed run continues
exactly as an uninterrupted one would. As in the reference, the forward pass is float32 (bf16 autocast is an
option) and the last partial batch of an epoch is dropped: the triplet loss sums over in-batch negatives, so a
small last batch would be a different objective.
"""

from __future__ import annotations

import json
import math
import random
import re
import shutil
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file
from torch.utils.data import DataLoader
from tqdm import tqdm

from posapl.checkpoint import CONFIG_FILE, WEIGHTS_FILE, load_model, read_checkpoint_meta, save_checkpoint
from posapl.config import preset_config
from posapl.model import POSAPL, build_model, trainable_parameter_count
from posapl.pos import PosTagger
from training.annotations import load_eval_split, load_train_pairs
from training.augment import train_transform
from training.datasets import PosCache, TrainDataset, collate_pairs
from training.evaluate import evaluate, resolve_device
from training.losses import posapl_loss
from training.settings import TrainSettings

STATE_FILE = "trainer_state.pt"
LOG_FILE = "log.jsonl"
RESULTS_FILE = "results.json"
BEST_DIR = "best"
EPOCH_DIR = re.compile(r"^epoch-(\d{3,})$")
# Settings a resumed run must share with the run it continues; anything else (device, workers) may change.
RECIPE_FIELDS = ("preset", "arch", "pretrained", "epochs", "batch_size", "lr", "weight_decay", "beta1", "beta2",
                 "eps", "margin", "gamma", "exp_logit_scale", "seed", "train_limit", "autocontrast", "sharpness",
                 "precision", "drop_last")


class ResumeError(ValueError):
    """The run directory holds a run that the requested settings cannot continue."""


@dataclass
class TrainResult:
    best_epoch: int
    val: dict[str, float]
    test: dict[str, float] | None
    checkpoint: Path
    epoch_losses: list[float]


def _recipe(settings: TrainSettings) -> dict[str, Any]:
    return {name: getattr(settings, name) for name in RECIPE_FIELDS} | {"train": str(Path(settings.train).resolve())}


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _epoch_dirs(out: Path) -> dict[int, Path]:
    """Complete epoch checkpoints by epoch number."""
    found = {}
    for path in out.glob("epoch-*"):
        match = EPOCH_DIR.match(path.name)
        if match and (path / STATE_FILE).is_file():
            found[int(match.group(1))] = path
    return found


def _clear_run(out: Path) -> None:
    for path in out.glob("epoch-*"):
        if EPOCH_DIR.match(path.name) and path.is_dir():
            shutil.rmtree(path)
    shutil.rmtree(out / BEST_DIR, ignore_errors=True)
    for name in (LOG_FILE, RESULTS_FILE):
        (out / name).unlink(missing_ok=True)


def _append_log(out: Path, record: dict[str, Any]) -> None:
    with open(out / LOG_FILE, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")


def precision_context(device: torch.device, precision: str) -> AbstractContextManager:
    """float32 unless bf16 is asked for; then bf16 autocast on whatever device trains (CPU included)."""
    return torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16" else nullcontext()


def _build_or_resume(settings: TrainSettings, out: Path) -> tuple[POSAPL, dict[str, Any] | None]:
    epochs = _epoch_dirs(out)
    if not settings.resume or not epochs:
        if not settings.resume:
            _clear_run(out)
        model = build_model(settings.preset, settings.pretrained, arch=settings.arch, seed=settings.seed)
        return model, None
    last = epochs[max(epochs)]
    state = torch.load(last / STATE_FILE, map_location="cpu", weights_only=True)
    if state["recipe"] != _recipe(settings):
        wanted = _recipe(settings)
        changed = sorted(k for k in state["recipe"].keys() | wanted.keys() if state["recipe"].get(k) != wanted.get(k))
        raise ResumeError(f"{out} holds a run with different settings ({', '.join(changed)}); "
                          "use another --out, or --no-resume to start it over")
    model = load_model(last, pretrained=settings.pretrained)
    if model.config != preset_config(settings.preset, settings.arch):
        raise ResumeError(f"{last} was not trained with preset {settings.preset!r} on {settings.arch}")
    return model, state


def _load_adapters(model: POSAPL, directory: Path) -> None:
    """Put a saved epoch's adapters into the live model, checking they are the ones its config records."""
    model.adapters.load_state_dict(load_file(str(directory / WEIGHTS_FILE)))
    if model.fingerprint() != read_checkpoint_meta(directory)["fingerprint"]:
        raise ResumeError(f"{directory} does not match the model being trained")


def _publish_best(out: Path, source: Path) -> Path:
    """Copy the selected epoch to out/best (via a temporary directory, so `best` is never half written)."""
    tmp = out / f".{BEST_DIR}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    for name in (WEIGHTS_FILE, CONFIG_FILE):
        shutil.copy2(source / name, tmp / name)
    shutil.rmtree(out / BEST_DIR, ignore_errors=True)
    tmp.rename(out / BEST_DIR)
    return out / BEST_DIR


def train(settings: TrainSettings, tagger: PosTagger | None = None) -> TrainResult:
    """Run (or resume) training as `settings` say; `tagger` lets a caller reuse an already loaded spaCy pipeline."""
    if settings.train is None or settings.val is None:
        raise ValueError("training needs --train and --val annotation files (model selection uses val, never test)")
    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(settings.device)
    if settings.threads:
        torch.set_num_threads(settings.threads)

    pairs = load_train_pairs(settings.train, settings.train_images, settings.train_split)
    if settings.train_limit is not None:
        pairs = pairs.first_images(settings.train_limit)
    val = load_eval_split(settings.val, settings.val_images, settings.val_split)
    test = load_eval_split(settings.test, settings.test_images, settings.test_split) if settings.test else None
    pos_cache = PosCache(settings.pos_cache_path(), tagger or PosTagger())

    _seed_everything(settings.seed)
    model, state = _build_or_resume(settings, out)
    model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise RuntimeError("the model exposes no trainable adapter parameters")
    dataset = TrainDataset(pairs, pos_cache, train_transform(model.image_size, settings.autocontrast,
                                                             settings.sharpness))
    if settings.drop_last and len(dataset) < settings.batch_size:
        raise ValueError(f"{len(dataset)} training pairs make no full batch of {settings.batch_size}; "
                         "lower --batch-size (or pass --keep-last-batch)")
    steps_per_epoch = (len(dataset) // settings.batch_size if settings.drop_last
                       else math.ceil(len(dataset) / settings.batch_size))
    optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay,
                                  betas=(settings.beta1, settings.beta2), eps=settings.eps)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=settings.epochs * steps_per_epoch)
    start, best_epoch, best_val, losses = 1, 0, {"r_mean": -math.inf}, []
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start, best_epoch, best_val = state["epoch"] + 1, state["best_epoch"], state["best_val"]
        losses = list(state["epoch_losses"])
    truncate = model.config.text_adapter_causal

    for epoch in range(start, settings.epochs + 1):
        began = time.perf_counter()
        _seed_everything(settings.seed * 1009 + epoch)
        loader = DataLoader(
            dataset,
            batch_size=settings.batch_size,
            shuffle=True,
            generator=torch.Generator().manual_seed(settings.seed * 1009 + epoch),
            num_workers=settings.num_workers,
            collate_fn=collate_pairs,
            pin_memory=device.type == "cuda",
            drop_last=settings.drop_last,
        )
        model.train()
        sums = {"total": 0.0, "alignment": 0.0, "triplet": 0.0}
        bar = tqdm(loader, desc=f"epoch {epoch}/{settings.epochs}", disable=not settings.progress)
        for images, captions, pos, ids in bar:
            tokens = model.tokenize(captions)
            pos_tokens = model.tokenize([" ".join(words) for words in pos])
            if truncate:
                width = int((tokens.argmax(dim=-1) + 1).max())
                tokens, pos_tokens = tokens[:, :width], pos_tokens[:, :width]
            with precision_context(device, settings.precision):
                image_feat = model.encode_image(images.to(device, non_blocking=True))
                text_feat = model.encode_text(tokens.to(device), pos_tokens.to(device))
            parts = posapl_loss(image_feat, text_feat, ids.to(device), model.logit_scale.detach(),
                                settings.margin, settings.gamma, settings.exp_logit_scale)
            optimizer.zero_grad(set_to_none=True)
            parts.total.backward()
            optimizer.step()
            scheduler.step()
            for key in sums:
                sums[key] += getattr(parts, key).item()
            bar.set_postfix(loss=f"{sums['total'] / (bar.n + 1):.4f}")
        epoch_loss = {key: value / len(loader) for key, value in sums.items()}
        losses.append(epoch_loss["total"])

        val_metrics = evaluate(model, val, pos_cache, batch_size=settings.eval_batch_size,
                               num_workers=settings.num_workers, progress=settings.progress)["none"]
        if val_metrics["r_mean"] > best_val["r_mean"]:
            best_epoch, best_val = epoch, val_metrics
        directory = save_checkpoint(model, out / f"epoch-{epoch:03d}")
        torch.save(
            {
                "epoch": epoch,
                "best_epoch": best_epoch,
                "best_val": best_val,
                "epoch_losses": losses,
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "recipe": _recipe(settings),
            },
            directory / STATE_FILE,
        )
        for number, path in _epoch_dirs(out).items():
            if number not in (epoch, best_epoch):
                shutil.rmtree(path)
        _append_log(out, {
            "epoch": epoch,
            "train_loss": epoch_loss["total"],
            "alignment_loss": epoch_loss["alignment"],
            "triplet_loss": epoch_loss["triplet"],
            "lr": scheduler.get_last_lr()[0],
            "val": val_metrics,
            "best_epoch": best_epoch,
            "seconds": round(time.perf_counter() - began, 2),
        })

    best_dir = _epoch_dirs(out)[best_epoch]
    _load_adapters(model, best_dir)
    checkpoint = _publish_best(out, best_dir)
    test_metrics = None
    if test is not None:
        test_metrics = evaluate(model, test, pos_cache, batch_size=settings.eval_batch_size,
                                num_workers=settings.num_workers, progress=settings.progress)["none"]
        _append_log(out, {"event": "test", "epoch": best_epoch, "test": test_metrics})
    result = TrainResult(best_epoch=best_epoch, val=best_val, test=test_metrics, checkpoint=checkpoint,
                         epoch_losses=losses)
    (out / RESULTS_FILE).write_text(json.dumps({
        "best_epoch": best_epoch,
        "val": best_val,
        "test": test_metrics,
        "checkpoint": str(checkpoint),
        "epoch_losses": losses,
        "trainable_parameters": trainable_parameter_count(model),
    }, indent=2))
    return result
