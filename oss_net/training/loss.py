"""The training loss of docs/reference.md §5: occupancy BCE + factor × low-resolution segmentation BCE."""
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


def clamped_cross_entropy(probabilities: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of softmax probabilities [..., C] (not logits) against one-hot targets [..., C], in float32.

    The same clamp as `clamped_bce`, so a certain mistake costs −ln(1e-6) rather than infinity.
    """
    p = probabilities.float().clamp(PROBABILITY_CLAMP, 1.0 - PROBABILITY_CLAMP)
    return -(targets.float() * torch.log(p)).sum(dim=-1).mean()


def training_loss(
    occupancy: torch.Tensor,  # [B, N, K] probabilities (K = 1 binary; K regions; background + K classes exclusive)
    labels: torch.Tensor,  # [B, N, K] in {0, 1} (multi-hot, or one-hot in exclusive mode)
    segmentation: torch.Tensor | None,  # [B, K_seg, *encoder_output_shape] probabilities, or None
    segmentation_target: torch.Tensor | None,  # [B, K_seg, *encoder_output_shape] in {0, 1}
    segmentation_loss_factor: float,
    exclusive: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(total, occupancy loss, auxiliary BCE or None). The aux term exists iff the model has the head.

    The occupancy loss is a BCE per output (binary, regions) or, with `exclusive`, the cross-entropy
    of the softmax over background + classes. Shapes must match exactly: a [B, N, K] prediction
    against [B, N, 1] labels would otherwise broadcast into a wrong loss.
    """
    check_same_shape(occupancy, labels, "occupancy", "point labels")
    occupancy_loss = clamped_cross_entropy(occupancy, labels) if exclusive else clamped_bce(occupancy, labels)
    if segmentation is None:
        return occupancy_loss, occupancy_loss, None
    if segmentation_target is None:
        raise ValueError("the model returned a segmentation but no segmentation target was given")
    check_same_shape(segmentation, segmentation_target, "segmentation", "segmentation target")
    auxiliary_loss = clamped_bce(segmentation, segmentation_target)
    return occupancy_loss + segmentation_loss_factor * auxiliary_loss, occupancy_loss, auxiliary_loss


def check_same_shape(prediction: torch.Tensor, target: torch.Tensor, what: str, target_what: str) -> None:
    """ValueError naming both shapes when a prediction and its target differ in shape."""
    if prediction.shape != target.shape:
        raise ValueError(f"the {what} has shape {list(prediction.shape)} but the {target_what} have shape "
                         f"{list(target.shape)}: the label mode's targets must match the model's outputs")
