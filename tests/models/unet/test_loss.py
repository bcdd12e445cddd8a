"""segmentation_loss: BCE + soft Dice on logits, against hand-computed values."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from oss_net.models.unet import segmentation_loss


def test_segmentation_loss_known_values():
    target = torch.tensor([1.0, 0.0]).reshape(1, 1, 2, 1, 1)
    logits = torch.tensor([0.0, 0.0]).reshape(1, 1, 2, 1, 1)
    # BCE of p = 0.5 is ln 2; soft Dice = (2*0.5 + 1) / (1 + 1 + 1) = 2/3.
    assert float(segmentation_loss(logits, target)) == pytest.approx(np.log(2) + 1 / 3, rel=1e-6)
    assert float(segmentation_loss(logits, target, dice_weight=0.0)) == pytest.approx(np.log(2), rel=1e-6)
