"""Configuration of `posapl index …`: one pydantic-settings object, from flags or `POSAPL_*` environment.

What defines the store (source folders, caption files, model, index kind, pixel limit, retention, keep
missing, profile size) is saved in ROOT/config.json by `build`, so the nightly `update` needs only ROOT and
cannot drift from the build; the remaining fields only say how this run executes (device, workers, batch size).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from index.layout import CONFIG
from posapl.config import DEFAULT_ARCH, DEFAULT_PRETRAINED
from posapl.rerank import DEFAULT_PROFILE_POINTS


class StoreFields(BaseModel):
    """What defines a store besides its inputs: the model, the index and what a version keeps. Declared once;
    `StoreConfig` saves them and `IndexSettings` reads them from flags or the environment."""

    checkpoint: str | None = None
    pretrained: str = DEFAULT_PRETRAINED
    arch: str = DEFAULT_ARCH
    preset: Literal["rsitmd", "rsicd"] = "rsitmd"
    index_kind: Literal["flat", "ivf"] = "flat"
    nlist: int = Field(4096, ge=1)
    nprobe: int = Field(32, ge=1)
    max_pixels: int = Field(40_000_000, ge=1, description="decoded pixels above this are a decompression bomb")
    keep_versions: int = Field(3, ge=1)
    keep_missing: bool = Field(False, description="update keeps entries whose files are gone")
    profile_points: int = Field(
        DEFAULT_PROFILE_POINTS,
        ge=0,
        description="similarities kept per item for online re-ranking (posapl.rerank.build_profiles); "
        "0 keeps the whole sorted profile, which makes online GaLR ranks exact at bank-size floats per item",
    )

    @field_validator("profile_points")
    @classmethod
    def _profile_points(cls, value: int) -> int:
        if value == 1:
            raise ValueError("profile_points must be 0 (whole profile) or at least 2")
        return value


class StoreConfig(StoreFields):
    """The identity of a store, saved at build time in ROOT/config.json."""

    sources: list[Path] = Field(min_length=1, description="image folders, absolute")
    captions: list[Path] = Field(default_factory=list, description="annotation JSON / text-lines caption files")

    @classmethod
    def load(cls, root: Path) -> StoreConfig:
        path = root / CONFIG
        if not path.is_file():
            raise FileNotFoundError(f"{root} is not an index store ({CONFIG} missing); run `posapl index build` first")
        return cls.model_validate(json.loads(path.read_text()))

    def check(self) -> None:
        """Refuse a build whose inputs do not exist, before anything is written to the store."""
        missing = [str(p) for p in self.sources if not p.is_dir()] + [str(p) for p in self.captions if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"not found: {', '.join(missing)}")

    def save(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        tmp = root / f".{CONFIG}.tmp"
        with open(tmp, "w") as handle:
            handle.write(self.model_dump_json(indent=2))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, root / CONFIG)


class IndexSettings(StoreFields, BaseSettings):
    model_config = SettingsConfigDict(env_prefix="POSAPL_", extra="ignore")

    root: Path | None = Field(None, description="index store root (holds CURRENT, versions/, config.json)")
    images: list[Path] | None = Field(None, description="build: image folders")
    captions: list[Path] | None = Field(None, description="build: caption files")

    device: str = Field("auto", description="torch device for the encoder: auto, cpu, cuda, cuda:1 …")
    batch_size: int = Field(64, ge=1, le=4096)
    num_workers: int = Field(min(8, os.cpu_count() or 1), ge=0, description="DataLoader decode processes")
    hash_threads: int = Field(8, ge=1)
    progress: bool = True
    fault_pause_at: str | None = Field(
        None,
        description="crash testing only: 'batch:N', 'staged', 'renamed' or 'published' makes the job stop "
        "there (it waits to be killed) so a test can SIGKILL it at an exact point",
    )
    ray_address: str | None = Field(
        None,
        description="embed with Ray Data instead of in this process: 'local' starts a local cluster, 'auto' joins "
        "the cluster this machine is a node of, HOST:6379 the cluster whose head is HOST (run on a node of it)",
    )
    ray_actors: int | None = Field(
        None, ge=1, description="embedding actors on the cluster (default: one per GPU, else half the CPUs)"
    )

    def store_config(self) -> StoreConfig:
        if not self.images:
            raise ValueError("build needs at least one image folder (--images)")
        return StoreConfig(
            **self.model_dump(include=set(StoreFields.model_fields) - {"checkpoint"}),
            sources=[p.resolve() for p in self.images],
            captions=[p.resolve() for p in self.captions or []],
            checkpoint=str(Path(self.checkpoint).resolve()) if self.checkpoint else None,
        )
