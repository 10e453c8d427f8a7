"""Torch datasets for training pairs and evaluation images, and the per-caption POS tag cache.

Tagging every caption with spaCy takes minutes on a full benchmark, and the tags never change for a
given caption and pipeline, so they are cached in a JSON file keyed by the normalised caption and reused
by later runs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from posapl.pos import PosTagger
from posapl.text import normalize_caption
from training.annotations import TrainPairs

TIFF_SUFFIXES = frozenset({".tif", ".tiff"})


class ImageReadError(ValueError):
    """A training or evaluation image that cannot be decoded."""


def load_image(path: Path) -> Image.Image:
    """Decode an image to RGB; a missing or corrupt file is an error naming it, never a skipped sample."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        if Path(path).suffix.lower() in TIFF_SUFFIXES:
            return _load_tiff(path, exc)
        raise ImageReadError(f"cannot read image {path}: {exc}") from exc


def _load_tiff(path: Path, pil_error: Exception) -> Image.Image:
    """TIFFs Pillow cannot decode (e.g. some compressions) through tifffile, keeping the first three bands."""
    import numpy as np
    import tifffile

    try:
        array = tifffile.imread(path)
    except Exception as exc:  # tifffile raises many types for a bad file; all mean the same here
        raise ImageReadError(f"cannot read image {path}: {pil_error}; tifffile: {exc}") from exc
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] < 3 or array.dtype != np.uint8:
        raise ImageReadError(f"cannot read image {path}: unsupported TIFF layout {array.shape} {array.dtype}")
    return Image.fromarray(np.ascontiguousarray(array[..., :3]))


class PosCache:
    """POS words per normalised caption, persisted as JSON; bound to the spaCy pipeline that made them."""

    def __init__(self, path: Path | None, tagger: PosTagger) -> None:
        self.path = Path(path) if path is not None else None
        self.tagger = tagger
        meta = tagger.nlp.meta
        self.pipeline = f"{meta.get('lang', '')}_{meta.get('name', '')}-{meta.get('version', '')}"
        self.tags: dict[str, list[str]] = self._read()

    def _read(self) -> dict[str, list[str]]:
        if self.path is None or not self.path.is_file():
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            return {}  # a cache is disposable: a damaged one is rebuilt, not an error
        if not isinstance(data, dict) or data.get("pipeline") != self.pipeline:
            return {}
        if not isinstance(data.get("tags"), dict):
            return {}
        return data["tags"]

    def tag(self, captions: list[str]) -> list[list[str]]:
        """POS words for normalised captions; unseen ones are batch-tagged and the cache file rewritten."""
        missing = list(dict.fromkeys(c for c in captions if c not in self.tags))
        if missing:
            self.tags.update(zip(missing, self.tagger.tag(missing)))
            self._write()
        return [self.tags[c] for c in captions]

    def _write(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"pipeline": self.pipeline, "tags": self.tags}), encoding="utf-8")
        os.replace(tmp, self.path)


def normalize_all(captions: list[str], source: str = "captions") -> list[str]:
    """Normalise every caption; an empty one is an error naming its position."""
    out = []
    for index, caption in enumerate(captions):
        try:
            out.append(normalize_caption(caption))
        except ValueError as exc:
            raise ValueError(f"{source}: caption {index}: {exc}") from exc
    return out


class TrainDataset(Dataset):
    """(image tensor, normalised caption, POS words, image id) per caption row."""

    def __init__(self, pairs: TrainPairs, pos_cache: PosCache, transform: Callable[[Image.Image], torch.Tensor]):
        self.image_paths = pairs.image_paths
        self.captions = normalize_all(pairs.captions, "train")
        self.pos = pos_cache.tag(self.captions)
        self.image_ids = pairs.image_ids
        self.transform = transform

    def __len__(self) -> int:
        return len(self.captions)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, str, list[str], int]:
        image = self.transform(load_image(self.image_paths[index]))
        return image, self.captions[index], self.pos[index], self.image_ids[index]


def collate_pairs(batch: list[tuple[torch.Tensor, str, list[str], int]]):
    """Stack images and ids; captions and POS words stay lists (the model's tokenizer runs on the batch)."""
    images, captions, pos, ids = zip(*batch)
    return torch.stack(images), list(captions), list(pos), torch.tensor(ids, dtype=torch.long)


class ImageDataset(Dataset):
    """Preprocessed images of an evaluation split, in order."""

    def __init__(self, image_paths: list[Path], transform: Callable[[Image.Image], torch.Tensor]) -> None:
        self.image_paths = image_paths
        self.transform = transform

    def __len__(self) -> int:
        return len(self.image_paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.transform(load_image(self.image_paths[index]))
