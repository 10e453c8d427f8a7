"""Creating the frozen base CLIP: from an open_clip tag, a local weights file, or seeded random weights.

Offline machines are the normal case for tests and air-gapped deployments, so a tag that cannot be
downloaded becomes one clear error naming both ways out instead of a network stack trace.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import huggingface_hub
import open_clip
import torch
from open_clip.model import CLIP

RANDOM = "random"
CONNECT_CHECK_S = 2.0
HUB_WEIGHTS_FILE = "open_clip_pytorch_model.bin"  # open_clip's names for a hub entry without a file name
HUB_SAFETENSORS_FILE = "open_clip_model.safetensors"
LOCAL_WEIGHTS_HINT = (
    "Pass a local open_clip weights file instead (--pretrained /path/to/open_clip_pytorch_model.bin, "
    "or POSAPL_PRETRAINED), or --pretrained random for testing only."
)


class WeightsUnavailableError(RuntimeError):
    """The base model weights could not be obtained."""


@dataclass(frozen=True)
class BaseModelId:
    """Everything needed to recreate the frozen base model bit for bit."""

    arch_config: dict[str, Any]
    arch_name: str
    pretrained: str
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BaseModelId:
        return cls(**data)


def arch_config(arch: str) -> tuple[str, dict[str, Any]]:
    """Resolve an open_clip model name or a JSON config file to (name, config dict)."""
    path = Path(arch)
    if path.suffix == ".json":
        if not path.is_file():
            raise FileNotFoundError(f"model config file {arch} does not exist")
        return path.stem, json.loads(path.read_text())
    config = open_clip.get_model_config(arch)
    if config is None:
        raise ValueError(f"unknown open_clip architecture {arch!r} (and not a .json model config file)")
    return arch, config


def create_base(arch: str, pretrained: str, seed: int = 0) -> tuple[CLIP, BaseModelId]:
    """Build the base CLIP and load its weights; returns the model in eval mode and its identity."""
    name, config = arch_config(arch)
    return create_base_from_config(name, config, pretrained, seed)


def create_base_from_config(
    name: str, config: dict[str, Any], pretrained: str, seed: int = 0
) -> tuple[CLIP, BaseModelId]:
    """Seeded construction makes `random` weights reproducible, which checkpoints of test models rely on."""
    torch.manual_seed(seed)
    model = CLIP(**config)
    if pretrained != RANDOM:
        open_clip.load_checkpoint(model, _weights_file(name, pretrained))
    model.eval()
    return model, BaseModelId(arch_config=config, arch_name=name, pretrained=pretrained, seed=seed)


def _weights_file(arch_name: str, pretrained: str) -> str:
    if Path(pretrained).is_file():
        return pretrained
    if Path(pretrained).suffix in (".bin", ".pt", ".pth", ".safetensors") or "/" in pretrained:
        raise WeightsUnavailableError(f"weights file {pretrained} does not exist")
    tag_cfg = open_clip.get_pretrained_cfg(arch_name, pretrained)
    if not tag_cfg:
        raise WeightsUnavailableError(
            f"{pretrained!r} is neither a weights file nor an open_clip tag for {arch_name} "
            f"(tags: {', '.join(open_clip.list_pretrained_tags_by_model(arch_name)) or 'none'})"
        )
    unavailable = _why_no_download(tag_cfg)
    if unavailable is not None:
        cached = _cached_weights(tag_cfg)
        if cached is not None:
            return cached
        raise WeightsUnavailableError(
            f"the {arch_name} weights {pretrained!r} are not in the local cache and cannot be downloaded "
            f"({unavailable}). {LOCAL_WEIGHTS_HINT}"
        )
    try:
        return open_clip.download_pretrained(tag_cfg)
    except Exception as exc:  # any network/cache failure means the same thing to the user
        raise WeightsUnavailableError(
            f"could not download the {arch_name} weights {pretrained!r} ({type(exc).__name__}). {LOCAL_WEIGHTS_HINT}"
        ) from exc


def _why_no_download(tag_cfg: dict[str, Any]) -> str | None:
    """Why a download cannot work, decided at once: offline mode, or the host not answering within
    CONNECT_CHECK_S. Without this check the hub client retries a dead connection for about a minute
    before failing."""
    if huggingface_hub.constants.is_offline_mode():
        return "HF_HUB_OFFLINE is set"
    url = huggingface_hub.constants.ENDPOINT if tag_cfg.get("hf_hub") else tag_cfg.get("url", "")
    if not url:
        return None
    try:
        httpx.head(url, timeout=CONNECT_CHECK_S)
    except httpx.HTTPError as exc:
        return f"{url} is unreachable: {type(exc).__name__}"
    return None


def _cached_weights(tag_cfg: dict[str, Any]) -> str | None:
    """The tag's weights file from the hub cache, if an earlier online run left it there."""
    model_id, filename = os.path.split(tag_cfg.get("hf_hub", ""))
    if not model_id:
        return None
    filename = filename or HUB_WEIGHTS_FILE
    for name in ([HUB_SAFETENSORS_FILE] if filename == HUB_WEIGHTS_FILE else []) + [filename]:
        try:
            return huggingface_hub.hf_hub_download(model_id, name, local_files_only=True)
        except Exception:  # not cached (or a broken cache entry): try the next name
            continue
    return None
