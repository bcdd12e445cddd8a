"""The training loss: clamped BCE on probabilities and the weighted auxiliary term, against hand values."""
from __future__ import annotations

import math

import pytest
import torch

from oss_net.training.loss import PROBABILITY_CLAMP, SEGMENTATION_LOSS_FACTOR, clamped_bce, training_loss


def test_clamped_bce_known_values():
    assert clamped_bce(torch.tensor([0.5]), torch.tensor([1.0])).item() == pytest.approx(math.log(2))
    # mean over elements: (−ln 0.5 − ln(1 − 0.25)) / 2
    two = clamped_bce(torch.tensor([0.5, 0.25]), torch.tensor([1.0, 0.0]))
    assert two.item() == pytest.approx((math.log(2) - math.log(0.75)) / 2)
    assert clamped_bce(torch.ones(3), torch.ones(3)).item() == pytest.approx(-math.log1p(-PROBABILITY_CLAMP), abs=1e-6)


def test_clamp_keeps_certain_mistakes_finite():
    """p = 0 for a positive costs −ln(1e-6) ≈ 13.8, not infinity (p = 1 for a negative nearly the same:
    float32 cannot hold 1 − 1e-6 exactly)."""
    wrong_zero = clamped_bce(torch.tensor([0.0]), torch.tensor([1.0])).item()
    wrong_one = clamped_bce(torch.tensor([1.0]), torch.tensor([0.0])).item()
    assert wrong_zero == pytest.approx(-math.log(PROBABILITY_CLAMP), rel=1e-6)
    assert wrong_one == pytest.approx(-math.log(PROBABILITY_CLAMP), rel=2e-3)


def test_half_precision_inputs_give_a_float32_loss():
    loss = clamped_bce(torch.tensor([0.5, 0.25], dtype=torch.float16), torch.tensor([1, 0], dtype=torch.uint8))
    assert loss.dtype == torch.float32 and loss.item() == pytest.approx((math.log(2) - math.log(0.75)) / 2)


def test_training_loss_adds_the_weighted_auxiliary_term():
    occupancy = torch.full((1, 2, 1), 0.5)  # [B, N, 1]
    labels = torch.tensor([[[1.0], [0.0]]])
    segmentation = torch.full((1, 1, 2, 2, 2), 0.5)  # [B, 1, *out]
    target = torch.ones(1, 1, 2, 2, 2)
    total, point_loss, auxiliary = training_loss(occupancy, labels, segmentation, target, 0.1)
    assert point_loss.item() == pytest.approx(math.log(2)) and auxiliary.item() == pytest.approx(math.log(2))
    assert total.item() == pytest.approx(1.1 * math.log(2))
    assert SEGMENTATION_LOSS_FACTOR == 0.1  # the paper's weight


def test_without_the_head_the_total_is_the_occupancy_loss():
    occupancy, labels = torch.full((1, 2, 1), 0.5), torch.tensor([[[1.0], [0.0]]])
    total, point_loss, auxiliary = training_loss(occupancy, labels, None, None, 0.1)
    assert auxiliary is None and total is point_loss


def test_a_segmentation_without_its_target_is_an_error():
    with pytest.raises(ValueError, match="no segmentation target was given"):
        training_loss(torch.full((1, 2, 1), 0.5), torch.ones(1, 2, 1), torch.full((1, 1, 2, 2, 2), 0.5), None, 0.1)
