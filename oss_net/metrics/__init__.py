"""Segmentation metrics at native resolution: Dice, IoU, HD95 (mm), NSD, BraTS regions, summaries.

Pure functions on boolean masks (numpy or torch) plus the spacing in mm per array axis, which
`spacing_from_affine` reads off a NIfTI affine. Empty-mask convention, everywhere:

| case                | dice | iou | hd95_mm              | nsd |
|---------------------|------|-----|----------------------|-----|
| both empty          | 1    | 1   | 0                    | 1   |
| exactly one empty   | 0    | 0   | NaN (+ a warning)    | 0   |

`summarise` leaves NaNs out of the means and reports how many there were (`hd95_undefined`).
"""
from __future__ import annotations

from oss_net.metrics.evaluate import METRIC_KEYS, brats_regions, evaluate_brats, evaluate_case, summarise
from oss_net.metrics.masks import MetricError, UndefinedMetricWarning, as_mask, spacing_from_affine
from oss_net.metrics.overlap import dice, iou
from oss_net.metrics.surface import hd95, nsd, surface_distances, surface_voxels

__all__ = [
    "METRIC_KEYS",
    "MetricError",
    "UndefinedMetricWarning",
    "as_mask",
    "brats_regions",
    "dice",
    "evaluate_brats",
    "evaluate_case",
    "hd95",
    "iou",
    "nsd",
    "spacing_from_affine",
    "summarise",
    "surface_distances",
    "surface_voxels",
]
