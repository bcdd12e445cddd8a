"""Surface metrics in millimetres: HD95, the mean surface distance (MSD) and the normalised surface Dice (NSD).

Surface definition (identical to MONAI's `get_mask_edges` without `spacing`, i.e. the default
`use_subvoxels=False` of `SurfaceDiceMetric` and what `HausdorffDistanceMetric` always uses):
the surface of a mask is the set of its foreground voxels that have at least one background
6-neighbour (face neighbour), counting voxels outside the array as background. In code:
`mask & ~binary_erosion(mask, cross, border_value=0)`.

A surface distance is the Euclidean distance in mm between the *centres* of a surface voxel of one
mask and the nearest surface voxel of the other, from `scipy.ndimage.distance_transform_edt` with
`sampling=spacing` (exact, not a chamfer approximation). MONAI gets the same numbers from a KD-tree
over the same voxel centres. Each surface voxel counts once, whatever its area; MONAI's
`use_subvoxels=True` instead weights each boundary element by its marching-cubes area (the Google
DeepMind `surface-distance` definition), which changes NSD by several points (about 5 on random
blobs at spacing (0.8, 1.0, 2.5)). The voxel count is the default: it needs no area table, and it
is the definition HD95 uses too; `surfels.nsd_surfel` gives the area-weighted one.

Both metrics crop to the bounding box of the union of the masks first; this changes no value
(everything outside is background) and keeps native-resolution BraTS volumes fast.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
from scipy import ndimage

from oss_net.metrics.masks import MetricError, as_pair, check_spacing, warn_undefined

NSD_TOLERANCE_MM = 1.0  # the default NSD tolerance τ in mm, everywhere a score is written (docs/metrics.md)


def surface_voxels(mask: np.ndarray) -> np.ndarray:
    """Boolean [*mask.shape]: foreground voxels with a background face neighbour (array border = background)."""
    cross = ndimage.generate_binary_structure(mask.ndim, 1)
    return mask & ~ndimage.binary_erosion(mask, structure=cross, border_value=0)


def _crop_to_union(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both masks cut to the bounding box of their union (which must be non-empty)."""
    union = pred | target
    box = tuple(slice(int(idx.min()), int(idx.max()) + 1) for idx in np.nonzero(union))
    return pred[box], target[box]


def surface_distances(
    pred: Any, target: Any, spacing: Sequence[float] | np.ndarray
) -> tuple[np.ndarray, np.ndarray] | None:
    """Directed surface distances in mm: (pred surface → target surface, target → pred).

    Returns two float64 vectors with one entry per surface voxel of pred (resp. target), or None
    when exactly one mask is empty (the distances are undefined). Both masks empty gives two empty
    vectors.
    """
    pred_mask, target_mask = as_pair(pred, target)
    sampling = check_spacing(spacing, pred_mask.ndim)
    has_pred, has_target = bool(pred_mask.any()), bool(target_mask.any())
    if not has_pred and not has_target:
        return np.zeros(0), np.zeros(0)
    if has_pred != has_target:
        return None
    pred_mask, target_mask = _crop_to_union(pred_mask, target_mask)
    pred_surface, target_surface = surface_voxels(pred_mask), surface_voxels(target_mask)
    # EDT of the complement: every voxel's distance in mm to the nearest surface voxel of that mask.
    to_target = ndimage.distance_transform_edt(~target_surface, sampling=sampling)
    to_pred = ndimage.distance_transform_edt(~pred_surface, sampling=sampling)
    return to_target[pred_surface], to_pred[target_surface]


def hd95_from_distances(distances: tuple[np.ndarray, np.ndarray] | None, context: str = "hd95") -> float:
    """HD95 in mm from `surface_distances` output (see `hd95` for the definition and conventions)."""
    if distances is None:
        warn_undefined(f"{context}: exactly one of prediction and target is empty; HD95 is undefined (NaN)")
        return math.nan
    pred_to_target, target_to_pred = distances
    if pred_to_target.size == 0:
        return 0.0
    return float(max(np.percentile(pred_to_target, 95), np.percentile(target_to_pred, 95)))


def msd_from_distances(distances: tuple[np.ndarray, np.ndarray] | None, context: str = "msd") -> float:
    """Mean surface distance in mm from `surface_distances` output (see `msd` for the definition and conventions)."""
    if distances is None:
        warn_undefined(f"{context}: exactly one of prediction and target is empty; the mean surface distance is "
                       "undefined (NaN)")
        return math.nan
    pred_to_target, target_to_pred = distances
    total = pred_to_target.size + target_to_pred.size
    return float((pred_to_target.sum() + target_to_pred.sum()) / total) if total else 0.0


def nsd_from_distances(distances: tuple[np.ndarray, np.ndarray] | None, tolerance_mm: float) -> float:
    """NSD from `surface_distances` output (see `nsd` for the definition and conventions)."""
    if distances is None:
        return 0.0
    pred_to_target, target_to_pred = distances
    total = pred_to_target.size + target_to_pred.size
    if total == 0:
        return 1.0
    within = np.count_nonzero(pred_to_target <= tolerance_mm) + np.count_nonzero(target_to_pred <= tolerance_mm)
    return float(within / total)


def hd95(pred: Any, target: Any, spacing: Sequence[float] | np.ndarray) -> float:
    """95th-percentile symmetric Hausdorff distance in mm.

    The larger of the two directed 95th percentiles (pred → target and target → pred surface
    distances, linear interpolation between order statistics), which is exactly MONAI's
    `HausdorffDistanceMetric(percentile=95)`. Pooling both directions into one percentile (MedPy's
    `hd95`) can only give a value less than or equal to this one.

    Args:
        pred, target: masks [D, H, W] (numpy or torch; non-bool inputs binarised at > 0.5).
        spacing: mm per voxel along each array axis, e.g. `spacing_from_affine(affine)`.

    Empty masks: both empty → 0.0; exactly one empty → NaN with an `UndefinedMetricWarning`
    (`summarise` leaves NaNs out of the mean and counts them).
    """
    return hd95_from_distances(surface_distances(pred, target, spacing))


def msd(pred: Any, target: Any, spacing: Sequence[float] | np.ndarray) -> float:
    """Mean (average symmetric) surface distance in mm: the mean of every directed surface distance, P→T and T→P
    pooled, so each surface voxel of either mask counts once. Empty masks as `hd95`: both empty → 0.0, exactly
    one empty → NaN with an `UndefinedMetricWarning`."""
    return msd_from_distances(surface_distances(pred, target, spacing))


def nsd(pred: Any, target: Any, spacing: Sequence[float] | np.ndarray, tolerance_mm: float = NSD_TOLERANCE_MM) -> float:
    """Normalised surface Dice at a tolerance in mm (Nikolov et al. 2018), voxel-counted.

    (#pred surface voxels within `tolerance_mm` of the target surface + #target surface voxels
    within `tolerance_mm` of the pred surface) / (#pred + #target surface voxels); distances `<=`
    the tolerance count, as in MONAI's `SurfaceDiceMetric(use_subvoxels=False)`. Unitless, in
    [0, 1]. Both empty → 1.0; exactly one empty → 0.0.
    """
    check_tolerance(tolerance_mm)
    return nsd_from_distances(surface_distances(pred, target, spacing), tolerance_mm)


def check_tolerance(tolerance_mm: float) -> None:
    """Raise a MetricError unless the NSD tolerance is a finite number of mm >= 0."""
    if not (math.isfinite(tolerance_mm) and tolerance_mm >= 0):
        raise MetricError(f"tolerance_mm must be a finite number >= 0, got {tolerance_mm}")
