"""How far the int8 ONNX towers move query results from the float32 graph (and that the float32 graph does not
move them from PyTorch): dynamic int8 (text tower) and static int8 QDQ (text and image towers).

- top-10 overlap: 1,000 real RSICD captions searched exactly over a 100k-vector archive (random unit vectors,
  as the query-latency store), |top10(int8) ∩ top10(fp32)| / 10 averaged over the queries;
- the embedding cosine between int8 and fp32 vectors of the same captions;
- mR on the RSICD test split with the shared images (image tower fp32 in both systems, text tower fp32 vs
  int8). With random weights mR is chance level, so the cosine and the overlap are the numbers to read.

The int8 text tower becomes the service default only if the top-10 overlap is >= 0.95.

Static int8 (`int8-static`): each tower is calibrated on RSICD *train* data (captions from train_caps.txt,
images from train/), then measured on the test queries: text as above, images as the first test images
searched over the same archive. Each tower's row is also the gate: its overlap is written beside the graphs
(`agreement.json`, `posapl.quantize`), and the service serves a static int8 tower only if it passed.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator

from benchmarks.harness import DEFAULT_SPLIT, Result, query_captions, smoke_arch, split_path

OVERLAP_FOR_DEFAULT = 0.95


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--split", default=str(DEFAULT_SPLIT), help="annotation file with images (HarMA JSON)")
    parser.add_argument("--arch", default="ViT-B-32", help="open_clip architecture (random weights)")
    parser.add_argument("--queries", type=int, default=1000, help="distinct real captions searched")
    parser.add_argument("--vectors", type=int, default=100_000, help="archive size for the top-10 overlap")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--limit-images", type=int, default=None, help="first N test images for mR")
    parser.add_argument("--cache-dir", default=None, help="ONNX graph cache (default: the service's)")
    parser.add_argument("--precisions", nargs="+", default=["int8", "int8-static"], choices=["int8", "int8-static"],
                        help="int8: dynamic int8 text tower; int8-static: calibrated QDQ text and image towers")
    parser.add_argument("--train-dir", default=None, help="RSICD train folder with train_caps.txt, train_filename.txt"
                        " and train/ (default: beside the split)")
    parser.add_argument("--calibration-captions", type=int, default=500, help="train captions calibrating text")
    parser.add_argument("--calibration-images", type=int, default=100, help="train images calibrating the image tower")
    parser.add_argument("--image-queries", type=int, default=300, help="test images whose top-10 is compared")
    parser.add_argument("--towers", nargs="+", default=["text", "image"], choices=["text", "image"],
                        help="towers quantised and gated by int8-static")
    parser.add_argument("--fp32-tail", type=int, default=0,
                        help="keep the last N MatMul/Gemm/Conv nodes of each tower in float32")


def _overlap(a, b) -> list[float]:
    return [len(set(x.tolist()) & set(y.tolist())) / len(x) for x, y in zip(a, b, strict=True)]


def _embed_split_images(encoder, paths, image_size: int, batch: int = 32):
    import numpy as np
    import torch
    from PIL import Image

    from posapl.preprocess import eval_transform

    transform = eval_transform(image_size)
    out = []
    for start in range(0, len(paths), batch):
        images = []
        for path in paths[start : start + batch]:
            with Image.open(path) as image:
                images.append(transform(image))
        out.append(encoder.encode_images(torch.stack(images)))
    return np.concatenate(out)


def run(args: argparse.Namespace) -> Iterator[Result]:
    from pathlib import Path

    import faiss
    import numpy as np

    from benchmarks.quality import subset
    from posapl.checkpoint import load_model
    from posapl.metrics import retrieval_metrics
    from posapl.pos import PosTagger
    from posapl.runtime import TorchEncoder, load_encoder
    from posapl.text import normalize_caption
    from training.annotations import load_eval_split

    arch = str(smoke_arch()) if args.smoke else args.arch
    n_queries = 50 if args.smoke else args.queries
    n_vectors = 2000 if args.smoke else args.vectors
    limit_images = 20 if args.smoke else args.limit_images
    split = split_path(args.split)
    cache_dir = Path(args.cache_dir) if args.cache_dir else None

    model = load_model(None, "random", "rsitmd", arch).eval()  # the serving model, zero-shot
    fp32 = load_encoder(model, "onnx", cache_dir)
    if fp32.reason:
        raise RuntimeError(f"ONNX Runtime did not load: {fp32.reason}")
    tagger = PosTagger()
    captions = [normalize_caption(text) for text in query_captions(split, n_queries)]
    pos = tagger.tag(captions)
    rng = np.random.default_rng(0)
    archive = rng.standard_normal((n_vectors, model.embed_dim), dtype=np.float32)
    archive /= np.linalg.norm(archive, axis=1, keepdims=True)
    if "int8-static" in args.precisions:
        from benchmarks.static_agreement import static_rows

        yield from static_rows(args, model, fp32.encoder, captions, pos, archive, split)
    if "int8" not in args.precisions:
        return
    started = time.perf_counter()
    int8 = load_encoder(model, "onnx", cache_dir, precision="int8")
    if int8.reason:
        raise RuntimeError(f"ONNX Runtime did not load: {int8.reason}")
    prepare_s = time.perf_counter() - started
    vectors = {
        "torch": TorchEncoder(model).encode_texts(captions, pos),
        "fp32": fp32.encoder.encode_texts(captions, pos),
        "int8": int8.encoder.encode_texts(captions, pos),
    }
    index = faiss.IndexFlatIP(model.embed_dim)
    index.add(archive)
    top = {name: index.search(v, args.k)[1] for name, v in vectors.items()}
    overlap_int8 = _overlap(top["int8"], top["fp32"])
    overlap_fp32 = _overlap(top["fp32"], top["torch"])
    cosine = np.sum(vectors["int8"] * vectors["fp32"], axis=1)

    data = load_eval_split(split)
    if limit_images:
        data = subset(data, limit_images)
    image_vectors = _embed_split_images(fp32.encoder, data.image_paths, model.image_size)
    texts = [normalize_caption(c) for c in data.captions]
    text_pos = tagger.tag(texts)
    mr = {}
    for name, choice in (("fp32", fp32), ("int8", int8)):
        text_vectors = choice.encoder.encode_texts(texts, text_pos)
        mr[name] = retrieval_metrics(image_vectors @ text_vectors.T, data.img2txt, data.txt2img)["r_mean"]

    mean_overlap = float(np.mean(overlap_int8))
    yield Result(
        benchmark="runtime-agreement",
        params={
            "arch": "smoke" if args.smoke else arch,
            "weights": "random",
            "queries": n_queries,
            "vectors": n_vectors,
            "k": args.k,
            "images": len(data.image_paths),
            "captions": len(texts),
            "int8": "onnxruntime quantize_dynamic QInt8, text tower",
        },
        metrics={
            "top10_overlap_int8_vs_fp32": mean_overlap,
            "top10_overlap_min": float(np.min(overlap_int8)),
            "top10_overlap_fp32_vs_torch": float(np.mean(overlap_fp32)),
            "cosine_int8_fp32_mean": float(np.mean(cosine)),
            "cosine_int8_fp32_min": float(np.min(cosine)),
            "max_abs_diff_fp32_vs_torch": float(np.abs(vectors["fp32"] - vectors["torch"]).max()),
            "mR_fp32": mr["fp32"],
            "mR_int8": mr["int8"],
            "mR_change": round(mr["int8"] - mr["fp32"], 2),
            "int8_default_ok": int(mean_overlap >= OVERLAP_FOR_DEFAULT),
        },
        raw={"overlap_int8": overlap_int8, "cosine": cosine.tolist(), "prepare_s": prepare_s,
             "split": str(split)},
        notes=f"int8 becomes the default only if top-10 overlap >= {OVERLAP_FOR_DEFAULT}; "
        "random weights: mR is chance level",
    )
