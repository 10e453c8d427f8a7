"""Embed archive files and scene windows in batches, checkpointing every batch so a killed job resumes instead of
redoing work.

Decoding and resizing run in DataLoader worker processes (the CPU-bound part); the model runs in the
main process through posapl.encode.encode_images (float32 on every device). Each finished
batch is written to ROOT/work/<fingerprint>/batch-NNNNNN.npz atomically (temp file, fsync, rename, fsync
dir), so after a crash every batch on disk is complete and the next run skips those items.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from index.checkpoint_vectors import CheckpointVectors
from index.decode import BadImageError, ImageFacts, decode_image, facts_from_dict
from index.layout import fsync_dir
from posapl.encode import encode_images
from posapl.model import POSAPL
from posapl.preprocess import IMAGE_MEAN, IMAGE_STD


@dataclass(frozen=True)
class WorkItem:
    """One unit of embedding work: a whole file (window None) or one window of a scene, at one tile size.

    `scene` carries the scene's probe (its band selection and its one stretch) to the worker that decodes a
    window; a whole file is probed by the worker itself.
    """

    key: str  # the file's sha256, or sha256@x,y,w,h:size for a tile
    path: Path
    window: tuple[int, int, int, int] | None = None
    size: int | None = None
    scene: ImageFacts | None = None
    bands: tuple[int, ...] | None = None
    previous: str | None = None  # pixel digest of the live version's item at this window of a changed file


def item_key(sha256: str, window: tuple[int, int, int, int] | None, size: int | None) -> str:
    return sha256 if window is None else f"{sha256}@{window[0]},{window[1]},{window[2]},{window[3]}:{size}"


@dataclass(frozen=True)
class DecodedItem:
    key: str
    pixels: np.ndarray | None  # (H, W, 3) uint8 at the model's input size; None when failed or empty
    facts: ImageFacts | None  # of the whole file, for whole-file items
    failure: str | None = None
    empty: bool = False  # a tile with less than `min_valid` of its pixels holding data
    digest: str | None = None  # pixel_digest of the decoded window, before the resize
    unchanged: bool = False  # the digest equals `WorkItem.previous`: keep that item's vector, embed nothing


DIGEST_SCHEME = "rgb8-blake2b-128"  # part of every digest, so a change of scheme never matches old ones


def pixel_digest(image: Image.Image) -> str:
    """Digest of a decoded 8-bit window (size, mode, bytes): equal digests mean the model gets the same input,
    whatever raw values, band selection and stretch produced it (see index.reuse)."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{DIGEST_SCHEME}:{image.mode}:{image.width}x{image.height}:".encode())
    digest.update(image.tobytes())
    return f"{DIGEST_SCHEME}:{digest.hexdigest()}"


def decode_item(item: WorkItem, image_size: int, max_pixels: int, min_valid: float = 0.0) -> DecodedItem:
    """Decode and resize one work item: the only per-item step, shared by every way of running the job."""
    try:
        decoded = decode_image(item.path, max_pixels, bands=item.bands, window=item.window, scene=item.scene)
    except BadImageError as exc:
        return DecodedItem(item.key, None, None, str(exc))
    if item.window is not None and decoded.valid < min_valid:
        return DecodedItem(item.key, None, None, empty=True)
    digest = pixel_digest(decoded.image)
    if item.previous is not None and digest == item.previous:
        return DecodedItem(item.key, None, None, digest=digest, unchanged=True)
    size = (image_size, image_size)
    pixels = np.asarray(decoded.image.resize(size, Image.Resampling.BICUBIC), dtype=np.uint8)
    return DecodedItem(item.key, pixels, decoded.facts() if item.window is None else None, digest=digest)


@dataclass
class WorkState:
    vectors: CheckpointVectors = field(default_factory=CheckpointVectors)  # item key -> vector, read on demand
    facts: dict[str, ImageFacts] = field(default_factory=dict)  # whole-file items only
    failures: dict[str, str] = field(default_factory=dict)  # item key -> reason
    empty: set[str] = field(default_factory=set)  # tiles without enough data, not embedded
    digests: dict[str, str] = field(default_factory=dict)  # item key -> pixel digest (embedded or unchanged)
    unchanged: set[str] = field(default_factory=set)  # windows whose digest matched the live version's item

    def reusable(self, key: str, previous: str | None) -> bool:
        """Whether window `key` was found equal to the live item whose digest is `previous`."""
        return key in self.unchanged and previous is not None and self.digests.get(key) == previous

    def done(self, key: str, previous: str | None = None) -> bool:
        """Whether `key` needs no decoding; a window found unchanged counts only against the same `previous`."""
        if key in self.unchanged:
            return self.reusable(key, previous)
        return key in self.vectors or key in self.failures or key in self.empty


class WorkLog:
    """Append-only log of embedded batches for one model fingerprint."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _batches(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        return sorted(self.directory.glob("batch-*.npz"))

    def load(self, dim: int) -> WorkState:
        """What the checkpoints hold; each batch's vectors are checked here and read again only when asked for
        (index.checkpoint_vectors), so a large run's new vectors are not all in RAM at once."""
        state = WorkState()
        for path in self._batches():
            try:
                with np.load(path, allow_pickle=False) as data:
                    keys, vectors = data["keys"], data["vectors"]
                    facts, failures = json.loads(str(data["facts"])), json.loads(str(data["failures"]))
                    empty = json.loads(str(data["empty"]))
                    digests = json.loads(str(data["digests"])) if "digests" in data.files else {}
                    unchanged = json.loads(str(data["unchanged"])) if "unchanged" in data.files else []
            except (OSError, ValueError, KeyError):
                continue  # a batch file is only visible once complete; anything else is not ours to trust
            if vectors.ndim != 2 or vectors.shape[1] != dim or not len(keys) == len(vectors) == len(facts):
                continue
            state.vectors.add(path, keys.tolist())  # rows are read again when the plan asks for them
            for key, fact in zip(keys.tolist(), facts):
                if fact is not None:
                    state.facts[key] = facts_from_dict(fact)
            state.failures.update(failures)
            state.empty.update(empty)
            state.digests.update(digests)
            state.unchanged.update(unchanged)
        return state

    def append(
        self,
        keys: list[str],
        vectors: np.ndarray,
        facts: list[ImageFacts | None],
        failures: dict[str, str],
        empty: Sequence[str] = (),
        digests: dict[str, str] | None = None,
        unchanged: Sequence[str] = (),
    ) -> Path:
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
                keys=np.array(keys, dtype=str),
                vectors=vectors.astype(np.float32),
                facts=np.array(json.dumps([asdict(f) if f is not None else None for f in facts])),
                failures=np.array(json.dumps(failures)),
                empty=np.array(json.dumps(list(empty))),
                digests=np.array(json.dumps(digests or {})),
                unchanged=np.array(json.dumps(list(unchanged))),
            )
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        fsync_dir(self.directory)
        return path

    def clear(self) -> None:
        """Delete this run's checkpoints, and ROOT/work itself once no other model's are left in it."""
        for path in self.directory.glob("*") if self.directory.is_dir() else []:
            path.unlink()
        for folder in (self.directory, self.directory.parent):
            with suppress(OSError):  # absent, or still holding something
                folder.rmdir()


class ArchiveImages(Dataset):
    """Work items -> decoded, resized uint8 tensors; bad items come back with their reason."""

    def __init__(self, items: list[WorkItem], image_size: int, max_pixels: int, min_valid: float = 0.0) -> None:
        self.items = items
        self.image_size = image_size
        self.max_pixels = max_pixels
        self.min_valid = min_valid

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> DecodedItem:
        return decode_item(self.items[index], self.image_size, self.max_pixels, self.min_valid)


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
    items: list[WorkItem],
    log: WorkLog,
    batch_size: int,
    num_workers: int,
    max_pixels: int,
    after_batch: Callable[[int], None] | None = None,
    progress: bool = True,
    min_valid: float = 0.0,
) -> int:
    """Embed `items` into `log`; returns the number embedded. `after_batch(n)` runs after batch n is durable."""
    if not items:
        return 0
    loader = DataLoader(
        ArchiveImages(items, model.image_size, max_pixels, min_valid),
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
            good = [item for item in batch if item.pixels is not None]
            failures = {item.key: item.failure for item in batch if item.failure is not None}
            if good:
                pixels = torch.stack([torch.from_numpy(item.pixels.copy()).permute(2, 0, 1) for item in good])
                vectors = encode_images(model, normalise(pixels, model.device), batch_size=batch_size)
            else:
                vectors = np.zeros((0, model.embed_dim), dtype=np.float32)
            empty = [item.key for item in batch if item.empty]
            digests = {item.key: item.digest for item in batch if item.digest is not None}
            unchanged = [item.key for item in batch if item.unchanged]
            log.append(
                [item.key for item in good], vectors, [item.facts for item in good], failures, empty, digests, unchanged
            )
            embedded += len(good)
            bar.update(len(batch))
            bar.set_postfix(images_per_s=f"{bar.n / max(time.perf_counter() - start, 1e-9):.1f}")
            if after_batch is not None:
                after_batch(number)
    finally:
        bar.close()
    return embedded
