"""POSAPL: a frozen open_clip CLIP with SA-adapters, a part-of-speech prior and Side Fusion.

The base model is created by open_clip; this module only re-runs its blocks with the adapters inserted,
using open_clip's own sub-modules, so the frozen computation is exactly open_clip's.
"""

from __future__ import annotations

import hashlib
import json

import torch
from open_clip.model import CLIP
from open_clip.tokenizer import SimpleTokenizer
from open_clip.transformer import ResidualAttentionBlock, text_global_pool
from torch import nn

from posapl.adapters import SAAdapter, SideFusion, ZeroMLP
from posapl.config import DEFAULT_ARCH, ModelConfig, preset_config
from posapl.weights import BaseModelId, create_base


class POSAPL(nn.Module):
    def __init__(self, clip: CLIP, base: BaseModelId, config: ModelConfig) -> None:
        super().__init__()
        if not (clip.transformer.batch_first and clip.visual.transformer.batch_first):
            raise ValueError("POSAPL expects open_clip towers that run batch-first (open_clip >= 3)")
        self.clip = clip
        self.base = base
        self.config = config
        for param in clip.parameters():
            param.requires_grad_(False)

        text_width = clip.transformer.width
        image_width = clip.visual.transformer.width
        text_layers = len(clip.transformer.resblocks)
        image_layers = len(clip.visual.transformer.resblocks)
        self.text_taps = config.taps(text_layers)
        self.image_taps = config.taps(image_layers)

        adapters = {
            "image_sa": nn.ModuleList(
                SAAdapter(image_width, config.adapter_dim, config.adapter_heads) for _ in range(image_layers)
            ),
            "text_sa": nn.ModuleList(
                SAAdapter(text_width, config.adapter_dim, config.adapter_heads) for _ in range(text_layers)
            ),
            "image_fusion": SideFusion(image_width, config.fusion, pool=True),
            "text_fusion": SideFusion(text_width, config.fusion, pool=False),
        }
        if config.pos_connector:
            adapters["pos_connector"] = ZeroMLP(text_width, text_width)
            if config.pos_side:
                adapters["pos_side"] = nn.ModuleList(ZeroMLP(text_width, config.pos_dim) for _ in range(text_layers))
        self.adapters = nn.ModuleDict(adapters)
        self.tokenizer = SimpleTokenizer(context_length=clip.context_length)

    @property
    def embed_dim(self) -> int:
        return int(self.clip.text_projection.shape[1])

    @property
    def image_size(self) -> int:
        size = self.clip.visual.image_size
        return int(size[0] if isinstance(size, tuple | list) else size)

    @property
    def context_length(self) -> int:
        return int(self.clip.context_length)

    @property
    def device(self) -> torch.device:
        return self.clip.logit_scale.device

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.clip.logit_scale

    def train(self, mode: bool = True) -> POSAPL:
        """Only the adapters switch to training mode; the frozen base always runs as in inference."""
        super().train(False)
        self.adapters.train(mode)
        self.training = mode
        return self

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        return self.tokenizer(texts)

    def truncation_is_exact(self) -> bool:
        """Whether dropping tokens after the longest end-of-text token cannot change any embedding.

        CLIP's text tower is causal; the reference's text SA-adapters are not, unless their output is zero.
        """
        if self.config.text_adapter_causal:
            return True
        return not any(adapter.up.weight.any() or adapter.up.bias.any() for adapter in self.adapters["text_sa"])

    def _block(
        self,
        block: ResidualAttentionBlock,
        sa: SAAdapter,
        x: torch.Tensor,
        attn_mask: torch.Tensor | None,
        adapter_mask: torch.Tensor | None,
        pos_side: ZeroMLP | None = None,
        pos: torch.Tensor | None = None,
    ) -> torch.Tensor:
        x = x + block.ls_1(block.attention(q_x=block.ln_1(x), attn_mask=attn_mask))
        if pos_side is not None:
            x = x + pos_side(pos)
        h = block.mlp(block.ln_2(x))
        h = h + sa(h, attn_mask=adapter_mask)
        return x + block.ls_2(h)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        visual = self.clip.visual
        x = visual._embeds(images)
        taps = []
        for i, (block, sa) in enumerate(zip(visual.transformer.resblocks, self.adapters["image_sa"])):
            x = self._block(block, sa, x, None, None)
            if i in self.image_taps:
                taps.append(x)
        pooled, _ = visual._pool(x)
        pooled = pooled + self.adapters["image_fusion"](taps)
        return pooled @ visual.proj

    def encode_text(self, tokens: torch.Tensor, pos_tokens: torch.Tensor | None = None) -> torch.Tensor:
        """Encode (N, L) token ids with L <= context length; `pos_tokens` are the POS words' tokens."""
        clip = self.clip
        length = tokens.shape[1]
        cast = clip.transformer.get_cast_dtype()
        positional = clip.positional_embedding[:length].to(cast)
        x = clip.token_embedding(tokens).to(cast) + positional
        pos = None
        if "pos_connector" in self.adapters and pos_tokens is not None:
            pos = self.adapters["pos_connector"](clip.token_embedding(pos_tokens[:, :length]).to(cast) + positional)
            x = x + pos
        attn_mask = clip.attn_mask[:length, :length].to(x.dtype)
        adapter_mask = attn_mask if self.config.text_adapter_causal else None
        pos_sides = self.adapters["pos_side"] if pos is not None and "pos_side" in self.adapters else None
        taps = []
        for i, (block, sa) in enumerate(zip(clip.transformer.resblocks, self.adapters["text_sa"])):
            side = pos_sides[i] if pos_sides is not None else None
            x = self._block(block, sa, x, attn_mask, adapter_mask, side, pos)
            if i in self.text_taps:
                taps.append(x)
        x = clip.ln_final(x)
        x = x + self.adapters["text_fusion"](taps)
        pooled = text_global_pool(x, tokens, clip.text_pool_type, eos_token_id=getattr(clip, "text_eos_id", None))
        return pooled @ clip.text_projection

    def fingerprint(self) -> str:
        """Identity of the exact model: base weights, adapter layout and adapter values.

        Index manifests record it so a server never searches vectors made by another model.
        """
        digest = hashlib.sha256()
        identity = {"base": self.base.to_dict(), "config": self.config.to_dict()}
        digest.update(json.dumps(identity, sort_keys=True).encode())
        for name, tensor in sorted(self.adapters.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
        return digest.hexdigest()


def build_from_config(config: ModelConfig, pretrained: str, seed: int = 0) -> POSAPL:
    clip, base = create_base(config.arch, pretrained, seed)
    return POSAPL(clip, base, config).eval()


def build_model(preset: str, pretrained: str, arch: str = DEFAULT_ARCH, seed: int = 0, **overrides: object) -> POSAPL:
    """A fresh POSAPL: frozen base from `pretrained` (open_clip tag, weights file, or "random") plus zero adapters."""
    return build_from_config(preset_config(preset, arch, **overrides), pretrained, seed)


def trainable_parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
