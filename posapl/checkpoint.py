"""Self-describing POSAPL checkpoints: adapter weights plus everything needed to rebuild the base model.

A checkpoint holds only the adapters (a few MB), the adapter layout and the base model's identity, so
training, indexing and serving cannot disagree about which model they run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from posapl.config import DEFAULT_ARCH, DEFAULT_PRETRAINED, ModelConfig, preset_config
from posapl.model import POSAPL, build_from_config
from posapl.weights import BaseModelId, arch_config, create_base_from_config

FORMAT = "posapl-checkpoint/1"
WEIGHTS_FILE = "adapters.safetensors"
CONFIG_FILE = "config.json"


class CheckpointError(ValueError):
    """A checkpoint directory is missing, incomplete or inconsistent."""


def _write_atomic(path: Path, write: Callable[[Path], object]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def save_checkpoint(model: POSAPL, directory: str | Path) -> Path:
    """Write adapters and config; each file is replaced atomically so a crash never leaves a torn file."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {name: t.detach().cpu().contiguous() for name, t in model.adapters.state_dict().items()}
    _write_atomic(directory / WEIGHTS_FILE, lambda p: save_file(tensors, str(p)))
    meta = {
        "format": FORMAT,
        "model": model.config.to_dict(),
        "base": model.base.to_dict(),
        "fingerprint": model.fingerprint(),
    }
    _write_atomic(directory / CONFIG_FILE, lambda p: p.write_text(json.dumps(meta, indent=2)))
    return directory


def read_checkpoint_meta(directory: str | Path) -> dict:
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{directory} is not a POSAPL checkpoint: {CONFIG_FILE} is missing")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path} is not valid JSON: {exc}") from exc
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} has format {meta.get('format')!r}, expected {FORMAT!r}")
    return meta


def load_checkpoint(directory: str | Path, pretrained: str | None = None) -> POSAPL:
    """Rebuild the model a checkpoint describes.

    `pretrained` only says where the base weights come from (e.g. a local copy of the tag's file on an
    offline machine); the model keeps the checkpoint's base identity and therefore its fingerprint.
    """
    meta = read_checkpoint_meta(directory)
    base = BaseModelId.from_dict(meta["base"])
    config = ModelConfig.from_dict(meta["model"])
    clip, _ = create_base_from_config(base.arch_name, base.arch_config, pretrained or base.pretrained, base.seed)
    model = POSAPL(clip, base, config).eval()
    try:
        state = load_file(str(Path(directory) / WEIGHTS_FILE))
    except (FileNotFoundError, SafetensorError) as exc:
        raise CheckpointError(f"cannot read adapter weights in {directory}: {exc}") from exc
    missing, unexpected = model.adapters.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{directory}: adapter weights do not match the config (missing {missing[:3]}, "
                              f"unexpected {unexpected[:3]})")
    if model.fingerprint() != meta["fingerprint"]:
        raise CheckpointError(f"{directory}: adapter weights do not match the recorded fingerprint")
    return model


def load_model(
    checkpoint: str | Path | None,
    pretrained: str | None = None,
    preset: str = "rsitmd",
    arch: str | None = None,
) -> POSAPL:
    """The one way every command (train --resume, eval, index build/update, serve) gets its model.

    With a checkpoint, its config.json names the base model, so the path alone is enough: `pretrained`, when
    given, only says where those base weights come from (a local copy on an offline machine) and `arch`, when
    given, must be the checkpoint's own architecture, since its adapters fit no other. Settings therefore
    default both to None: a default tag would silently replace the checkpoint's own (e.g. `random`) base.

    Without a checkpoint (or with an empty one, an unset environment variable) it is zero-shot CLIP on
    `arch` and `pretrained`, defaulting to DEFAULT_ARCH and DEFAULT_PRETRAINED. Zero-shot uses the causal
    text-adapter variant: with zero adapters it is exactly base CLIP either way, and it lets queries be
    encoded truncated.
    """
    if checkpoint:
        if arch:
            _check_arch(checkpoint, arch)
        return load_checkpoint(checkpoint, pretrained)
    config = replace(preset_config(preset, arch or DEFAULT_ARCH), text_adapter_causal=True)
    return build_from_config(config, pretrained or DEFAULT_PRETRAINED)


def _check_arch(checkpoint: str | Path, arch: str) -> None:
    """Compare architectures by their open_clip config, so a JSON file and its recorded copy are one arch."""
    base = BaseModelId.from_dict(read_checkpoint_meta(checkpoint)["base"])
    name, config = arch_config(arch)
    if config != base.arch_config:
        raise CheckpointError(
            f"{checkpoint} was trained on architecture {base.arch_name!r}, not {name!r}: leave the architecture "
            "unset to use the checkpoint's own"
        )
