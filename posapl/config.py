"""Every POSAPL hyperparameter in one place, so a checkpoint can carry the exact model it was trained as."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

DEFAULT_ARCH = "ViT-B-32"
DEFAULT_PRETRAINED = "laion2b_s34b_b79k"


@dataclass(frozen=True)
class ModelConfig:
    """Adapter layout on top of a frozen open_clip model.

    `arch` is an open_clip model name or the path of an open_clip JSON model config (tests use a tiny one).
    `fusion_layers=None` taps the blocks the reference taps: the last block and every second one before it
    (5, 7, 9, 11 of 12).

    `text_adapter_causal=False` is the reference: the SA-adapter attention in the text tower sees every
    token, padding included, so trained adapters make the embedding depend on the padding length and
    query-time truncation is inexact. `True` gives the adapter the text tower's causal mask, which keeps the
    tower causal and makes truncated encoding exact; it is an option to be measured against the reference.
    """

    arch: str = DEFAULT_ARCH
    adapter_dim: int = 128
    adapter_heads: int = 8
    pos_connector: bool = True
    pos_side: bool = False
    pos_dim: int = 64
    fusion: Literal["serial", "end_sum"] = "serial"
    fusion_layers: tuple[int, ...] | None = None
    text_adapter_causal: bool = False

    def __post_init__(self) -> None:
        if self.fusion not in ("serial", "end_sum"):
            raise ValueError(f"fusion must be 'serial' or 'end_sum', got {self.fusion!r}")
        if self.adapter_dim % self.adapter_heads:
            raise ValueError(f"adapter_dim {self.adapter_dim} is not divisible by adapter_heads {self.adapter_heads}")
        if self.fusion_layers is not None and len(self.fusion_layers) != 4:
            raise ValueError(f"Side Fusion taps exactly four blocks, got {self.fusion_layers}")

    def taps(self, num_layers: int) -> tuple[int, ...]:
        """Block indices whose outputs feed Side Fusion for a tower of `num_layers` blocks."""
        layers = self.fusion_layers or tuple(num_layers - 1 - 2 * k for k in (3, 2, 1, 0))
        if min(layers) < 0 or max(layers) >= num_layers:
            raise ValueError(f"Side Fusion layers {layers} do not exist in a {num_layers}-block tower")
        return layers

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["fusion_layers"] = list(self.fusion_layers) if self.fusion_layers else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        data = dict(data)
        if data.get("fusion_layers") is not None:
            data["fusion_layers"] = tuple(data["fusion_layers"])
        return cls(**data)


PRESETS: dict[str, ModelConfig] = {
    "rsitmd": ModelConfig(pos_side=False, pos_dim=64, fusion="serial"),
    "rsicd": ModelConfig(pos_side=True, pos_dim=128, fusion="end_sum"),
}


def preset_config(preset: str, arch: str = DEFAULT_ARCH, **overrides: Any) -> ModelConfig:
    """The reference configuration for a benchmark, optionally on another architecture."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    return replace(PRESETS[preset], arch=arch, **overrides)


def absolute_if_file(value: str | None) -> str | None:
    """A model config or weights file named by absolute path, so that every command names the same model
    (the model's identity records it) whatever its working directory; names (an open_clip tag, `random`) and
    None stay as they are."""
    return str(Path(value).resolve()) if value and Path(value).is_file() else value
