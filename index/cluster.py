"""Embed archive work items on a Ray cluster with Ray Data, into the same checkpoint log as the in-process path.

A work item is a whole file or one window of a scene (index.tiles plans them on the driver), so a large scene
is spread over the cluster tile by tile, and no task ever reads a whole scene.

The driver (the `posapl index` process) keeps the scan and the publish step; only embedding moves out.
Decoding runs as Ray Data CPU tasks through the same per-item function as the in-process DataLoader
(index.embed.decode_item), and the encoder runs in a fixed pool of actors that each load the model from the
store's model settings (never a pickled module), one GPU per actor when the cluster has GPUs.

Results stream back to the driver, which writes them with WorkLog exactly as the in-process path does: a
killed driver leaves only complete batch files, and the next run skips the items they hold. Ray Data's
actor pools restart a dead actor and retry its tasks (max_restarts=-1, max_task_retries=-1 are its
defaults), and decode tasks are retried too; the driver then checks that every item came back exactly once
before anything is published.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from index.decode import ImageFacts, facts_from_dict
from index.embed import WorkItem, WorkLog, decode_item, normalise
from index.settings import IndexSettings, StoreConfig
from posapl.checkpoint import load_model
from posapl.encode import encode_images
from posapl.model import POSAPL

Batch = dict[str, np.ndarray]


@dataclass(frozen=True)
class ActorPool:
    """How the embedding stage occupies the cluster."""

    actors: int
    gpus_per_actor: int
    cpus_per_actor: int = 1


def plan_pool(resources: dict[str, float], actors: int | None = None) -> ActorPool:
    """One actor per GPU; without GPUs half the CPUs embed and the other half decode, so neither stage starves.
    `actors` overrides the count; a GPU actor always holds one whole GPU."""
    gpus = int(resources.get("GPU", 0))
    if gpus:
        return ActorPool(actors or gpus, 1)
    cpus = int(resources.get("CPU", 1))
    return ActorPool(actors or max(1, cpus // 2), 0)


@contextmanager
def ray_session(address: str) -> Iterator[None]:
    """Join (or start, for 'local') a cluster for this run; a session the caller already opened is reused."""
    import ray

    if ray.is_initialized():
        yield
        return
    options: dict[str, Any] = {"include_dashboard": False} if address == "local" else {}
    ray.init(address=address, **options)
    try:
        yield
    finally:
        ray.shutdown()


def decode_memory(max_pixels: int) -> int:
    """Bytes one decode task reserves: the largest allowed image as 8-bit RGB, twice (decode and conversion).

    Reserving it keeps Ray from packing more decodes onto a node than its memory holds; and since the request
    differs from the embedding actors', Ray Data keeps decoding in separate CPU tasks instead of fusing it into
    the actors, so decoding scales with every CPU of the cluster, not with the actor count.
    """
    return 2 * 3 * max_pixels


def decode_batch(batch: Batch, image_size: int, max_pixels: int, min_valid: float) -> Batch:
    """Ray Data task: work items -> fixed-size uint8 CHW pixels (zeros for bad, empty or unchanged items), facts,
    failure reasons, empty-tile flags, pixel digests and unchanged-window flags.

    Items travel pickled, so whatever index.embed.decode_item takes (a whole file or one window of a scene) is
    what the cluster ships: a scene is spread over the cluster window by window, never decoded whole."""
    rows = [decode_item(pickle.loads(item), image_size, max_pixels, min_valid) for item in batch["item"]]
    blank = np.zeros((3, image_size, image_size), dtype=np.uint8)
    return {
        "key": np.array([row.key for row in rows]),
        "pixels": np.stack([blank if row.pixels is None else row.pixels.transpose(2, 0, 1) for row in rows]),
        "facts": np.array([json.dumps(asdict(row.facts)) if row.facts is not None else "" for row in rows]),
        "failure": np.array([row.failure or "" for row in rows]),
        "empty": np.array([row.empty for row in rows], dtype=bool),
        "digest": np.array([row.digest or "" for row in rows]),
        "unchanged": np.array([row.unchanged for row in rows], dtype=bool),
    }


class Embedder:
    """Ray Data actor: one model, loaded here from the store's model settings, embeds the decoded batches."""

    def __init__(self, model: dict[str, Any], fingerprint: str, device: str) -> None:
        self.model = load_model(**model).to(torch.device(device)).eval()
        if self.model.fingerprint() != fingerprint:
            raise RuntimeError(
                f"the model on {os.uname().nodename} differs from the driver's (fingerprint "
                f"{self.model.fingerprint()[:16]} != {fingerprint[:16]}): check the weights and checkpoint paths"
            )

    def __call__(self, batch: Batch) -> Batch:
        good = _embeddable(batch)
        vectors = np.zeros((len(good), self.model.embed_dim), dtype=np.float32)
        if good.any():
            pixels = torch.from_numpy(batch["pixels"][good])  # boolean indexing copies: a writable array
            vectors[good] = encode_images(self.model, normalise(pixels, self.model.device), batch_size=len(pixels))
        return {
            "key": batch["key"],
            "vector": vectors,
            "facts": batch["facts"],
            "failure": batch["failure"],
            "empty": batch["empty"],
            "digest": batch["digest"],
            "unchanged": batch["unchanged"],
        }


def _embeddable(batch: Batch) -> np.ndarray:
    """Items that decoded, hold enough data and changed: failed files, empty tiles and windows whose pixels equal
    the live version's are recorded, never embedded."""
    return (batch["failure"] == "") & ~batch["empty"] & ~batch["unchanged"]


def _facts(text: str) -> ImageFacts | None:
    """Whole files carry their facts; a tile's are its scene's, planned on the driver, so none travel."""
    return facts_from_dict(json.loads(text)) if text else None


def cluster_embedder(config: StoreConfig, settings: IndexSettings) -> Callable[..., int]:
    """A drop-in for index.embed.embed_files that embeds on the cluster at `settings.ray_address`.

    The driver's `model` fixes the image size and the fingerprint every actor must reproduce; the actors load
    their own copy from `config`'s model settings. `num_workers` (DataLoader processes) has no meaning here:
    the cluster's CPUs decode.
    """

    def embed(
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
        if not items:
            return 0
        import ray
        import ray.data

        with ray_session(settings.ray_address or "local"):
            pool = plan_pool(ray.cluster_resources(), settings.ray_actors)
            ray.data.DataContext.get_current().enable_progress_bars = progress
            spec = {"checkpoint": config.checkpoint, "pretrained": config.pretrained, "preset": config.preset}
            blocks = math.ceil(len(items) / batch_size)
            dataset = (
                ray.data.from_items([{"item": pickle.dumps(item)} for item in items], override_num_blocks=blocks)
                .map_batches(
                    decode_batch,
                    fn_kwargs={"image_size": model.image_size, "max_pixels": max_pixels, "min_valid": min_valid},
                    batch_size=batch_size,
                    num_cpus=1,
                    memory=decode_memory(max_pixels),
                )
                .map_batches(
                    Embedder,
                    fn_constructor_kwargs={
                        "model": {**spec, "arch": config.arch},
                        "fingerprint": model.fingerprint(),
                        "device": "cuda" if pool.gpus_per_actor else "cpu",
                    },
                    compute=ray.data.ActorPoolStrategy(size=pool.actors),
                    batch_size=batch_size,
                    num_cpus=pool.cpus_per_actor,
                    num_gpus=pool.gpus_per_actor,
                )
            )
            batches = dataset.iter_batches(batch_size=batch_size, batch_format="numpy")
            return collect(batches, items, log, after_batch, progress)

    return embed


def collect(
    batches: Iterator[Batch],
    items: list[WorkItem],
    log: WorkLog,
    after_batch: Callable[[int], None] | None,
    progress: bool,
) -> int:
    """Write streamed results as checkpoint batches; refuse to go on unless every item came back exactly once."""
    expected = {item.key for item in items}
    seen: set[str] = set()
    embedded = 0
    start = time.perf_counter()
    bar = tqdm(total=len(items), unit="img", desc="embedding (ray)", disable=not progress, dynamic_ncols=True)
    try:
        for number, batch in enumerate(batches, start=1):
            keys = batch["key"].tolist()
            fresh = np.array([key not in seen for key in keys], dtype=bool)
            good = fresh & _embeddable(batch)
            seen.update(keys)
            reasons = batch["failure"].tolist()
            failures = {key: reason for key, reason, new in zip(keys, reasons, fresh) if new and reason}
            empty = [key for key, blank, new in zip(keys, batch["empty"].tolist(), fresh) if new and blank]
            digests = {key: digest for key, digest, new in zip(keys, batch["digest"].tolist(), fresh) if new and digest}
            same = [key for key, kept, new in zip(keys, batch["unchanged"].tolist(), fresh) if new and kept]
            log.append(
                [key for key, ok in zip(keys, good) if ok],
                batch["vector"][good],
                [_facts(text) for text, ok in zip(batch["facts"].tolist(), good) if ok],
                failures,
                empty,
                digests,
                same,
            )
            embedded += int(good.sum())
            bar.update(int(fresh.sum()))
            bar.set_postfix(images_per_s=f"{bar.n / max(time.perf_counter() - start, 1e-9):.1f}")
            if after_batch is not None:
                after_batch(number)
    finally:
        bar.close()
    if seen != expected:
        raise RuntimeError(
            f"the cluster returned {len(seen & expected)} of {len(expected)} items"
            + (f" and {len(seen - expected)} unknown ones" if seen - expected else "")
        )
    return embedded
