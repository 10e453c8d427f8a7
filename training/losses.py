"""POSAPL's training objective: a modality-alignment loss plus a power-scaled triplet loss, summed.

Both take L2-normalised image and text features of one batch where row i of each belongs to the same
(image, caption) pair.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class LossParts:
    total: torch.Tensor
    alignment: torch.Tensor
    triplet: torch.Tensor


def _check_pair(image_feat: torch.Tensor, text_feat: torch.Tensor) -> None:
    if image_feat.ndim != 2 or image_feat.shape != text_feat.shape:
        raise ValueError(f"image and text features must both be (batch, dim), got {tuple(image_feat.shape)} "
                         f"and {tuple(text_feat.shape)}")


def alignment_loss(
    image_feat: torch.Tensor,
    text_feat: torch.Tensor,
    image_ids: torch.Tensor,
    logit_scale: torch.Tensor | float,
    exp_logit_scale: bool = False,
) -> torch.Tensor:
    """Symmetric cross-entropy over the in-batch cosine logits with soft targets.

    Captions of the same image in one batch are all positives: each row's target spreads evenly over them.
    The reference scales the logits by the stored `logit_scale` parameter itself (about 4.6 for laion2b),
    not by its exponential as CLIP training does; that is the default, `exp_logit_scale=True` is CLIP's.
    """
    _check_pair(image_feat, text_feat)
    scale = torch.as_tensor(logit_scale, dtype=image_feat.dtype, device=image_feat.device)
    scale = scale.exp() if exp_logit_scale else scale
    logits = scale * image_feat @ text_feat.T
    ids = image_ids.view(-1, 1)
    targets = torch.eq(ids, ids.T).to(logits.dtype)
    targets = targets / targets.sum(dim=1, keepdim=True)
    image_to_text = -(F.log_softmax(logits, dim=1) * targets).sum(dim=1).mean()
    text_to_image = -(F.log_softmax(logits.T, dim=1) * targets).sum(dim=1).mean()
    return (image_to_text + text_to_image) / 2


def triplet_loss(
    image_feat: torch.Tensor, text_feat: torch.Tensor, margin: float = 0.1, gamma: float = 2.0
) -> torch.Tensor:
    """Hinge `max(0, margin + s_neg - s_pos) ** gamma` summed over every off-diagonal pair, per direction.

    Summing (not averaging) over all negatives, with the power damping small violations, is the
    reference's choice; the image→text and text→image sums are averaged.
    """
    _check_pair(image_feat, text_feat)
    scores = image_feat @ text_feat.T
    positive = scores.diagonal()
    off_diagonal = ~torch.eye(scores.shape[0], dtype=torch.bool, device=scores.device)
    image_to_text = (margin + scores - positive.view(-1, 1)).clamp(min=0)
    text_to_image = (margin + scores - positive.view(1, -1)).clamp(min=0)
    image_to_text = (image_to_text.pow(gamma) * off_diagonal).sum()
    text_to_image = (text_to_image.pow(gamma) * off_diagonal).sum()
    return (image_to_text + text_to_image) / 2


def posapl_loss(
    image_feat: torch.Tensor,
    text_feat: torch.Tensor,
    image_ids: torch.Tensor,
    logit_scale: torch.Tensor | float,
    margin: float = 0.1,
    gamma: float = 2.0,
    exp_logit_scale: bool = False,
) -> LossParts:
    """Normalise raw encoder outputs and return both losses and their sum."""
    image_feat = F.normalize(image_feat.float(), dim=-1)
    text_feat = F.normalize(text_feat.float(), dim=-1)
    alignment = alignment_loss(image_feat, text_feat, image_ids, logit_scale, exp_logit_scale)
    triplet = triplet_loss(image_feat, text_feat, margin, gamma)
    return LossParts(total=alignment + triplet, alignment=alignment, triplet=triplet)
