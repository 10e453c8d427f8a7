"""Embed archive files in batches, checkpointing every batch so a killed job resumes instead of redoing work.

Decoding and resizing run in DataLoader worker processes (the CPU-bound part); the model runs in the
main process through posapl.encode.encode_images (bf16 autocast on GPU, float32 on CPU). Each finished
batch is written to ROOT/work/<fingerprint>/batch-NNNNNN.npz atomically (temp file, fsync, rename, fsync
dir), so after a crash every batch on disk is complete and the next run skips those content hashes.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from index.decode import BadImageError, ImageFacts, decode_image
from index.layout import fsync_dir
from posapl.encode import encode_images
from posapl.model import POSAPL
from posapl.preprocess import IMAGE_MEAN, IMAGE_STD


@dataclass
class WorkState:
    vectors: dict[str, np.ndarray] = field(default_factory=dict)  # sha256 -> vector
    facts: dict[str, ImageFacts] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)  # sha256 -> reason


class WorkLog:
    """Append-only log of embedded batches for one model fingerprint."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _batches(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        return sorted(self.directory.glob("batch-*.npz"))

    def load(self, dim: int) -> WorkState:
        state = WorkState()
        for path in self._batches():
            try:
                with np.load(path, allow_pickle=False) as data:
                    shas, vectors = data["sha256"], data["vectors"]
                    facts, failures = json.loads(str(data["facts"])), json.loads(str(data["failures"]))
            except (OSError, ValueError, KeyError):
                continue  # a batch file is only visible once complete; anything else is not ours to trust
            if vectors.ndim != 2 or vectors.shape[1] != dim or len(shas) != len(vectors):
                continue
            for sha, vector, fact in zip(shas.tolist(), vectors, facts):
                state.vectors[sha] = vector
                state.facts[sha] = ImageFacts(**{**fact, "bbox": tuple(fact["bbox"]) if fact["bbox"] else None})
            state.failures.update(failures)
        return state

    def append(self, shas: list[str], vectors: np.ndarray, facts: list[ImageFacts], failures: dict[str, str]) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        number = len(self._batches())
        path = self.directory / f"batch-{number:06d}.npz"
        while path.exists():
            number += 1
            path = self.directory / f"batch-{number:06d}.npz"
        tmp = self.directory / f".{path.name}.tmp"
        with open(tmp, "wb") as handle:
            np.savez(
                handle,
                sha256=np.array(shas, dtype="U64"),
                vectors=vectors.astype(np.float32),
                facts=np.array(json.dumps([asdict(f) for f in facts])),
                failures=np.array(json.dumps(failures)),
            )
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        fsync_dir(self.directory)
        return path

    def clear(self) -> None:
        for path in self.directory.glob("*") if self.directory.is_dir() else []:
            path.unlink()
        if self.directory.is_dir():
            self.directory.rmdir()


DecodedItem = tuple[str, torch.Tensor | None, ImageFacts | None, str | None]


def decode_item(item: tuple[str, Path], image_size: int, max_pixels: int) -> DecodedItem:
    """One work item -> (key, resized uint8 CHW tensor, facts, None), or (key, None, None, reason) for a bad file.

    The one per-item step shared by the in-process DataLoader and the Ray decode tasks (index.cluster), so
    both embed exactly the same pixels.
    """
    sha, path = item
    try:
        decoded = decode_image(path, max_pixels)
    except BadImageError as exc:
        return sha, None, None, str(exc)
    facts = decoded.facts()
    size = (image_size, image_size)
    resized = np.asarray(decoded.image.resize(size, Image.Resampling.BICUBIC), dtype=np.uint8)
    return sha, torch.from_numpy(resized.copy()).permute(2, 0, 1), facts, None


class ArchiveImages(Dataset):
    """(sha256, path) pairs -> decoded, resized uint8 tensors; bad files come back with their reason."""

    def __init__(self, items: list[tuple[str, Path]], image_size: int, max_pixels: int) -> None:
        self.items = items
        self.image_size = image_size
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> DecodedItem:
        return decode_item(self.items[index], self.image_size, self.max_pixels)


def normalise(pixels: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 (N, 3, H, W) to the model's input, once per batch on the model's device.

    The same arithmetic as posapl.preprocess.eval_transform (PIL bicubic resize, /255, mean/std), but
    workers ship 4x smaller uint8 tensors and the per-pixel float work runs as one batched (GPU) op
    instead of one small op per image.
    """
    mean = torch.tensor(IMAGE_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGE_STD, device=device).view(1, 3, 1, 1)
    pixels = pixels.to(device, non_blocking=True).float().div_(255)
    return pixels.sub_(mean).div_(std)


def collate(batch: list) -> list:
    """Keep the per-item tuples: bad items have no tensor, so default stacking cannot apply."""
    return batch


def embed_files(
    model: POSAPL,
    items: list[tuple[str, Path]],
    log: WorkLog,
    batch_size: int,
    num_workers: int,
    max_pixels: int,
    after_batch: Callable[[int], None] | None = None,
    progress: bool = True,
) -> int:
    """Embed `items` into `log`; returns the number embedded. `after_batch(n)` runs after batch n is durable."""
    if not items:
        return 0
    loader = DataLoader(
        ArchiveImages(items, model.image_size, max_pixels),
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=collate,
        pin_memory=model.device.type == "cuda",
        persistent_workers=False,
        prefetch_factor=4 if num_workers > 0 else None,
    )
    embedded = 0
    start = time.perf_counter()
    bar = tqdm(total=len(items), unit="img", desc="embedding", disable=not progress, dynamic_ncols=True)
    try:
        for number, batch in enumerate(loader, start=1):
            good = [(sha, tensor, facts) for sha, tensor, facts, _ in batch if tensor is not None]
            failures = {sha: reason for sha, _, _, reason in batch if reason is not None}
            if good:
                pixels = torch.stack([t for _, t, _ in good])
                vectors = encode_images(model, normalise(pixels, model.device), batch_size=batch_size)
            else:
                vectors = np.zeros((0, model.embed_dim), dtype=np.float32)
            log.append([sha for sha, _, _ in good], vectors, [f for _, _, f in good], failures)
            embedded += len(good)
            bar.update(len(batch))
            bar.set_postfix(images_per_s=f"{bar.n / max(time.perf_counter() - start, 1e-9):.1f}")
            if after_batch is not None:
                after_batch(number)
    finally:
        bar.close()
    return embedded
