"""Batched embedding of captions and images into L2-normalised float32 vectors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F

from posapl.model import POSAPL
from posapl.pos import PosTagger
from posapl.text import normalize_caption


@contextmanager
def inference() -> Iterator[None]:
    """No gradients, float32 on every device (as the reference evaluates): under bf16 autocast embeddings move
    by ~1e-3, so an index built on a GPU would not match the same index built on a CPU."""
    with torch.inference_mode():
        yield


def _real_lengths(tokens: torch.Tensor) -> torch.Tensor:
    """Length up to and including the end-of-text token, which has the highest id in CLIP's vocabulary."""
    return tokens.argmax(dim=-1) + 1


def text_batches(
    model: POSAPL, captions: list[str], pos: list[list[str]], batch_size: int, truncate: bool
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(row indices, tokens, POS tokens) of each batch, for every text backend to encode the same way.

    With `truncate` (and when the model makes it exact) captions are sorted by token length and each batch
    is cut to its longest real sequence: positions after the end-of-text token cannot reach the pooled
    token through causal attention, so the embeddings are unchanged and short queries cost a fraction.
    """
    if len(captions) != len(pos):
        raise ValueError(f"{len(captions)} captions but {len(pos)} POS sequences")
    if not captions:
        return
    tokens = model.tokenize(captions)
    pos_tokens = model.tokenize([" ".join(words) for words in pos])
    truncate = truncate and model.truncation_is_exact()
    lengths = _real_lengths(tokens)
    order = torch.argsort(lengths, stable=True) if truncate else torch.arange(len(captions))
    for start in range(0, len(captions), batch_size):
        idx = order[start : start + batch_size]
        width = int(lengths[idx].max()) if truncate else tokens.shape[1]
        yield idx, tokens[idx, :width], pos_tokens[idx, :width]


def encode_texts(
    model: POSAPL,
    captions: list[str],
    pos: list[list[str]],
    batch_size: int = 256,
    truncate: bool = True,
) -> np.ndarray:
    """Embed normalised captions with their POS words, batched and truncated as `text_batches` says."""
    out = torch.empty(len(captions), model.embed_dim, dtype=torch.float32)
    with inference():
        for idx, batch, pos_batch in text_batches(model, captions, pos, batch_size, truncate):
            batch, pos_batch = batch.to(model.device), pos_batch.to(model.device)
            out[idx] = F.normalize(model.encode_text(batch, pos_batch).float(), dim=-1).cpu()
    return out.numpy()


def embed_captions(model: POSAPL, tagger: PosTagger, texts: list[str], batch_size: int = 256) -> np.ndarray:
    """Raw captions to vectors: normalise, POS-tag, encode."""
    captions = [normalize_caption(text) for text in texts]
    return encode_texts(model, captions, tagger.tag(captions), batch_size=batch_size)


def encode_images(model: POSAPL, images: torch.Tensor, batch_size: int = 64) -> np.ndarray:
    """Embed preprocessed images (N, 3, H, W)."""
    out = []
    with inference():
        for start in range(0, len(images), batch_size):
            batch = images[start : start + batch_size].to(model.device, non_blocking=True)
            out.append(F.normalize(model.encode_image(batch).float(), dim=-1).cpu())
    if not out:
        return np.zeros((0, model.embed_dim), dtype=np.float32)
    return torch.cat(out).numpy()
