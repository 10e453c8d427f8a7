"""Encoder backends with one interface: PyTorch (the reference, and the GPU path) and ONNX Runtime (CPU).

Callers (the service, benchmarks) ask `load_encoder` for an encoder and use `encode_texts` / `encode_images`
exactly as `posapl.encode`'s functions, whatever runs underneath. The ONNX backend runs graphs exported
from the loaded model itself (`posapl.onnx_export`), batched and truncated by the same plan as PyTorch
(`posapl.encode.text_batches`), and is checked against PyTorch on a few inputs when it loads: if export,
loading or that check fails, PyTorch serves and the reason is kept for `/readyz` and the log.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

import numpy as np
import torch

from posapl import encode
from posapl.model import POSAPL
from posapl.onnx_export import Precision, Tower, cache_path, cached_tower, default_cache_dir

if TYPE_CHECKING:
    import onnxruntime as ort

log = logging.getLogger(__name__)

RuntimeName = Literal["auto", "onnx", "torch"]
# Largest difference between ONNX Runtime's and PyTorch's unit vectors accepted by the load-time check;
# the float32 graphs agree to ~1e-6, so anything near this bound means a broken export, not rounding.
SELF_CHECK_TOLERANCE = 1e-4
SELF_CHECK_CAPTIONS = ("a river", "many planes are parked near a long building with some green trees")


class Encoder(Protocol):
    """What the service and benchmarks need from an encoder backend."""

    name: str
    embed_dim: int

    def encode_texts(
        self, captions: list[str], pos: list[list[str]], batch_size: int = 256, truncate: bool = True
    ) -> np.ndarray: ...

    def encode_images(self, images: torch.Tensor, batch_size: int = 64) -> np.ndarray: ...


class TorchEncoder:
    """The reference: `posapl.encode` on the model's own device."""

    name = "torch"

    def __init__(self, model: POSAPL) -> None:
        self.model = model
        self.embed_dim = model.embed_dim

    def encode_texts(
        self, captions: list[str], pos: list[list[str]], batch_size: int = 256, truncate: bool = True
    ) -> np.ndarray:
        return encode.encode_texts(self.model, captions, pos, batch_size=batch_size, truncate=truncate)

    def encode_images(self, images: torch.Tensor, batch_size: int = 64) -> np.ndarray:
        return encode.encode_images(self.model, images, batch_size=batch_size)


def session_options(threads: int | None) -> ort.SessionOptions:
    """One intra-op pool of `threads` (None: ONNX Runtime's default, one per core) whose idle threads sleep
    instead of spinning: FAISS searches run in another thread of the same process at the same time, and
    spinning workers would take the cores it needs."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1
    if threads is not None:
        options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return options


class OnnxEncoder:
    """Both towers in ONNX Runtime on the CPU; text batches planned exactly as PyTorch plans them."""

    def __init__(self, model: POSAPL, text_path: Path, image_path: Path, threads: int | None, precision: Precision,
                 image_precision: Precision = "fp32"):
        import onnxruntime as ort

        self.model = model  # tokenizer and truncation rule; its weights are only read at export
        self.embed_dim = model.embed_dim
        self.precision = precision
        self.image_precision = image_precision
        quantised = ([precision] if precision != "fp32" else []) + (
            [f"image-{image_precision}"] if image_precision != "fp32" else [])
        self.name = "-".join(["onnx", *quantised])
        options = session_options(threads)
        providers = ["CPUExecutionProvider"]
        self._text = ort.InferenceSession(str(text_path), options, providers=providers)
        self._image = ort.InferenceSession(str(image_path), options, providers=providers)

    def encode_texts(
        self, captions: list[str], pos: list[list[str]], batch_size: int = 256, truncate: bool = True
    ) -> np.ndarray:
        out = np.empty((len(captions), self.embed_dim), dtype=np.float32)
        for idx, tokens, pos_tokens in encode.text_batches(self.model, captions, pos, batch_size, truncate):
            feeds = {"tokens": tokens.numpy(), "pos_tokens": pos_tokens.numpy()}
            out[idx.numpy()] = self._text.run(None, feeds)[0]
        return out

    def encode_images(self, images: torch.Tensor, batch_size: int = 64) -> np.ndarray:
        out = [
            self._image.run(None, {"images": images[start : start + batch_size].float().numpy()})[0]
            for start in range(0, len(images), batch_size)
        ]
        return np.concatenate(out) if out else np.zeros((0, self.embed_dim), dtype=np.float32)


@dataclass(frozen=True)
class EncoderChoice:
    """The encoder that serves and why: `reason` says why PyTorch serves when ONNX Runtime was wanted, or why
    a float32 tower serves where a static int8 one was wanted."""

    encoder: Encoder
    requested: RuntimeName
    reason: str | None = None

    @property
    def name(self) -> str:
        return self.encoder.name


def _self_check(model: POSAPL, runtime: OnnxEncoder) -> None:
    """Compare a few embeddings with PyTorch's; a float32 graph that disagrees is never served."""
    pos = [["determiner", "noun"], ["adjective", "noun", "auxiliary", "verb", "adposition", "determiner"]]
    captions = list(SELF_CHECK_CAPTIONS)
    images = torch.rand(2, 3, model.image_size, model.image_size, generator=torch.Generator().manual_seed(0))
    reference = TorchEncoder(model)
    pairs = {
        "text": (runtime.encode_texts(captions, pos), reference.encode_texts(captions, pos)),
        "image": (runtime.encode_images(images), reference.encode_images(images)),
    }
    precisions = {"text": runtime.precision, "image": runtime.image_precision}
    for tower, (got, want) in pairs.items():
        if precisions[tower] != "fp32":  # quantised graphs differ by design; only guard against garbage
            cosine = float(np.min(np.sum(got * want, axis=1)))
            if cosine < 0.9:
                raise RuntimeError(f"the {precisions[tower]} {tower} tower's cosine to PyTorch is {cosine:.3f}")
            continue
        diff = float(np.abs(got - want).max())
        if diff > SELF_CHECK_TOLERANCE:
            raise RuntimeError(f"the {tower} graph differs from PyTorch by {diff:.2e} (> {SELF_CHECK_TOLERANCE})")


def load_encoder(
    model: POSAPL,
    runtime: RuntimeName = "auto",
    cache_dir: Path | None = None,
    threads: int | None = None,
    precision: Precision = "fp32",
    image_precision: Precision = "fp32",
) -> EncoderChoice:
    """The encoder for `model`: ONNX Runtime for a CPU model (`auto` or `onnx`), PyTorch on a GPU or when
    asked (`torch`), and PyTorch with a logged reason when the ONNX graphs cannot be exported or loaded.

    `precision` is the text tower's, `image_precision` the image tower's (fp32 or int8-static); a static
    int8 tower whose recorded agreement is missing or failed is replaced by its float32 graph, and the
    choice's reason says so."""
    if runtime == "torch":
        return EncoderChoice(TorchEncoder(model), runtime)
    if model.device.type != "cpu":
        reason = f"the model is on {model.device.type}; ONNX Runtime serves CPU models, PyTorch serves the GPU"
        if runtime == "onnx":
            log.warning("encoder runtime: PyTorch, because %s", reason)
        return EncoderChoice(TorchEncoder(model), runtime, reason if runtime == "onnx" else None)
    directory = cache_dir or default_cache_dir()
    try:
        text_path, precision, text_refused = _tower_graph(model, directory, "text", precision)
        image_path, image_precision, image_refused = _tower_graph(model, directory, "image", image_precision)
        encoder = OnnxEncoder(model, text_path, image_path, threads, precision, image_precision)
        _self_check(model, encoder)
    except Exception as exc:  # any failure (exporter, disk, runtime) means the same: serve with PyTorch
        # The public reason names the failure but no path; the log has the details.
        reason = f"ONNX export or loading failed ({type(exc).__name__}); PyTorch serves, see the server log"
        log.warning("encoder runtime: PyTorch, because the ONNX graphs failed: %s: %s", type(exc).__name__, exc)
        return EncoderChoice(TorchEncoder(model), runtime, reason)
    log.info("encoder runtime: ONNX Runtime (%s), graphs %s and %s", encoder.name, text_path, image_path)
    refused = "; ".join(reason for reason in (text_refused, image_refused) if reason)
    return EncoderChoice(encoder, runtime, refused or None)


def _tower_graph(
    model: POSAPL, directory: Path, tower: Tower, precision: Precision
) -> tuple[Path, Precision, str | None]:
    """One tower's graph at the wanted precision; for a refused static int8 graph, the float32 one and why."""
    if precision != "int8-static":
        return cached_tower(model, directory, tower, precision), precision, None
    from posapl.quantize import refusal

    refused = refusal(cache_path(model, directory, tower, precision), tower)
    if refused is None:
        return cache_path(model, directory, tower, precision), precision, None
    log.warning("encoder runtime: the float32 %s tower serves, because %s", tower, refused)
    return cached_tower(model, directory, tower, "fp32"), "fp32", f"{refused}; the float32 {tower} tower serves"
