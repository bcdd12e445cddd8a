"""Segmentation metrics at native resolution: Dice, IoU, HD95 and MSD (mm), NSD, BraTS regions, summaries.

Pure functions on boolean masks (numpy or torch) plus the spacing in mm per array axis, which
`spacing_from_affine` reads off a NIfTI affine. Empty-mask convention, everywhere:

| case                | dice | iou | hd95_mm              | nsd |
|---------------------|------|-----|----------------------|-----|
| both empty          | 1    | 1   | 0                    | 1   |
| exactly one empty   | 0    | 0   | NaN (+ a warning)    | 0   |

`summarise` leaves NaNs out of the means and reports how many there were (`hd95_undefined`).
NSD comes in two definitions (`NSD_DEFINITIONS`): surface voxels counted (`nsd`, the default) or
area-weighted surfels as Google DeepMind's `surface-distance` package (`nsd_surfel`).
"""
from __future__ import annotations

from oss_net.geometry import spacing_from_affine  # re-exported: metrics take spacings, read off affines
from oss_net.metrics.masks import MetricError, UndefinedMetricWarning, as_mask
from oss_net.metrics.overlap import dice, iou
from oss_net.metrics.scores import (
    METRIC_KEYS,
    NSD_DEFINITIONS,
    VOLUME_KEYS,
    brats_regions,
    evaluate_brats,
    evaluate_case,
    summarise,
    volumes_ml,
)
from oss_net.metrics.surface import NSD_TOLERANCE_MM, hd95, msd, nsd, surface_distances, surface_voxels
from oss_net.metrics.surfels import nsd_surfel, surfel_area_table, surfel_distances

__all__ = [
    "METRIC_KEYS",
    "NSD_DEFINITIONS",
    "NSD_TOLERANCE_MM",
    "VOLUME_KEYS",
    "MetricError",
    "UndefinedMetricWarning",
    "as_mask",
    "brats_regions",
    "dice",
    "evaluate_brats",
    "evaluate_case",
    "hd95",
    "iou",
    "msd",
    "nsd",
    "nsd_surfel",
    "spacing_from_affine",
    "summarise",
    "surface_distances",
    "surface_voxels",
    "surfel_area_table",
    "surfel_distances",
    "volumes_ml",
]
