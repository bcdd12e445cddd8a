"""The dense U-Net objective."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor, dice_weight: float = 1.0, eps: float = 1.0) -> torch.Tensor:
    """BCE on logits (mean over voxels) + dice_weight * (1 - soft Dice), the usual dense U-Net objective.

    The soft Dice pools all voxels of the batch (one score), smoothed by eps so an empty target does not
    divide by zero. logits, target: [B, 1, *S], target in {0, 1}.
    """
    bce = F.binary_cross_entropy_with_logits(logits, target)
    if dice_weight == 0:
        return bce
    probs = torch.sigmoid(logits)
    intersection = (probs * target).sum()
    dice = (2 * intersection + eps) / (probs.sum() + target.sum() + eps)
    return bce + dice_weight * (1 - dice)
