"""Both training losses against values worked out by hand on 2x2 examples."""

from __future__ import annotations

import math

import pytest
import torch

from training.losses import alignment_loss, posapl_loss, triplet_loss

EYE = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
# Captions chosen so that image-caption cosines are S = [[0.6, 1.0], [0.8, 0.0]].
TEXTS = torch.tensor([[0.6, 0.8], [1.0, 0.0]])


def _lse(*values: float) -> float:
    return math.log(sum(math.exp(v) for v in values))


def test_alignment_loss_with_distinct_images() -> None:
    # logits = 2 * I; every row: -log(e^2 / (e^2 + 1)) = log(1 + e^-2)
    loss = alignment_loss(EYE, EYE, torch.tensor([0, 1]), logit_scale=2.0)
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-2)), abs=1e-6)


def test_alignment_loss_uses_the_stored_scale_unless_asked_for_its_exponential() -> None:
    stored = alignment_loss(EYE, EYE, torch.tensor([0, 1]), logit_scale=torch.tensor(2.0))
    exponential = alignment_loss(EYE, EYE, torch.tensor([0, 1]), logit_scale=torch.tensor(2.0), exp_logit_scale=True)
    assert stored.item() == pytest.approx(0.126928, abs=1e-6)
    assert exponential.item() == pytest.approx(math.log(1 + math.exp(-math.exp(2))), abs=1e-7)


def test_alignment_loss_asymmetric_scores() -> None:
    # logits = S; image->text rows: lse(0.6, 1) - 0.6 and lse(0.8, 0) - 0;
    # text->image rows (columns of S): lse(0.6, 0.8) - 0.6 and lse(1, 0) - 0.
    image_to_text = (_lse(0.6, 1.0) - 0.6 + _lse(0.8, 0.0) - 0.0) / 2
    text_to_image = (_lse(0.6, 0.8) - 0.6 + _lse(1.0, 0.0) - 0.0) / 2
    loss = alignment_loss(EYE, TEXTS, torch.tensor([0, 1]), logit_scale=1.0)
    assert loss.item() == pytest.approx((image_to_text + text_to_image) / 2, abs=1e-6)


def test_alignment_loss_soft_targets_for_captions_of_one_image() -> None:
    # Same image id: each row's target is (0.5, 0.5), so the loss is -0.5 (log p_same + log p_other)
    # with p = e^2 / (e^2 + 1) and 1 / (e^2 + 1): log(e^2 + 1) - 1.
    loss = alignment_loss(EYE, EYE, torch.tensor([7, 7]), logit_scale=2.0)
    assert loss.item() == pytest.approx(math.log(math.exp(2) + 1) - 1, abs=1e-6)


def test_triplet_loss_sums_squared_hinges_and_averages_directions() -> None:
    # image->text: row 0 (0.1 + 1.0 - 0.6)^2 = 0.25, row 1 (0.1 + 0.8 - 0.0)^2 = 0.81 -> 1.06
    # text->image: caption 0 (0.1 + 0.8 - 0.6)^2 = 0.09, caption 1 (0.1 + 1.0 - 0.0)^2 = 1.21 -> 1.30
    loss = triplet_loss(EYE, TEXTS, margin=0.1, gamma=2.0)
    assert loss.item() == pytest.approx((1.06 + 1.30) / 2, abs=1e-6)


def test_triplet_loss_gamma_one_and_satisfied_margin() -> None:
    assert triplet_loss(EYE, TEXTS, margin=0.1, gamma=1.0).item() == pytest.approx((1.4 + 1.4) / 2, abs=1e-6)
    # Matching pairs at cosine 1, the other at 0: every hinge is max(0, 0.1 + 0 - 1) = 0.
    assert triplet_loss(EYE, EYE).item() == 0.0


def test_triplet_loss_is_a_sum_over_negatives_not_a_mean() -> None:
    # Four identical features: every off-diagonal hinge is 0.1, squared 0.01, 12 pairs per direction.
    same = torch.ones(4, 2) / math.sqrt(2)
    assert triplet_loss(same, same).item() == pytest.approx(12 * 0.01, abs=1e-6)


def test_posapl_loss_normalises_and_sums_both_parts() -> None:
    parts = posapl_loss(3 * EYE, torch.tensor([[6.0, 8.0], [2.0, 0.0]]), torch.tensor([0, 1]), logit_scale=1.0)
    assert parts.alignment.item() == pytest.approx(alignment_loss(EYE, TEXTS, torch.tensor([0, 1]), 1.0).item())
    assert parts.triplet.item() == pytest.approx(1.18, abs=1e-6)
    assert parts.total.item() == pytest.approx(parts.alignment.item() + parts.triplet.item())


def test_losses_reject_mismatched_features() -> None:
    with pytest.raises(ValueError, match="batch, dim"):
        triplet_loss(EYE, torch.ones(3, 2))
    with pytest.raises(ValueError, match="batch, dim"):
        alignment_loss(EYE, torch.ones(2, 3), torch.tensor([0, 1]), 1.0)
