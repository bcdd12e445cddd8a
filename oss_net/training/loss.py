"""The training loss of reference §5: occupancy BCE + factor × low-resolution segmentation BCE."""
from __future__ import annotations

import torch

PROBABILITY_CLAMP = 1e-6  # the original clamps probabilities to [1e-6, 1 − 1e-6] before the log
SEGMENTATION_LOSS_FACTOR = 0.1  # weight of the auxiliary segmentation BCE (docs/reference.md §5)


def clamped_bce(probabilities: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy of probabilities (not logits), computed in float32.

    Written out rather than F.binary_cross_entropy, which refuses to run under fp16 autocast; the
    clamp keeps the log finite exactly as the original did.
    """
    p = probabilities.float().clamp(PROBABILITY_CLAMP, 1.0 - PROBABILITY_CLAMP)
    y = targets.float()
    return -(y * torch.log(p) + (1.0 - y) * torch.log1p(-p)).mean()


def training_loss(
    occupancy: torch.Tensor,  # [B, N, 1] probabilities
    labels: torch.Tensor,  # [B, N, 1] in {0, 1}
    segmentation: torch.Tensor | None,  # [B, 1, *encoder_output_shape] probabilities, or None
    segmentation_target: torch.Tensor | None,  # [B, 1, *encoder_output_shape] in {0, 1}
    segmentation_loss_factor: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(total, occupancy BCE, auxiliary BCE or None). The aux term exists iff the model has the head."""
    occupancy_loss = clamped_bce(occupancy, labels)
    if segmentation is None:
        return occupancy_loss, occupancy_loss, None
    if segmentation_target is None:
        raise ValueError("the model returned a segmentation but no segmentation target was given")
    auxiliary_loss = clamped_bce(segmentation, segmentation_target)
    return occupancy_loss + segmentation_loss_factor * auxiliary_loss, occupancy_loss, auxiliary_loss
