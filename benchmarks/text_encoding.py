"""Query-time text encoding: each batch truncated to its longest real sequence vs plain 77-token encoding;
and the encoder runtimes (PyTorch eager, ONNX Runtime float32 and dynamic int8) on the same truncated batches.

CLIP's text tower is causal and pools at the end-of-text token, so the padding after it cannot change the
embedding; cutting it off must give the same vectors (max abs diff reported) for a fraction of the cost.
The modes (and the runtimes) run alternately, batch by batch, so load drift on a shared machine hits all alike.
"""

from __future__ import annotations

import argparse
import statistics
import time

from benchmarks.harness import DEFAULT_SPLIT, Result, query_captions, smoke_arch, split_path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--split", default=str(DEFAULT_SPLIT), help="annotation file the queries come from")
    parser.add_argument("--arch", default="ViT-B-32", help="open_clip architecture (random weights)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--queries", type=int, default=64, help="distinct real captions encoded per round")
    parser.add_argument("--repeat", type=int, default=2, help="timed rounds after one warm-up round")
    parser.add_argument("--runtimes", nargs="+", default=["torch", "onnx", "onnx-int8"],
                        choices=["torch", "onnx", "onnx-int8", "onnx-int8-static"],
                        help="encoder runtimes compared (first = baseline); onnx-int8-static needs a static graph "
                        "built by `posapl bench runtime-agreement` and is timed whether or not its gate passed")
    parser.add_argument("--onnx-threads", type=int, default=None, help="ONNX Runtime intra-op threads")


def _encoders(model, runtimes: list[str], threads: int | None) -> dict:
    from posapl.runtime import TorchEncoder, load_encoder

    encoders = {}
    for runtime in runtimes:
        if runtime == "torch":
            encoders[runtime] = TorchEncoder(model)
            continue
        if runtime == "onnx-int8-static":
            encoders[runtime] = _static_text_encoder(model, threads)
            continue
        choice = load_encoder(model, "onnx", threads=threads, precision="int8" if runtime == "onnx-int8" else "fp32")
        if choice.reason:
            raise RuntimeError(f"{runtime} did not load: {choice.reason}")
        encoders[runtime] = choice.encoder
    return encoders


def _static_text_encoder(model, threads: int | None):
    """The static int8 text graph as built, bypassing its gate: speed is measured whatever its agreement."""
    from posapl import onnx_export
    from posapl.runtime import OnnxEncoder

    cache = onnx_export.default_cache_dir()
    graph = onnx_export.cache_path(model, cache, "text", "int8-static")
    if not graph.is_file():
        raise RuntimeError("no static int8 text graph; build it with `posapl bench runtime-agreement`")
    return OnnxEncoder(model, graph, onnx_export.cached_tower(model, cache, "image"), threads, "int8-static")


def _runtime_rounds(encoders: dict, captions, pos, batch_size: int, repeat: int) -> dict[str, list[float]]:
    """Per-batch seconds of each runtime, interleaved batch by batch; the first round is warm-up."""
    samples: dict[str, list[float]] = {name: [] for name in encoders}
    for round_no in range(repeat + 1):
        for start in range(0, len(captions), batch_size):
            chunk, chunk_pos = captions[start : start + batch_size], pos[start : start + batch_size]
            for name, encoder in encoders.items():
                began = time.perf_counter()
                encoder.encode_texts(chunk, chunk_pos, batch_size=batch_size)
                if round_no:
                    samples[name].append(time.perf_counter() - began)
    return samples


def _timed_rounds(model, captions, pos, batch_size: int, repeat: int) -> dict[bool, list[float]]:
    """Per-batch seconds for truncate=True/False, interleaved batch by batch; the first round is warm-up."""
    from posapl.encode import encode_texts

    samples: dict[bool, list[float]] = {True: [], False: []}
    for round_no in range(repeat + 1):
        for start in range(0, len(captions), batch_size):
            chunk, chunk_pos = captions[start : start + batch_size], pos[start : start + batch_size]
            for truncate in (True, False):
                began = time.perf_counter()
                encode_texts(model, chunk, chunk_pos, batch_size=batch_size, truncate=truncate)
                if round_no:
                    samples[truncate].append(time.perf_counter() - began)
    return samples


def run(args: argparse.Namespace) -> list[Result]:
    import numpy as np
    import torch

    from posapl.checkpoint import load_model
    from posapl.encode import encode_texts
    from posapl.pos import PosTagger
    from posapl.text import normalize_caption

    arch = str(smoke_arch()) if args.smoke else args.arch
    queries = 8 if args.smoke else args.queries
    repeat = 1 if args.smoke else args.repeat
    batch_sizes = [1, 4] if args.smoke else args.batch_sizes
    split = split_path(args.split)

    model = load_model(None, "random", "rsitmd", arch).eval()  # the serving model, zero-shot
    captions = [normalize_caption(text) for text in query_captions(split, queries)]
    pos = PosTagger().tag(captions)
    truncated = encode_texts(model, captions, pos, truncate=True)
    plain = encode_texts(model, captions, pos, truncate=False)
    max_abs_diff = float(np.abs(truncated - plain).max())
    lengths = (model.tokenize(captions).argmax(dim=-1) + 1).tolist()

    results = []
    for batch_size in batch_sizes:
        samples = _timed_rounds(model, captions, pos, batch_size, repeat)
        fast, slow = statistics.median(samples[True]), statistics.median(samples[False])
        results.append(
            Result(
                benchmark="text-encoding",
                params={
                    "arch": "smoke" if args.smoke else arch,
                    "weights": "random",
                    "batch": batch_size,
                    "queries": queries,
                    "rounds": repeat,
                    "threads": torch.get_num_threads(),
                },
                metrics={
                    "truncated_ms_per_batch": fast * 1e3,
                    "plain77_ms_per_batch": slow * 1e3,
                    "speedup": slow / fast,
                    "max_abs_diff": max_abs_diff,
                },
                raw={
                    "truncated_s": samples[True],
                    "plain77_s": samples[False],
                    "token_lengths": lengths,
                    "split": str(split),
                },
                notes=f"median per batch; min/max truncated {min(samples[True]) * 1e3:.1f}/"
                f"{max(samples[True]) * 1e3:.1f} ms, plain {min(samples[False]) * 1e3:.1f}/"
                f"{max(samples[False]) * 1e3:.1f} ms; real RSICD captions, median length "
                f"{int(statistics.median(lengths))} tokens",
            )
        )
    runtimes = ["torch", "onnx"] if args.smoke else args.runtimes
    if len(runtimes) < 2:
        return results
    encoders = _encoders(model, runtimes, args.onnx_threads)
    vectors = {name: encoder.encode_texts(captions, pos) for name, encoder in encoders.items()}
    baseline = runtimes[0]
    for batch_size in batch_sizes:
        samples = _runtime_rounds(encoders, captions, pos, batch_size, repeat)
        medians = {name: statistics.median(values) for name, values in samples.items()}
        metrics = {f"{name}_ms_per_batch": value * 1e3 for name, value in medians.items()}
        for name in runtimes[1:]:
            metrics[f"{name}_speedup"] = medians[baseline] / medians[name]
            metrics[f"{name}_max_abs_diff"] = float(np.abs(vectors[name] - vectors[baseline]).max())
            metrics[f"{name}_min_cosine"] = float(np.min(np.sum(vectors[name] * vectors[baseline], axis=1)))
        results.append(
            Result(
                benchmark="text-encoding-runtime",
                params={
                    "arch": "smoke" if args.smoke else arch,
                    "weights": "random",
                    "batch": batch_size,
                    "queries": queries,
                    "rounds": repeat,
                    "runtimes": "+".join(runtimes),
                    "torch_threads": torch.get_num_threads(),
                    "onnx_threads": args.onnx_threads or "default",
                },
                metrics=metrics,
                raw={f"{name}_s": values for name, values in samples.items()},
                notes="median per batch, truncated batches, runtimes interleaved batch by batch; real RSICD captions",
            )
        )
    return results
