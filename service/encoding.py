"""Query and upload encoding for the service: batched, cached, and timed per stage.

The functions here run in worker threads (called by the micro-batchers), never on the event loop.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from posapl.encode import encode_images, encode_texts
from posapl.model import POSAPL
from posapl.pos import PosTagger
from posapl.preprocess import eval_transform
from service.cache import LRUCache


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

    def encode_batch(self, captions: list[str]) -> list[EncodedQuery]:
        """Tag and encode distinct captions once each; repeated captions in one batch share the work."""
        unique = list(dict.fromkeys(captions))
        started = time.perf_counter()
        pos = self.tagger.tag(unique)
        tagged = time.perf_counter()
        vectors = encode_texts(self.model, unique, pos)
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
        return list(encode_images(self.model, batch))
