"""The trainable parts of POSAPL. Every module's output layer starts at zero so training starts from CLIP."""

from __future__ import annotations

import torch
from torch import nn


def _zero(linear: nn.Linear) -> nn.Linear:
    nn.init.zeros_(linear.weight)
    nn.init.zeros_(linear.bias)
    return linear


class SAAdapter(nn.Module):
    """Bottleneck self-attention adapter applied to a block's MLP output.

    Inputs are batch-first (N, L, W) like open_clip 3.x blocks, so the attention mixes the tokens of one
    sample and never samples of a batch.
    """

    def __init__(self, width: int, dim: int, heads: int) -> None:
        super().__init__()
        self.down = nn.Linear(width, dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.up = _zero(nn.Linear(dim, width))

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        h = self.down(x)
        h = h + self.attn(h, h, h, need_weights=False, attn_mask=attn_mask)[0]
        return self.up(h)


class ZeroMLP(nn.Module):
    """Linear → ReLU → zero-initialised Linear: the POS connector and the per-layer POS side adapters."""

    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.down = nn.Linear(width, hidden)
        self.up = _zero(nn.Linear(hidden, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(torch.relu(self.down(x)))


class SideFusion(nn.Module):
    """Fuses four intermediate block outputs into a residual for the final feature.

    `serial`: each stage takes its block output plus the previous stage's output; `end_sum`: the first
    three stages run independently and their sum feeds the last stage (the last block's output is then
    unused, as in the reference). With `pool=True` (image tower) stages average over tokens, so the result
    is one vector per image; otherwise (text tower) it stays per token.
    """

    def __init__(self, width: int, mode: str, pool: bool) -> None:
        super().__init__()
        self.mode = mode
        self.pool = pool
        self.stages = nn.ModuleList(nn.Linear(width, width) for _ in range(3))
        self.out = _zero(nn.Linear(width, width))

    def _reduce(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=1) if self.pool else x

    def _join(self, previous: torch.Tensor, feature: torch.Tensor) -> torch.Tensor:
        return feature + (previous.unsqueeze(1) if self.pool else previous)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        if self.mode == "end_sum":
            summed = sum(self._reduce(torch.relu(stage(f))) for stage, f in zip(self.stages, features[:3]))
            return self.out(summed)
        h = self._reduce(torch.relu(self.stages[0](features[0])))
        for stage, feature in zip(self.stages[1:], features[1:3]):
            h = self._reduce(torch.relu(stage(self._join(h, feature))))
        return self.out(self._reduce(self._join(h, features[3])))
