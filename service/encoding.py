"""Query and upload encoding for the service: batched, cached, and timed per stage.

The functions here run in worker threads (called by the micro-batchers), never on the event loop.
The encoder backend can be replaced while the service runs (PyTorch serves until the ONNX Runtime graphs are
exported or loaded from the cache); each batch reads the backend once, so a swap never splits a batch.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from posapl.model import POSAPL
from posapl.onnx_export import Precision
from posapl.pos import PosTagger
from posapl.preprocess import eval_transform
from posapl.runtime import EncoderChoice, RuntimeName, TorchEncoder, load_encoder
from service.cache import LRUCache

log = logging.getLogger(__name__)
PREPARING = "the ONNX Runtime graphs are being exported or loaded; PyTorch serves meanwhile"


@dataclass(frozen=True)
class QueryEmbedding:
    """A normalised query, its POS words and its unit vector."""

    pos: list[str]
    vector: np.ndarray


@dataclass(frozen=True)
class EncodedQuery:
    """One query's embedding and the per-query share of the batch's tagging and encoding time."""

    embedding: QueryEmbedding
    pos_ms: float
    encode_ms: float


class QueryEncoder:
    """POS-tag and encode normalised queries, a whole micro-batch at a time."""

    def __init__(self, model: POSAPL, tagger: PosTagger, cache_size: int) -> None:
        self.model = model
        self.tagger = tagger
        self.cache: LRUCache[str, QueryEmbedding] = LRUCache(cache_size)
        self._transform = eval_transform(model.image_size)
        self.runtime = EncoderChoice(TorchEncoder(model), "torch")
        self.pending: str | None = None  # what is being prepared instead of the current backend

    def announce(self, runtime: RuntimeName) -> None:
        """Say (in /readyz) that another backend is being prepared, before the worker thread starts."""
        if runtime != "torch" and self.model.device.type == "cpu":
            self.pending = PREPARING

    def prepare_runtime(
        self, runtime: RuntimeName, cache_dir: Path | None, threads: int | None, precision: Precision,
        image_precision: Precision = "fp32",
    ) -> EncoderChoice:
        """Export or load the configured backend (slow: runs in a worker thread) and switch to it.

        Both backends give the same vectors (the ONNX graphs are checked against PyTorch when they load), so
        queries encoded before and after the swap agree and cached embeddings stay valid.
        """
        self.announce(runtime)
        try:
            choice = load_encoder(self.model, runtime, cache_dir, threads, precision, image_precision)
        finally:
            self.pending = None
        self.runtime = choice
        log.info("encoder runtime: %s%s", choice.name, f" ({choice.reason})" if choice.reason else "")
        return choice

    @property
    def runtime_reason(self) -> str | None:
        """Why the configured runtime is not (yet) the one serving; None when it is."""
        return self.pending or self.runtime.reason

    def encode_batch(self, captions: list[str]) -> list[EncodedQuery]:
        """Tag and encode distinct captions once each; repeated captions in one batch share the work."""
        unique = list(dict.fromkeys(captions))
        started = time.perf_counter()
        pos = self.tagger.tag(unique)
        tagged = time.perf_counter()
        vectors = self.runtime.encoder.encode_texts(unique, pos)
        done = time.perf_counter()
        pos_ms, encode_ms = (tagged - started) * 1000.0, (done - tagged) * 1000.0
        by_caption = {}
        for caption, words, vector in zip(unique, pos, vectors, strict=True):
            embedding = QueryEmbedding(pos=words, vector=vector)
            self.cache.put(caption, embedding)
            by_caption[caption] = embedding
        return [EncodedQuery(by_caption[caption], pos_ms, encode_ms) for caption in captions]

    def encode_images(self, images: list[Image.Image]) -> list[np.ndarray]:
        """Unit vectors of decoded RGB images, one forward pass for the batch."""
        batch = torch.stack([self._transform(image) for image in images])
        return list(self.runtime.encoder.encode_images(batch))
