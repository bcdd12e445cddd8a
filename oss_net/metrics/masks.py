"""Input handling shared by the metrics: masks from numpy/torch, checks of masks and spacings.

Every metric works on a pair of boolean masks on the same grid plus the voxel spacing in millimetres
per array axis (the NIfTI (i, j, k) order; `oss_net.geometry.spacing_from_affine` reads it off an
affine). Conversion lives here so each metric is a few lines.
"""
from __future__ import annotations

import math
import warnings
from typing import Any, Sequence

import numpy as np

from oss_net.io import OSSNetError


class MetricError(OSSNetError):
    """Inputs a metric cannot be computed on: masks of different shapes, a bad spacing."""


class UndefinedMetricWarning(RuntimeWarning):
    """A metric has no defined value for this case (e.g. HD95 with exactly one empty mask)."""


def as_mask(array: Any) -> np.ndarray:
    """A boolean numpy mask from a numpy array or a torch tensor (on any device).

    Boolean inputs are used as they are; any other dtype is binarised at `> 0.5`, which is the
    paper's threshold for probabilities and also maps 0/1 masks and label maps (foreground > 0)
    to their foreground.
    """
    if hasattr(array, "detach"):  # a torch tensor, possibly on a GPU
        array = array.detach().cpu().numpy()
    array = np.asarray(array)
    if array.dtype == np.bool_:
        return array
    return array > 0.5


def as_pair(pred: Any, target: Any) -> tuple[np.ndarray, np.ndarray]:
    """Both masks as boolean arrays of the same shape, or a MetricError saying which shapes differ."""
    pred_mask, target_mask = as_mask(pred), as_mask(target)
    if pred_mask.shape != target_mask.shape:
        raise MetricError(
            f"prediction and target must be on the same grid, got shapes {pred_mask.shape} and {target_mask.shape}"
        )
    return pred_mask, target_mask


def check_spacing(spacing: Sequence[float] | np.ndarray, ndim: int) -> np.ndarray:
    """The spacing as a float64 vector of length `ndim` with positive finite entries (mm per voxel)."""
    values = np.asarray(spacing, dtype=np.float64).reshape(-1)
    if values.size != ndim:
        raise MetricError(f"spacing must have one value per axis ({ndim}), got {list(values)}")
    if not all(math.isfinite(v) and v > 0 for v in values):
        raise MetricError(f"spacing must be positive and finite (mm per voxel), got {list(values)}")
    return values


def warn_undefined(message: str) -> None:
    """Emit an UndefinedMetricWarning pointing at the caller of the public metric."""
    warnings.warn(message, UndefinedMetricWarning, stacklevel=3)
