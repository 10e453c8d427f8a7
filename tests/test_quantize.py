"""Static int8 (QDQ) towers and their agreement gate: a quantised tower serves only when its measured top-10
overlap with float32, recorded for that very graph file, passes; otherwise the float32 tower serves and the
encoder choice says why. Calibrated on RSICD train captions and images, measured on RSICD test captions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from posapl import onnx_export, quantize
from posapl.config import preset_config
from posapl.model import POSAPL, build_from_config
from posapl.preprocess import eval_transform
from posapl.runtime import OnnxEncoder, load_encoder
from posapl.text import normalize_caption


@pytest.fixture(scope="module")
def model(tiny_arch_path: Path) -> POSAPL:
    model = build_from_config(preset_config("rsitmd", str(tiny_arch_path)), "random")
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():  # non-zero adapters, so they are in the quantised graph's path
        for param in model.adapters.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.05)
    return model.eval()


@pytest.fixture(scope="module")
def train(data_dir: Path, pos_tagger) -> tuple[list[str], list[list[str]], torch.Tensor]:
    """Calibration data: the first RSICD train captions and images (never the test split)."""
    rsicd = data_dir / "rsicd"
    lines = [line for line in (rsicd / "train_caps.txt").read_text().splitlines() if line.strip()][:64]
    captions = list(dict.fromkeys(normalize_caption(c) for c in lines))
    names = (rsicd / "train_filename.txt").read_text().split()[:8]
    transform = eval_transform(224)
    images = torch.stack([transform(Image.open(rsicd / "train" / name)) for name in names])
    return captions, pos_tagger.tag(captions), images


@pytest.fixture(scope="module")
def test_queries(data_dir: Path, pos_tagger) -> tuple[list[str], list[list[str]]]:
    records = json.loads((data_dir / "rsicd" / "rsicd_test.json").read_text())[:40]
    captions = list(dict.fromkeys(normalize_caption(c) for record in records for c in record["caption"]))
    return captions, pos_tagger.tag(captions)


@pytest.fixture(scope="module")
def graphs(model: POSAPL, train, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    captions, pos, images = train
    cache = tmp_path_factory.mktemp("onnx-static")
    text = quantize.quantize_tower(model, cache, "text", quantize.text_feeds(model, captions, pos))
    image = quantize.quantize_tower(model, cache, "image", quantize.image_feeds(images))
    return cache, text, image


@pytest.fixture(scope="module")
def text_overlap(model: POSAPL, graphs, test_queries) -> float:
    """The gate's measurement on test captions: static int8 vs float32 top-10 over 2,000 random unit vectors."""
    cache, _, _ = graphs
    captions, pos = test_queries
    fp32 = load_encoder(model, "onnx", cache).encoder
    static = OnnxEncoder(model, onnx_export.cache_path(model, cache, "text", "int8-static"),
                         onnx_export.cache_path(model, cache, "image"), None, "int8-static")
    archive = np.random.default_rng(0).standard_normal((2000, model.embed_dim), dtype=np.float32)
    archive /= np.linalg.norm(archive, axis=1, keepdims=True)
    overlap = quantize.top_k_overlap(static.encode_texts(captions, pos), fp32.encode_texts(captions, pos), archive)
    return float(overlap.mean())


def test_static_graphs_are_qdq_int8(graphs) -> None:
    import onnx

    _, text, image = graphs
    for path in (text, image):
        ops = {node.op_type for node in onnx.load(str(path)).graph.node}
        assert {"QuantizeLinear", "DequantizeLinear"} <= ops, ops
        assert path.stat().st_size < path.with_name(path.name.replace("int8-static", "fp32")).stat().st_size


def test_static_int8_is_refused_without_a_recorded_agreement(model: POSAPL, graphs, caplog) -> None:
    cache, _, _ = graphs
    (cache / onnx_export.model_key(model) / quantize.AGREEMENT_FILE).unlink(missing_ok=True)
    choice = load_encoder(model, "onnx", cache, precision="int8-static", image_precision="int8-static")
    assert choice.name == "onnx"  # both towers float32, still ONNX Runtime
    assert "no agreement has been measured for the static int8 text graph" in choice.reason
    assert "the float32 image tower serves" in choice.reason
    assert "the float32 text tower serves" in caplog.text


def test_static_int8_serves_when_its_agreement_passes(model: POSAPL, graphs, text_overlap: float,
                                                      test_queries) -> None:
    """The gate honours the recorded verdict. The tiny random model's real text overlap (about 0.94 here) may
    miss 0.95, so this record carries the threshold that measurement met; the failing case is the next test."""
    cache, text, image = graphs
    threshold = min(quantize.OVERLAP_THRESHOLD, text_overlap)
    quantize.record_agreement(text, "text", text_overlap, queries=40, archive=2000, threshold=threshold)
    quantize.record_agreement(image, "image", 0.5, queries=8, archive=2000)  # a failed image row
    choice = load_encoder(model, "onnx", cache, precision="int8-static", image_precision="int8-static")
    assert choice.name == "onnx-int8-static", choice.reason
    assert "overlap with float32 is 0.500 (< 0.95)" in choice.reason and "image" in choice.reason
    captions, pos = test_queries
    fp32 = load_encoder(model, "onnx", cache).encoder
    got, want = choice.encoder.encode_texts(captions, pos), fp32.encode_texts(captions, pos)
    assert not np.array_equal(got, want) and np.sum(got * want, axis=1).min() > 0.9  # quantised, and close


def test_static_int8_is_refused_when_its_agreement_fails(model: POSAPL, graphs, text_overlap: float) -> None:
    cache, text, _ = graphs
    quantize.record_agreement(text, "text", text_overlap, queries=40, archive=2000, threshold=text_overlap + 0.01)
    choice = load_encoder(model, "onnx", cache, precision="int8-static")
    assert choice.name == "onnx"
    assert f"top-10 overlap with float32 is {text_overlap:.3f}" in choice.reason


def test_static_int8_is_refused_when_the_graph_changed_after_its_gate(model: POSAPL, graphs,
                                                                      text_overlap: float) -> None:
    cache, text, _ = graphs
    quantize.record_agreement(text, "text", text_overlap, queries=40, archive=2000, threshold=0.0)
    original = text.read_bytes()
    try:
        text.write_bytes(original[:-16] + bytes(16))  # corrupted after the measurement
        choice = load_encoder(model, "onnx", cache, precision="int8-static")
    finally:
        text.write_bytes(original)
    assert choice.name == "onnx" and "differs from the one whose agreement was measured" in choice.reason
    assert load_encoder(model, "onnx", cache, precision="int8-static").name == "onnx-int8-static"
