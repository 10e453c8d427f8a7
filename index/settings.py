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

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from index.ignore import image_folder_problem
from index.layout import CONFIG
from index.sources.bands import check_patterns
from index.sources.stac import catalog_file
from index.vectors import FLAT_MAX_VECTORS, IndexSpec
from posapl.config import DEFAULT_ARCH, DEFAULT_PRETRAINED, absolute_if_file
from posapl.rerank import DEFAULT_PROFILE_POINTS

DEFAULT_INDEX_ROOT = Path("data/index")


class StoreFields(BaseModel):
    """What defines a store besides its inputs: the model, the index and what a version keeps. Declared once;
    `StoreConfig` saves them and `IndexSettings` reads them from flags or the environment."""

    checkpoint: str | None = None
    pretrained: str | None = Field(
        None, description=f"base weights; none = the checkpoint's own, or {DEFAULT_PRETRAINED} zero-shot"
    )
    arch: str | None = Field(None, description=f"zero-shot architecture; none = the checkpoint's, or {DEFAULT_ARCH}")
    preset: Literal["rsitmd", "rsicd"] = "rsitmd"
    index_kind: Literal["auto", "flat", "hnsw", "ivf", "ivf-sq8", "sq8", "ivf-pq"] = Field(
        "auto", description="image index; auto chooses by archive size and memory budget (index.vectors)"
    )
    nlist: int | None = Field(None, ge=1, description="IVF lists; None = about 4*sqrt(images)")
    nprobe: int | None = Field(None, ge=1, description="IVF lists searched; None = tuned to the recall target")
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

    ef_search: int | None = Field(None, ge=1, description="HNSW efSearch; None = tuned to the recall target")
    hnsw_m: int = Field(32, ge=4, description="HNSW links per node")
    flat_max_vectors: int = Field(FLAT_MAX_VECTORS, ge=0, description="auto: exact search below this many images")
    index_memory_mib: int | None = Field(
        None, ge=1, description="auto: memory budget of the image index; compressed codes only above it"
    )
    recall_target: float = Field(0.99, gt=0, le=1, description="recall@recall_k an approximate index is tuned to")
    recall_k: int = Field(100, ge=1, description="K' of the recall target (the service's re-ranking candidates)")
    refine_factor: int | None = Field(
        None, ge=1, description="compressed kinds: K' x this candidates re-scored exactly; None = tuned or default"
    )
    pq_m: int | None = Field(None, ge=1, description="ivf-pq: bytes of code per image; None = dim / 8")

    def index_spec(self) -> IndexSpec:
        return IndexSpec(
            kind=self.index_kind,
            nlist=self.nlist,
            nprobe=self.nprobe,
            hnsw_m=self.hnsw_m,
            ef_search=self.ef_search,
            flat_max=self.flat_max_vectors,
            memory_mib=self.index_memory_mib,
            recall_target=self.recall_target,
            recall_k=self.recall_k,
            refine_factor=self.refine_factor,
            pq_m=self.pq_m,
        )

    tile_sizes: list[int] = Field(
        [256],
        min_length=1,
        description="window sizes (px) an image larger than the smallest is cut into; each window is resized to "
        "the model input. RSICD/RSITMD chips are 224-256 px",
    )
    tile_overlap: float = Field(0.25, ge=0.0, lt=0.9, description="fraction of a window shared with its neighbour")
    bands: list[int] | None = Field(
        None, description="1-based bands to read as R,G,B (3) or grey (1), e.g. 4,3,2; default: the file's RGB "
        "colour bands, else its first three (or one) bands"
    )
    min_valid: float = Field(
        0.5, ge=0.0, le=1.0, description="tiles with less of their pixels holding data are dropped"
    )
    max_tiles_per_scene: int = Field(50_000, ge=1, description="a scene needing more tiles is skipped, with the reason")

    @field_validator("tile_sizes")
    @classmethod
    def _tile_sizes(cls, value: list[int]) -> list[int]:
        if any(size < 16 for size in value):
            raise ValueError("tile sizes must be at least 16 px")
        return sorted(set(value))

    @field_validator("bands")
    @classmethod
    def _bands(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and (len(value) not in (1, 3) or any(band < 1 for band in value)):
            raise ValueError("bands must be 1 or 3 band numbers, counted from 1 (e.g. 4,3,2)")
        return value


class StoreConfig(StoreFields):
    """The identity of a store, saved at build time in ROOT/config.json."""

    sources: list[Path] = Field(default_factory=list, description="image folders, absolute")
    captions: list[Path] = Field(default_factory=list, description="annotation JSON / text-lines caption files")
    stac: list[Path] = Field(
        default_factory=list, description="STAC catalogs, collections, item collections or item lines, absolute "
        "(index.sources.stac); each run re-reads them"
    )
    stac_assets: list[str] | None = Field(
        None, description="asset keys or eo:bands common names stacked as one scene per item (default: visual)"
    )

    band_folders: list[Path] = Field(
        default_factory=list, description="folders of per-band files, absolute (index.sources.bands)"
    )
    band_files: list[str] | None = Field(
        None, description="one pattern per band, each with one *, stacked in this order, e.g. *_B04.tif,*_B03.tif"
    )

    @field_validator("band_files")
    @classmethod
    def _band_files(cls, value: list[str] | None) -> list[str] | None:
        return value if value is None else check_patterns(value)

    @model_validator(mode="after")
    def _has_inputs(self) -> StoreConfig:
        if not self.sources and not self.stac and not self.band_folders:
            raise ValueError(
                "a store needs at least one image folder (--images), STAC catalog (--stac) or band folder "
                "(--band-folders)"
            )
        return self

    @classmethod
    def load(cls, root: Path) -> StoreConfig:
        path = root / CONFIG
        if not path.is_file():
            raise FileNotFoundError(f"{root} is not an index store ({CONFIG} missing); run `posapl index build` first")
        return cls.model_validate(json.loads(path.read_text()))

    def check(self) -> None:
        """Refuse a build whose inputs do not exist or are not what their option takes (a file given as an
        image folder), before anything is written to the store."""
        problems = [problem for p in self.sources if (problem := image_folder_problem(p)) is not None]
        problems += [f"not found: {p}" for p in self.captions if not p.is_file()]
        problems += [f"STAC catalog not found: {p}" for p in self.stac if not p.is_file()]
        problems += [f"band folder not found: {p}" for p in self.band_folders if not p.is_dir()]
        if problems:
            raise ValueError("; ".join(problems))

    def save(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        tmp = root / f".{CONFIG}.tmp"
        with open(tmp, "w") as handle:
            handle.write(self.model_dump_json(indent=2))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, root / CONFIG)


class IndexSettings(StoreFields, BaseSettings):
    model_config = SettingsConfigDict(env_prefix="POSAPL_", env_file=".env", extra="ignore", populate_by_name=True)

    root: Path = Field(
        DEFAULT_INDEX_ROOT,
        validation_alias="posapl_index_root",
        description="index store root (holds CURRENT, versions/, config.json); POSAPL_INDEX_ROOT, the variable "
        "the service reads, with the same default",
    )
    images: list[Path] | None = Field(None, description="build: image folders")
    captions: list[Path] | None = Field(None, description="build: caption files")
    stac: list[Path] | None = Field(None, description="build: STAC catalogs (catalog.json, collection.json, items)")
    stac_assets: list[str] | None = Field(
        None, description="asset keys or eo:bands common names stacked as one scene per item, e.g. B04,B03,B02 or "
        "red,green,blue (default: the visual asset)"
    )
    band_folders: list[Path] | None = Field(None, description="build: folders of per-band files")
    band_files: list[str] | None = Field(None, description="build: band file patterns, e.g. *_B04.tif,*_B03.tif")

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
        if not self.images and not self.stac and not self.band_folders:
            raise ValueError(
                "build needs at least one image folder (--images), STAC catalog (--stac) or band folder "
                "(--band-folders)"
            )
        return StoreConfig(
            **self.model_dump(include=set(StoreFields.model_fields) - {"checkpoint", "arch", "pretrained"}),
            sources=[p.resolve() for p in self.images or []],
            stac=[catalog_file(p).resolve() for p in self.stac or []],
            stac_assets=self.stac_assets,
            band_folders=[p.resolve() for p in self.band_folders or []],
            band_files=self.band_files,
            captions=[p.resolve() for p in self.captions or []],
            checkpoint=str(Path(self.checkpoint).resolve()) if self.checkpoint else None,
            arch=absolute_if_file(self.arch if self.checkpoint else self.arch or DEFAULT_ARCH),
            pretrained=absolute_if_file(self.pretrained if self.checkpoint else self.pretrained or DEFAULT_PRETRAINED),
        )
