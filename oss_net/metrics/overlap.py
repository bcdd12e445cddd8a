"""Volume-overlap metrics: Dice and IoU (Jaccard) on the dense grid.

Unlike the original, which averaged `2I/(|A|+|B|+1e-10)` over sampled points, these are exact
counts over every voxel; the empty cases follow the convention below instead of an epsilon.

Empty-mask convention: both masks empty → 1.0 (perfect agreement on "nothing here");
exactly one empty → 0.0.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from oss_net.metrics.masks import as_pair


def _counts(pred: Any, target: Any) -> tuple[int, int, int]:
    """(|pred ∩ target|, |pred|, |target|) in voxels."""
    pred_mask, target_mask = as_pair(pred, target)
    intersection = int(np.count_nonzero(pred_mask & target_mask))
    return intersection, int(np.count_nonzero(pred_mask)), int(np.count_nonzero(target_mask))


def dice(pred: Any, target: Any) -> float:
    """Dice coefficient 2|P∩T| / (|P|+|T|) of two masks ([D, H, W] numpy or torch; non-bool > 0.5).

    Unitless, in [0, 1]. Both empty → 1.0; exactly one empty → 0.0.
    """
    intersection, n_pred, n_target = _counts(pred, target)
    if n_pred + n_target == 0:
        return 1.0
    return 2.0 * intersection / (n_pred + n_target)


def iou(pred: Any, target: Any) -> float:
    """Intersection over union |P∩T| / |P∪T| of two masks (same inputs as `dice`).

    Unitless, in [0, 1]. Both empty → 1.0; exactly one empty → 0.0.
    """
    intersection, n_pred, n_target = _counts(pred, target)
    union = n_pred + n_target - intersection
    if union == 0:
        return 1.0
    return intersection / union
