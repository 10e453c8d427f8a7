"""ONNX Runtime session settings for the two towers: each variant is one session of the same graph, and the
variants run alternately query by query, so load drift on a shared machine hits all of them alike.

Text: real RSICD captions one at a time (the serving case), planned as the service plans them. Image: UCM
test images (256 px TIFF) one at a time through the service's preprocessing; preprocessing is timed apart
from the tower (median per image, after one warm-up). Variants: the served options
(`posapl.runtime.session_options`), one intra-op thread, spinning workers, pre-packing off, memory arena off,
I/O binding, and (image) the static int8 graph when one is built. Startup: session creation from the
exported graph vs from a saved optimised graph.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Iterator

from benchmarks.harness import DEFAULT_SPLIT, Result, query_captions, smoke_arch, split_path

VARIANTS = ("served", "threads-1", "spinning", "no-prepacking", "no-arena", "io-binding")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--split", default=str(DEFAULT_SPLIT), help="annotation file the text queries come from")
    parser.add_argument("--ucm-dir", default=None, help="UCM images folder (default: ../shared/data/ucm/images)")
    parser.add_argument("--arch", default="ViT-B-32", help="open_clip architecture (random weights)")
    parser.add_argument("--queries", type=int, default=40, help="captions (and images) per round")
    parser.add_argument("--repeat", type=int, default=3, help="timed rounds after one warm-up round")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--cache-dir", default=None, help="ONNX graph cache (default: the service's)")


def _options(variant: str):
    from posapl.runtime import session_options

    options = session_options(1 if variant == "threads-1" else None)
    if variant == "spinning":
        options.add_session_config_entry("session.intra_op.allow_spinning", "1")
    if variant == "no-prepacking":
        options.add_session_config_entry("session.disable_prepacking", "1")
    if variant == "no-arena":
        options.enable_cpu_mem_arena = False
    return options


def _runner(session, variant: str) -> Callable[[dict], object]:
    if variant != "io-binding":
        return lambda feeds: session.run(None, feeds)
    binding = session.io_binding()

    def run(feeds: dict) -> object:
        for name, value in feeds.items():
            binding.bind_cpu_input(name, value)
        binding.bind_output(session.get_outputs()[0].name)
        session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0]

    return run


def _alternate(runners: dict[str, Callable[[dict], object]], feeds: list[dict], repeat: int) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {name: [] for name in runners}
    for round_no in range(repeat + 1):
        for feed in feeds:
            for name, run in runners.items():
                began = time.perf_counter()
                run(feed)
                if round_no:
                    samples[name].append(time.perf_counter() - began)
    return samples


def _startup(graph, scratch) -> dict[str, float]:
    """Seconds to create a session from the exported graph, to save an optimised copy once, and to create a
    session from that copy (basic optimisations only, the rest already applied)."""
    import onnxruntime as ort

    from posapl.runtime import session_options

    began = time.perf_counter()
    ort.InferenceSession(str(graph), session_options(None), providers=["CPUExecutionProvider"])
    plain = time.perf_counter() - began
    saving = session_options(None)
    saving.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    saving.optimized_model_filepath = str(scratch / f"{graph.stem}-optimised.onnx")
    began = time.perf_counter()
    ort.InferenceSession(str(graph), saving, providers=["CPUExecutionProvider"])
    save = time.perf_counter() - began
    began = time.perf_counter()
    ort.InferenceSession(saving.optimized_model_filepath, session_options(None), providers=["CPUExecutionProvider"])
    optimised = time.perf_counter() - began
    return {"startup_s": plain, "save_optimised_s": save, "startup_from_optimised_s": optimised}


def run(args: argparse.Namespace) -> Iterator[Result]:
    import tempfile
    from pathlib import Path

    import numpy as np
    import onnxruntime as ort
    from PIL import Image

    from posapl import encode, onnx_export
    from posapl.checkpoint import load_model
    from posapl.pos import PosTagger
    from posapl.preprocess import eval_transform
    from posapl.quantize import refusal
    from posapl.text import normalize_caption

    arch = str(smoke_arch()) if args.smoke else args.arch
    queries = 4 if args.smoke else args.queries
    repeat = 1 if args.smoke else args.repeat
    split = split_path(args.split)
    ucm = Path(args.ucm_dir) if args.ucm_dir else split.parent.parent / "ucm" / "images"
    cache = Path(args.cache_dir) if args.cache_dir else onnx_export.default_cache_dir()

    model = load_model(None, "random", "rsitmd", arch).eval()
    captions = [normalize_caption(text) for text in query_captions(split, queries)]
    pos = PosTagger().tag(captions)
    text_feeds = [
        {"tokens": tokens.numpy(), "pos_tokens": pos_tokens.numpy()}
        for caption, words in zip(captions, pos, strict=True)
        for _, tokens, pos_tokens in encode.text_batches(model, [caption], [words], 1, True)
    ]
    transform = eval_transform(model.image_size)
    paths = sorted(ucm.glob("*.tif"))[:queries]
    pixels, preprocess = [], []
    for path in [paths[0], *paths]:  # the first call pays torch's one-time setup: a warm-up, not timed
        began = time.perf_counter()
        with Image.open(path) as image:
            pixels.append(transform(image.convert("RGB"))[None].numpy())
        preprocess.append(time.perf_counter() - began)
    pixels, preprocess_ms = pixels[1:], statistics.median(preprocess[1:]) * 1e3
    image_feeds = [{"images": p} for p in pixels]

    for tower, feeds in (("text", text_feeds), ("image", image_feeds)):
        graph = onnx_export.cached_tower(model, cache, tower)
        runners = {
            variant: _runner(ort.InferenceSession(str(graph), _options(variant), providers=["CPUExecutionProvider"]),
                             variant)
            for variant in args.variants
        }
        static = onnx_export.cache_path(model, cache, tower, "int8-static")
        if static.is_file():  # timed whether or not its gate passed; the gate is in the params
            runners["int8-static"] = _runner(
                ort.InferenceSession(str(static), _options("served"), providers=["CPUExecutionProvider"]), "served")
        samples = _alternate(runners, feeds, repeat)
        medians = {name: statistics.median(values) * 1e3 for name, values in samples.items()}
        with tempfile.TemporaryDirectory() as scratch:
            startup = _startup(graph, Path(scratch))
        metrics = {f"{name}_p50_ms": value for name, value in medians.items()}
        metrics.update({f"{name}_p90_ms": float(np.percentile(samples[name], 90) * 1e3) for name in samples})
        metrics.update(startup)
        if tower == "image":
            metrics["preprocess_256px_ms"] = preprocess_ms
        yield Result(
            benchmark="onnx-session",
            params={
                "arch": "smoke" if args.smoke else arch,
                "weights": "random",
                "tower": tower,
                "batch": 1,
                "queries": len(feeds),
                "rounds": repeat,
                "input": "RSICD test captions" if tower == "text" else "UCM 256 px TIFF -> 224 px",
                "int8_static_gate": refusal(static, tower) or "passed",
            },
            metrics=metrics,
            raw={f"{name}_s": values for name, values in samples.items()},
            notes="p50 per call, variants alternated call by call on one machine; the served options are "
            "ORT_ENABLE_ALL, sequential, 1 inter-op thread, one intra-op thread per core, no spinning",
        )
