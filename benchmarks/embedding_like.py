"""Archive vectors that look like image embeddings, at any size, for the index benchmarks.

Uniform random vectors have no neighbourhoods and Gaussian mixtures have easy, well-separated ones; neither
tells how an approximate index does on embeddings. Here the seed set is real: the model's own embeddings of the
RSICD test images (and, as queries, of their captions, so queries sit across the modality gap from the archive
as text queries do). An archive of any size is drawn from it: each vector mixes two seed images with a random
weight and adds Gaussian noise of a set norm, then is re-normalised. No base vector is a seed or a query.
Weights are random (no download), so these are the embeddings of an untrained model, a stated limitation.
The seed embeddings are cached under benchmarks/work/ by architecture and split.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np

from benchmarks.harness import WORK_DIR


def seed_embeddings(
    arch: str, split: Path, limit: int | None = None, batch_size: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """(image embeddings, distinct caption embeddings) of a split's first `limit` images (all when None) under
    the zero-shot random-weight model."""
    model_id = Path(arch).read_text() if Path(arch).is_file() else arch  # a JSON config: its content, not its path
    key = hashlib.sha256(f"{model_id}|{split.resolve()}|{limit}".encode()).hexdigest()[:16]
    cache = WORK_DIR / "embeddings" / f"{Path(arch).stem}-{key}.npz"
    if cache.is_file():
        with np.load(cache) as data:
            return data["images"], data["captions"]
    from posapl.checkpoint import load_model
    from posapl.encode import embed_captions
    from posapl.pos import PosTagger
    from training.annotations import EvalSplit, load_annotations
    from training.evaluate import embed_images

    model = load_model(None, "random", "rsitmd", arch).eval()
    data = load_annotations(split, "test")
    if limit is not None:
        data = EvalSplit(data.image_paths[:limit], [data.captions[t] for i in range(limit) for t in data.img2txt[i]])
    began = time.perf_counter()
    images = embed_images(model, data, batch_size)
    captions = embed_captions(model, PosTagger(), list(dict.fromkeys(c.strip() for c in data.captions)))
    print(f"seed embeddings: {len(images)} images, {len(captions)} captions in {time.perf_counter() - began:.0f} s")
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, images=images, captions=captions)
    return images, captions


def nearest_cosine(vectors: np.ndarray, sample: int = 500, seed: int = 0) -> float:
    """Median cosine of a vector to its nearest other vector: how tight the neighbourhoods are."""
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(vectors), min(sample, len(vectors)), replace=False)
    sims = vectors[rows] @ vectors.T
    sims[np.arange(len(rows)), rows] = -np.inf
    return float(np.median(sims.max(axis=1)))


def mixed_archive(seeds: np.ndarray, count: int, noise: float, seed: int = 0) -> np.ndarray:
    """`count` unit vectors, each w·a + (1-w)·b + noise (a, b random seed rows, w ~ U(0,1), |noise| = `noise`
    relative to the seeds' centred spread), built in blocks so 1M x 512 needs no second 2 GB temporary."""
    out = np.empty((count, seeds.shape[1]), dtype=np.float32)
    fill_mixed(out, seeds, noise, seed)
    return out


def fill_mixed(out: np.ndarray, seeds: np.ndarray, noise: float, seed: int = 0) -> None:
    """Fill `out` (an array or a memory-mapped .npy, for archives larger than RAM) as `mixed_archive` draws."""
    rng = np.random.default_rng(seed)
    centre = seeds.mean(axis=0)
    spread = float(np.median(np.linalg.norm(seeds - centre, axis=1)))
    count, step = len(out), 50_000
    for start in range(0, count, step):
        n = min(step, count - start)
        weight = rng.random((n, 1), dtype=np.float32)
        block = weight * seeds[rng.integers(0, len(seeds), n)] + (1 - weight) * seeds[rng.integers(0, len(seeds), n)]
        jitter = rng.standard_normal(block.shape, dtype=np.float32)
        jitter *= np.float32(noise * spread) / np.linalg.norm(jitter, axis=1, keepdims=True)
        block += jitter
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start : start + n] = block


GAP_NORM = 0.82  # distance between CLIP ViT-B/32's image and text embedding centres on MSCOCO (Liang et al., 2022)


def query_sets(
    seeds: np.ndarray, captions: np.ndarray, count: int, noise: float, seed: int = 0, gap_norm: float = GAP_NORM
) -> dict[str, np.ndarray]:
    """Query sets that behave like a trained CLIP's text queries, and the worst case:

    - "image+noise": held-out image-like vectors (fresh mixtures, never in the archive) plus noise;
    - "gap-shifted": those plus one constant modality-gap vector (the direction from the mean image to the mean
      caption embedding of the seeds, scaled to `gap_norm`), re-normalised: a trained CLIP's text and image
      embeddings sit in two cones a near-constant offset apart (Liang et al., 2022, "Mind the Gap"); the random
      model's own gap is far wider than a trained one's, so only its direction is used;
    - "captions": the random-weight model's caption embeddings, nearly orthogonal to every image vector, so
      the nearest neighbours are almost ties: the worst case for any pruning index.
    """
    held_out = mixed_archive(seeds, count, noise, seed + 101)
    gap = (captions.mean(axis=0) - seeds.mean(axis=0)).astype(np.float32)
    gap *= np.float32(gap_norm) / np.linalg.norm(gap)
    shifted = held_out + gap
    shifted /= np.linalg.norm(shifted, axis=1, keepdims=True)
    rng = np.random.default_rng(seed + 102)
    chosen = captions[rng.choice(len(captions), min(count, len(captions)), replace=False)]
    return {"image+noise": held_out, "gap-shifted": shifted, "captions": np.ascontiguousarray(chosen)}
