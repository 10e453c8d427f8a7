"""Configuration of `posapl train` and `posapl eval`: one pydantic-settings object, from flags or `POSAPL_*`.

Defaults are the reference recipe (AdamW lr 1e-3, weight decay 0.01, betas 0.9/0.98, cosine schedule,
10 epochs, batch 256, margin 0.1, gamma 2, float32, the last partial batch dropped, the reference's
AutoContrast and Sharpness quirks); each deviation is an option, so it can be measured against the recipe.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from posapl.config import DEFAULT_ARCH, DEFAULT_PRETRAINED
from posapl.rerank import DEFAULT_RECIPROCAL_ALPHA, DEFAULT_RECIPROCAL_K

RERANK_CHOICES = ("none", "multivariate", "reciprocal", "all")


class TrainSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="POSAPL_", extra="ignore")

    # model
    preset: Literal["rsitmd", "rsicd"] = "rsitmd"
    arch: str = Field(DEFAULT_ARCH, description="open_clip architecture name or JSON model config path")
    pretrained: str = Field(DEFAULT_PRETRAINED, description="open_clip tag, local weights file, or 'random'")

    # data: any supported annotation format; `*_split` picks the rows of Karpathy files
    train: Path | None = None
    val: Path | None = None
    test: Path | None = None
    train_split: str = "train"
    val_split: str = "val"
    test_split: str = "test"
    train_images: Path | None = Field(None, description="image folder of --train when not the default")
    train_limit: int | None = Field(None, ge=1, description="train on the first N images only (smoke runs)")
    val_images: Path | None = None
    test_images: Path | None = None

    # optimisation
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(256, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    beta1: float = Field(0.9, ge=0, lt=1)
    beta2: float = Field(0.98, ge=0, lt=1)
    eps: float = Field(1e-8, gt=0)
    margin: float = 0.1
    gamma: float = Field(2.0, gt=0)
    exp_logit_scale: bool = Field(False, description="scale logits by exp(logit_scale) (CLIP) not logit_scale")
    seed: int = 0

    # run
    out: Path = Field(Path("runs/posapl"), description="run directory: checkpoints, log.jsonl, results.json")
    resume: bool = True
    pos_cache: Path | None = Field(None, description="POS tag cache file (default: pos-tags.json beside --out)")
    device: str = Field("auto", description="auto, cpu, cuda, cuda:N")
    num_workers: int = Field(min(8, os.cpu_count() or 1), ge=0, description="image decoding processes")
    eval_batch_size: int = Field(256, ge=1)
    threads: int | None = Field(None, ge=1, description="CPU threads for torch (default: torch's choice)")
    progress: bool = True

    # eval
    checkpoint: Path | None = None
    zero_shot: bool = False
    split: Path | None = None
    split_name: str = "test"
    images: Path | None = None
    rerank: Literal["none", "multivariate", "reciprocal", "all"] = "none"
    reciprocal_k: int = Field(DEFAULT_RECIPROCAL_K, ge=1, description="eval: k of the reciprocal re-weighting")
    reciprocal_alpha: float = Field(DEFAULT_RECIPROCAL_ALPHA, ge=0, description="eval: its alpha")
    tune_reciprocal: bool = Field(False, description="eval: grid-search reciprocal k and alpha on a val --split")
    results: Path | None = Field(None, description="eval: write the metrics JSON here")

    # recipe options: the defaults are the reference's behaviour, the alternatives are measured deviations
    autocontrast: Literal["reference", "fixed"] = Field(
        "reference", description="reference: its uint8 wrap-around quirk (channels with minimum > 0 turn white)"
    )
    sharpness: Literal["reference", "fixed"] = Field(
        "reference", description="reference: uint8 cast without clipping (overshoots wrap mod 256)"
    )
    precision: Literal["fp32", "bf16"] = Field("fp32", description="training forward pass: float32 or bf16 autocast")
    drop_last: bool = Field(True, description="drop the last partial training batch, as the reference does")

    @model_validator(mode="after")
    def _check(self) -> TrainSettings:
        if self.checkpoint is not None and self.zero_shot:
            raise ValueError("give either a checkpoint or zero_shot, not both")
        return self

    def pos_cache_path(self) -> Path:
        return self.pos_cache or self.out.resolve().parent / "pos-tags.json"
