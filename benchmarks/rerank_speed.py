"""Cost of re-ranking: offline on an RSICD-test-sized matrix (GaLR's reference loop vs `posapl.rerank`), and
online per query at K' candidates against a large reference bank.

Offline, both directions are timed, as an evaluation needs them: image→text on the images x texts matrix
and text→image on its transpose. The reference loop is a transcription of GaLR's `i2t_rerank_optim` (one
query and one candidate at a time, growing an address array); its output is checked against
`multivariate_rerank` before any number is reported. Vectors are seeded random unit vectors shaped like
the split (5 captions near each image), since speed does not depend on what the vectors mean.

Online, the profiles of a sample of indexed items are built against the bank (their build rate is
reported; the index job builds one per item), then each query re-scores its K' candidates with
`rerank_candidates`. Timings are per call, after warm-up; the load average is recorded before and after,
because the numbers are only comparable on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from benchmarks.harness import Result, percentile, time_repeated


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--images", type=int, default=1093, help="offline matrix rows (RSICD test: 1093)")
    parser.add_argument("--captions-per-image", type=int, default=5)
    parser.add_argument("--dim", type=int, default=512, help="embedding dimension")
    parser.add_argument("--bank", type=int, default=100_000, help="online reference bank size")
    parser.add_argument("--k-prime", type=int, default=100, help="FAISS candidates re-ranked per query")
    parser.add_argument("--n-quantiles", type=int, default=64, help="profile sketch size")
    parser.add_argument("--profile-items", type=int, default=1000, help="items whose profiles are built (timed)")
    parser.add_argument("--queries", type=int, default=2000, help="online queries timed")
    parser.add_argument("--repeat", type=int, default=3, help="offline timing repeats (the reference runs once)")


def _unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    """Random unit vectors sharing one direction, so that similarities are mostly positive as CLIP's are
    (and GaLR's column sums stay far from 0, where its float32 saliency term would be noise)."""
    x = rng.standard_normal((n, d)).astype(np.float32) / np.sqrt(d)
    x[:, 0] += 1.0
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def galr_reference_loop(sim: np.ndarray, k: int = 30, w_saliency: float = 1.0, w_reverse: float = 0.7) -> np.ndarray:
    """GaLR's multivariate rerank as its authors run it: Python loops over queries and candidates."""
    k = max(10, k)
    by_row = np.argsort(-sim, 1)
    by_column = np.argsort(-sim, 0)
    out = np.zeros_like(sim, dtype=np.float32)
    for i in range(sim.shape[0]):
        address = np.array([])
        for j in range(k):
            t = by_row[i][j]
            out[i][t] = w_saliency * (sim[i][t] / np.sum(sim[:, t]))
            out[i][t] += np.exp(-0.05 * (j + 1))
            address = np.append(address, np.where(by_column[:, t] == i)[0][0])
        for position, t in enumerate(by_row[i][:k][np.argsort(address)]):
            out[i][t] += w_reverse * np.exp(-0.05 * (float(position) + 1))
    return out


def _offline(args: argparse.Namespace, rng: np.random.Generator) -> Result:
    from posapl.rerank import multivariate_rerank, reciprocal_reweight

    images = _unit(rng, args.images, args.dim)
    noise = _unit(rng, args.images * args.captions_per_image, args.dim)
    captions = np.repeat(images, args.captions_per_image, axis=0) + noise
    captions /= np.linalg.norm(captions, axis=1, keepdims=True)
    sims = images @ captions.T
    load_before = [round(x, 2) for x in os.getloadavg()]
    started = time.perf_counter()
    reference = (galr_reference_loop(sims), galr_reference_loop(sims.T))
    reference_s = time.perf_counter() - started
    ours = (multivariate_rerank(sims), multivariate_rerank(sims.T))
    for theirs, mine in zip(reference, ours):
        if not np.allclose(theirs, mine, rtol=2e-6, atol=1e-7):
            raise RuntimeError("multivariate_rerank differs from the reference loop; timings would be meaningless")
    multivariate = time_repeated(lambda: (multivariate_rerank(sims), multivariate_rerank(sims.T)), args.repeat)
    reciprocal = time_repeated(lambda: reciprocal_reweight(sims), args.repeat)
    return Result(
        benchmark="rerank-speed-offline",
        params={"matrix": f"{sims.shape[0]}x{sims.shape[1]}", "k": 30, "directions": "i2t+t2i"},
        metrics={
            "galr_loop_s": reference_s,
            "multivariate_s": multivariate.median,
            "speedup": reference_s / multivariate.median,
            "reciprocal_s": reciprocal.median,
        },
        raw={
            "multivariate": multivariate.to_dict(),
            "reciprocal": reciprocal.to_dict(),
            "load_avg_before": load_before,
            "load_avg_after": [round(x, 2) for x in os.getloadavg()],
        },
        notes=f"load {load_before[0]} before",
    )


def _online(args: argparse.Namespace, rng: np.random.Generator) -> Result:
    from posapl.rerank import build_profiles, rerank_candidates

    if args.k_prime > args.profile_items:
        raise ValueError(f"--k-prime {args.k_prime} needs at least as many --profile-items")
    bank = _unit(rng, args.bank, args.dim)
    items = _unit(rng, args.profile_items, args.dim)
    load_before = [round(x, 2) for x in os.getloadavg()]
    started = time.perf_counter()
    profiles = build_profiles(items, bank, n_quantiles=args.n_quantiles)
    build_s = time.perf_counter() - started
    queries = bank[rng.integers(0, args.bank, size=args.queries)]
    candidate_ids = [np.argsort(-(items @ q))[: args.k_prime] for q in queries]
    metrics: dict[str, float] = {"profile_build_items_per_s": args.profile_items / build_s}
    raw: dict[str, object] = {"profile_build_s": build_s}
    for method in ("multivariate", "reciprocal"):
        samples = []
        for query, ids in zip(queries, candidate_ids):
            scores, candidate_profiles = items[ids] @ query, profiles[ids]
            rerank_candidates(method, scores, candidate_profiles)
            began = time.perf_counter()
            rerank_candidates(method, scores, candidate_profiles)
            samples.append(time.perf_counter() - began)
        metrics[f"{method}_median_us"] = 1e6 * float(np.median(samples))
        metrics[f"{method}_p99_us"] = 1e6 * percentile(samples, 99)
        raw[f"{method}_samples_us"] = [round(1e6 * s, 2) for s in samples]
    raw["load_avg_before"] = load_before
    raw["load_avg_after"] = [round(x, 2) for x in os.getloadavg()]
    return Result(
        benchmark="rerank-speed-online",
        params={"bank": args.bank, "dim": args.dim, "k_prime": args.k_prime, "n_quantiles": args.n_quantiles},
        metrics=metrics,
        raw=raw,
        notes=f"load {load_before[0]} before",
    )


def run(args: argparse.Namespace) -> list[Result]:
    if args.smoke:
        args.images, args.dim, args.bank, args.profile_items, args.queries, args.repeat = 40, 16, 3000, 150, 50, 1
    rng = np.random.default_rng(0)
    return [_offline(args, rng), _online(args, rng)]
