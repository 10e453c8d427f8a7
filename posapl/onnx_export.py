"""Export the loaded POSAPL towers to ONNX, cached on disk by model identity.

The graphs are traced from the model's own `encode_text` / `encode_image` (adapters, POS connector, side
adapters and Side Fusion included), so nothing is re-implemented: the ONNX file is the PyTorch computation.
torch.onnx's export from `torch.export` (the "dynamo" exporter, which needs onnxscript) keeps batch size and
sequence length symbolic; the older TorchScript exporter bakes the example's shapes into the attention
reshapes and gives wrong shapes for any other batch, so it is not used.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from posapl.model import POSAPL

log = logging.getLogger(__name__)

Tower = Literal["text", "image"]
# fp32: the exported graph; int8: dynamic int8 (made on first use); int8-static: QDQ int8 calibrated on data,
# built by `posapl.quantize` and served only when its recorded agreement passed.
Precision = Literal["fp32", "int8", "int8-static"]
# Bump when the exported graph changes meaning (inputs, outputs, normalisation), so old cache files are ignored.
EXPORT_FORMAT = 1
OPSET = 18


def default_cache_dir() -> Path:
    """`$XDG_CACHE_HOME/posapl/onnx`, else `~/.cache/posapl/onnx`: per user, outside the index store, which
    the service may only read."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "posapl" / "onnx"


class _TextTower(nn.Module):
    def __init__(self, model: POSAPL) -> None:
        super().__init__()
        self.model = model

    def forward(self, tokens: torch.Tensor, pos_tokens: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.model.encode_text(tokens, pos_tokens).float(), dim=-1)


class _ImageTower(nn.Module):
    def __init__(self, model: POSAPL) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.model.encode_image(images).float(), dim=-1)


def model_key(model: POSAPL) -> str:
    """The model fingerprint, plus the size and mtime of a local base-weights file: the fingerprint names a
    file by its path, and a file replaced in place must not reuse a graph exported from the old weights."""
    parts = [model.fingerprint()]
    pretrained = Path(model.base.pretrained)
    if pretrained.is_file():
        stat = pretrained.stat()
        parts.append(f"{stat.st_size}-{stat.st_mtime_ns}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def cache_path(model: POSAPL, cache_dir: Path, tower: Tower, precision: Precision = "fp32") -> Path:
    """Where one tower's graph lives: one folder per model, one file per tower, precision and exporter."""
    exporter = f"v{EXPORT_FORMAT}-opset{OPSET}-torch{torch.__version__.split('+')[0]}"
    return cache_dir / model_key(model) / f"{tower}-{precision}-{exporter}.onnx"


def _export(module: nn.Module, args: tuple[torch.Tensor, ...], path: Path, names: list[str],
            shapes: tuple[dict[int, object], ...]) -> None:
    """Trace a private copy: torch.export swaps the module's parameters for fake tensors while it traces,
    and the service keeps answering with the same model in PyTorch while the export runs in the background."""
    module = copy.deepcopy(module)
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            module.eval(),
            args,
            dynamo=True,
            input_names=names,
            output_names=["unit_vectors"],
            dynamic_shapes=shapes,
            opset_version=OPSET,
            verbose=False,
        )
    if program is None:
        raise RuntimeError("torch.onnx.export returned no program")
    program.save(str(path), external_data=False)


def export_text_tower(model: POSAPL, path: Path) -> None:
    """(tokens, pos_tokens) int64 (batch, length) → unit embeddings (batch, dim); both axes dynamic.

    The example has batch 2 and 8 tokens: torch.export specialises sizes 0 and 1, so examples must avoid them.
    """
    batch = torch.export.Dim("batch")
    length = torch.export.Dim("length", max=model.context_length)
    tokens = model.tokenize(["a river runs past a forest", "many planes"])[:, :8].cpu()
    shape = {0: batch, 1: length}
    _export(_TextTower(model), (tokens, tokens.clone()), path, ["tokens", "pos_tokens"], (shape, shape))


def export_image_tower(model: POSAPL, path: Path) -> None:
    """Preprocessed images float32 (batch, 3, H, W) → unit embeddings (batch, dim); batch dynamic."""
    images = torch.zeros(2, 3, model.image_size, model.image_size)
    _export(_ImageTower(model), (images,), path, ["images"], ({0: torch.export.Dim("batch")},))


def quantize_int8(source: Path, target: Path) -> None:
    """Dynamic int8: weights of MatMul/Gemm quantised once, activations quantised per call from their range."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8)


def _write_atomically(target: Path, write: Callable[[Path], object]) -> None:
    """Write into a temporary file beside `target`, fsync, rename: a reader (or a second server exporting
    the same model at the same time) sees a complete file or none."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def cached_tower(model: POSAPL, cache_dir: Path, tower: Tower, precision: Precision = "fp32") -> Path:
    """The graph file of one tower, exported (and quantised) on first use and reused after a restart."""
    target = cache_path(model, cache_dir, tower, precision)
    if target.is_file():
        return target
    if precision == "int8-static":
        raise FileNotFoundError(f"no static int8 {tower} graph: it is built from calibration data by posapl.quantize")
    if precision == "int8":
        source = cached_tower(model, cache_dir, tower, "fp32")
        _write_atomically(target, lambda tmp: quantize_int8(source, tmp))
    else:
        export = export_text_tower if tower == "text" else export_image_tower
        if model.device.type != "cpu":
            raise ValueError("the ONNX export traces the model on the CPU; load it on the CPU")
        _write_atomically(target, lambda tmp: export(model, tmp))
    info = {"fingerprint": model.fingerprint(), "base": model.base.to_dict()["pretrained"], "torch": torch.__version__}
    _write_atomically(target.parent / "model.json", lambda tmp: tmp.write_text(json.dumps(info, indent=2)))
    log.info("exported the %s tower (%s) to %s", tower, precision, target)
    return target
