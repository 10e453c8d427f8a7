"""How often online re-ranking (one query, FAISS top-K', stored profiles) gives the offline top-10, against
the number of profile points kept per item, on a real split.

Text→image: the captions of the split are the queries and the bank, the images the indexed items.
Image→caption: the images are the queries and the bank, the captions the items. For every query, the
online top-10 after `rerank_candidates` is compared with the top-10 of the offline function on the full
matrix; items with identical vectors count as one.

RSICD repeats captions, and GaLR's offline top-10 of a caption depends on where numpy's sort puts it among
its identical copies, so copies of one caption can get different offline top-10s. Each row therefore also
reports agreement over the "defined" caption queries, those whose offline top-10 is the same for every copy,
and the ceiling: the best agreement any function of the query vector could reach.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path

import numpy as np

from benchmarks.harness import DEFAULT_SPLIT, Result, smoke_arch, split_path
from posapl.config import DEFAULT_PRETRAINED

POINTS = (64, 128, 256, 512, 1024, 2048, 0)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--split", default=str(DEFAULT_SPLIT), help="annotation file (any supported format)")
    parser.add_argument("--split-name", default="test")
    parser.add_argument(
        "--pretrained", default=None,
        help="open_clip tag, weights file or 'random'; default: laion2b_s34b_b79k, or the checkpoint's own base",
    )
    parser.add_argument("--arch", default="ViT-B-32", help="open_clip architecture name or JSON config")
    parser.add_argument("--checkpoint", type=Path, default=None, help="POSAPL checkpoint (default: zero-shot)")
    parser.add_argument("--points", type=int, nargs="+", default=list(POINTS), help="profile sizes; 0 = whole")
    parser.add_argument("--k-prime", type=int, default=100, help="FAISS candidates re-ranked per query")
    parser.add_argument("--batch-size", type=int, default=64)


def offline_top10(queries: np.ndarray, items: np.ndarray, method: str) -> np.ndarray:
    """Each query's top-10 items after the offline method on the full queries x items matrix."""
    from posapl.rerank import multivariate_rerank, reciprocal_reweight

    offline = {"multivariate": multivariate_rerank, "reciprocal": reciprocal_reweight}[method](queries @ items.T)
    return np.argsort(-offline, axis=1, kind="stable")[:, :10]


def profiles_against(items: np.ndarray, bank: np.ndarray, points: int) -> np.ndarray:
    """The items' profiles against the bank: `points` per item, or the whole sorted profile for 0."""
    from posapl.rerank import build_profiles

    return build_profiles(items, bank, n_quantiles=points or len(bank))


def agreeing_queries(
    queries: np.ndarray,
    items: np.ndarray,
    profiles: np.ndarray,
    method: str,
    offline_top: np.ndarray,
    k_prime: int = 100,
) -> np.ndarray:
    """Per query, whether its online top-10 (exact FAISS top-K', re-ranked with the items' `profiles`
    against the queries as bank) equals `offline_top` (from `offline_top10`)."""
    import faiss

    from posapl.rerank import rerank_candidates

    index = faiss.IndexFlatIP(items.shape[1])
    index.add(items)
    scores, ids = index.search(queries, min(k_prime, len(items)))
    _, canonical = np.unique(items, axis=0, return_inverse=True)
    canonical = canonical.ravel()
    same = np.zeros(len(queries), dtype=bool)
    for q in range(len(queries)):
        order, _ = rerank_candidates(method, scores[q], profiles[ids[q]])
        same[q] = np.array_equal(canonical[ids[q][order][:10]], canonical[offline_top[q]])
    return same


def copies(queries: np.ndarray) -> list[np.ndarray]:
    """Groups of query rows with identical vectors (singletons included)."""
    _, group = np.unique(queries, axis=0, return_inverse=True)
    group = group.ravel()
    order = np.argsort(group, kind="stable")
    return np.split(order, np.flatnonzero(np.diff(group[order])) + 1)


def offline_is_a_function_of_the_query(groups: list[np.ndarray], offline_top: np.ndarray) -> np.ndarray:
    """Per query, whether every identical copy of it (its group in `copies`) got the same offline top-10."""
    defined = np.ones(len(offline_top), dtype=bool)
    for rows in groups:
        if (offline_top[rows] != offline_top[rows[0]]).any():
            defined[rows] = False
    return defined


def agreement_ceiling(groups: list[np.ndarray], offline_top: np.ndarray) -> float:
    """The best agreement any function of the query vector can reach: per group of identical queries (from
    `copies`), the most common offline top-10."""
    best = sum(Counter(map(tuple, offline_top[rows])).most_common(1)[0][1] for rows in groups)
    return best / len(offline_top)


def _embed(args: argparse.Namespace, arch: str, pretrained: str | None, split) -> tuple[np.ndarray, np.ndarray]:
    from posapl.checkpoint import load_model
    from posapl.pos import PosTagger
    from training.datasets import PosCache
    from training.evaluate import embed_images, embed_texts

    model = load_model(args.checkpoint, pretrained, "rsitmd", None if args.checkpoint else arch).eval()
    return embed_images(model, split, args.batch_size), embed_texts(model, split, PosCache(None, PosTagger()))


def run(args: argparse.Namespace) -> list[Result]:
    from benchmarks.quality import subset
    from training.annotations import load_annotations

    arch, pretrained, points = args.arch, args.pretrained, args.points
    path = split_path(args.split)
    split = load_annotations(path, args.split_name)
    if args.smoke:
        arch, pretrained, points = str(smoke_arch()), "random", [8, 0]
        split = subset(split, 24)
    began = time.perf_counter()
    images, captions = _embed(args, arch, pretrained, split)
    embed_s = time.perf_counter() - began

    methods = ("multivariate", "reciprocal")
    t2i_top = {m: offline_top10(captions, images, m) for m in methods}
    i2c_top = {m: offline_top10(images, captions, m) for m in methods}
    caption_groups = copies(captions)
    defined = offline_is_a_function_of_the_query(caption_groups, t2i_top["multivariate"])
    ceiling = agreement_ceiling(caption_groups, t2i_top["multivariate"])
    groups = [rows for rows in caption_groups if len(rows) > 1]
    ties = {
        "captions": len(captions),
        "distinct_captions": len(caption_groups),
        "repeated_groups": len(groups),
        "groups_with_differing_galr_top10": int(sum(not defined[rows[0]] for rows in groups)),
        "defined_share": float(defined.mean()),
        "ceiling": ceiling,
    }
    results = []
    for n in points:
        image_profiles, caption_profiles = profiles_against(images, captions, n), profiles_against(captions, images, n)
        t2i = {m: agreeing_queries(captions, images, image_profiles, m, t2i_top[m], args.k_prime) for m in methods}
        i2c = {
            m: agreeing_queries(images, captions, caption_profiles, m, i2c_top[m], args.k_prime).mean() for m in methods
        }
        results.append(
            Result(
                benchmark="rerank-agreement",
                params={
                    "split": f"{path.name}:{args.split_name}",
                    "images": len(images),
                    "captions": len(captions),
                    "arch": "smoke" if args.smoke else Path(arch).name,
                    "weights": str(args.checkpoint) if args.checkpoint else pretrained or DEFAULT_PRETRAINED,
                    "points": n or "whole",
                    "k_prime": args.k_prime,
                },
                metrics={
                    "t2i_galr": float(t2i["multivariate"].mean()),
                    "t2i_galr_defined": float(t2i["multivariate"][defined].mean()),
                    "i2c_galr": float(i2c["multivariate"]),
                    "t2i_reciprocal": float(t2i["reciprocal"].mean()),
                    "i2c_reciprocal": float(i2c["reciprocal"]),
                },
                raw={"ties": ties, "embed_s": embed_s, "split_path": str(path)},
                notes=f"{ties['groups_with_differing_galr_top10']} of {ties['repeated_groups']} repeated captions "
                f"get differing GaLR top-10s; defined {ties['defined_share']:.3f}, ceiling {ceiling:.3f}",
            )
        )
    return results
