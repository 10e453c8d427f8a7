"""Static int8 towers (QDQ, per-channel weights) and the agreement gate that decides whether they may serve.

Static quantisation fixes every activation's int8 range once, from calibration inputs, instead of measuring
it on each call as dynamic int8 does, so a query pays no range computation. The ranges come from data the
agreement is *not* measured on (RSICD train captions and images); the agreement (top-10 overlap with the
float32 graph over a large archive, on RSICD test queries) is then measured once, by
`posapl bench runtime-agreement`, and written beside the graphs as `agreement.json`. `posapl.runtime` serves
a static-int8 tower only when that record says it passed, and for the very file it was measured on (the
record keeps the graph's SHA-256): a missing, failed or stale record means the float32 tower serves.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)

from posapl import encode
from posapl.model import POSAPL
from posapl.onnx_export import Tower, _write_atomically, cache_path, cached_tower

log = logging.getLogger(__name__)

STATIC = "int8-static"
AGREEMENT_FILE = "agreement.json"
# The rule for serving a quantised tower: its top-10 results over the benchmark archive keep >= 95% of
# float32's on average (`posapl bench runtime-agreement`).
OVERLAP_THRESHOLD = 0.95
# Only operators that multiply by a stored weight are quantised: they hold the time, while the element-wise
# operators, the softmax and the attention products of two activations (query x key, scores x value) add a
# quantise/dequantise pair each and most of the error.
QUANTISED_OPS = ("MatMul", "Gemm", "Conv")

Feeds = dict[str, np.ndarray]


class _FeedList(CalibrationDataReader):
    """The calibration inputs, one feed dict per ONNX Runtime call."""

    def __init__(self, feeds: Sequence[Feeds]) -> None:
        self._feeds: Iterator[Feeds] = iter(feeds)

    def get_next(self) -> Feeds | None:
        return next(self._feeds, None)


def text_feeds(model: POSAPL, captions: list[str], pos: list[list[str]], batch_size: int = 16) -> list[Feeds]:
    """Calibration batches planned as queries are (cut to their longest caption), so ranges are seen at the
    sequence lengths that are served."""
    return [
        {"tokens": tokens.numpy(), "pos_tokens": pos_tokens.numpy()}
        for _, tokens, pos_tokens in encode.text_batches(model, captions, pos, batch_size, True)
    ]


def image_feeds(images: torch.Tensor, batch_size: int = 16) -> list[Feeds]:
    """Preprocessed images (as `posapl.preprocess.eval_transform` gives them) in batches."""
    return [{"images": images[i : i + batch_size].float().numpy()} for i in range(0, len(images), batch_size)]


def weight_nodes(graph: Path) -> list[str]:
    """The MatMul/Gemm/Conv nodes whose second input is a stored weight (initializer or constant), in graph
    order; products of two activations (attention) are left out and stay float32."""
    import onnx

    model = onnx.load(str(graph))
    stored = {init.name for init in model.graph.initializer}
    stored |= {out for node in model.graph.node if node.op_type == "Constant" for out in node.output}
    return [node.name for node in model.graph.node
            if node.op_type in QUANTISED_OPS and len(node.input) > 1 and node.input[1] in stored]


def quantize_tower(
    model: POSAPL, cache_dir: Path, tower: Tower, feeds: Sequence[Feeds], exclude_tail: int = 0
) -> Path:
    """Calibrate (min/max) and write the static int8 QDQ graph of one tower beside its float32 graph.

    Only weight products are quantised (`weight_nodes`); `exclude_tail` keeps the last N of them in float32
    (the final projection first). Any agreement recorded for an earlier graph of this tower is void once the
    file changes, since the record holds the old file's hash.
    """
    source = cached_tower(model, cache_dir, tower, "fp32")
    target = cache_path(model, cache_dir, tower, STATIC)
    nodes = weight_nodes(source)
    if exclude_tail > 0:
        nodes = nodes[:-exclude_tail]

    def write(tmp: Path) -> None:
        quantize_static(
            str(source),
            str(tmp),
            _FeedList(feeds),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=list(QUANTISED_OPS),
            nodes_to_quantize=nodes,
            calibrate_method=CalibrationMethod.MinMax,
            calibration_providers=["CPUExecutionProvider"],
        )

    _write_atomically(target, write)
    log.info("quantised the %s tower (static int8, %d calibration batches) to %s", tower, len(feeds), target)
    return target


def top_k_overlap(got: np.ndarray, want: np.ndarray, archive: np.ndarray, k: int = 10) -> np.ndarray:
    """Per query, the share of `want`'s exact top-k over `archive` (unit vectors) that `got` also finds."""
    import faiss

    index = faiss.IndexFlatIP(archive.shape[1])
    index.add(np.ascontiguousarray(archive, dtype=np.float32))
    top_got, top_want = index.search(got, k)[1], index.search(want, k)[1]
    return np.array([len(set(a.tolist()) & set(b.tolist())) / k for a, b in zip(top_got, top_want, strict=True)])


def file_digest(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


@dataclass(frozen=True)
class Agreement:
    """One measured gate: how far a quantised tower moves top-10 results from float32, and the verdict."""

    tower: str
    precision: str
    overlap: float
    threshold: float
    passed: bool
    queries: int
    archive: int
    graph_sha256: str
    measured: str


def record_agreement(graph: Path, tower: Tower, overlap: float, queries: int, archive: int,
                     threshold: float = OVERLAP_THRESHOLD) -> Agreement:
    """Write the gate's result for `graph` into the model folder's `agreement.json` (one entry per tower)."""
    entry = Agreement(
        tower=tower, precision=STATIC, overlap=overlap, threshold=threshold, passed=overlap >= threshold,
        queries=queries, archive=archive, graph_sha256=file_digest(graph),
        measured=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    path = graph.parent / AGREEMENT_FILE
    records = _read_records(path)
    records[f"{tower}-{STATIC}"] = asdict(entry)
    _write_atomically(path, lambda tmp: tmp.write_text(json.dumps(records, indent=2)))
    return entry


def _read_records(path: Path) -> dict[str, dict]:
    try:
        records = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return records if isinstance(records, dict) else {}


def refusal(graph: Path, tower: Tower) -> str | None:
    """Why the static int8 `graph` may not serve (None: it may): no graph, no agreement measured, agreement
    below the threshold, or a file other than the one measured (rewritten or corrupted since)."""
    if not graph.is_file():
        return f"no static int8 {tower} graph has been built for this model"
    entry = _read_records(graph.parent / AGREEMENT_FILE).get(f"{tower}-{STATIC}")
    if not isinstance(entry, dict):
        return f"no agreement has been measured for the static int8 {tower} graph"
    try:
        overlap, threshold = float(entry["overlap"]), float(entry["threshold"])
        digest = str(entry["graph_sha256"])
    except (KeyError, TypeError, ValueError):
        return f"the agreement record of the static int8 {tower} graph is unreadable"
    if overlap < threshold:
        return f"the static int8 {tower} graph's top-10 overlap with float32 is {overlap:.3f} (< {threshold:.2f})"
    if file_digest(graph) != digest:
        return f"the static int8 {tower} graph differs from the one whose agreement was measured"
    return None
