"""Per-case evaluation, BraTS tumour regions and the summary over cases.

`evaluate_case` is what inference and `oss-net-evaluate` write per case: Dice, IoU, HD95 (mm) and
NSD at native resolution, with the surface distances computed once for both surface metrics.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Mapping, Sequence

import numpy as np

from oss_net.labels import BRATS_REGIONS
from oss_net.metrics.masks import MetricError, as_mask, as_pair, check_spacing
from oss_net.metrics.overlap import dice, iou
from oss_net.metrics.surface import (NSD_TOLERANCE_MM, check_tolerance, hd95_from_distances, nsd_from_distances,
                                     surface_distances)
from oss_net.metrics.surfels import nsd_surfel

METRIC_KEYS = ("dice", "iou", "hd95_mm", "nsd")
VOLUME_KEYS = ("pred_volume_ml", "target_volume_ml", "volume_difference_ml")
# "voxel": surface voxels counted (MONAI's use_subvoxels=False); "surfel": area-weighted cell surfels
# (Google DeepMind's surface-distance package, MONAI's use_subvoxels=True).
NSD_DEFINITIONS = ("voxel", "surfel")


def evaluate_case(
    pred: Any, target: Any, spacing: Sequence[float] | np.ndarray, tolerance_mm: float = NSD_TOLERANCE_MM,
    nsd_definition: str = "voxel",
) -> dict[str, float]:
    """Dice, IoU, HD95 (mm) and NSD (at `tolerance_mm`) of one case as plain floats.

    Args:
        pred, target: masks [D, H, W] on the same grid (numpy or torch; non-bool > 0.5).
        spacing: mm per voxel along each array axis, e.g. `spacing_from_affine(affine)`.
        nsd_definition: "voxel" (surface voxels counted, `nsd`) or "surfel" (area-weighted,
            `nsd_surfel`); HD95 always uses the surface voxels.

    Returns `{"dice", "iou", "hd95_mm", "nsd"}`; the empty-mask conventions of `dice`, `hd95` and
    `nsd` apply (`hd95_mm` is NaN, with a warning, when exactly one mask is empty).
    """
    check_tolerance(tolerance_mm)
    if nsd_definition not in NSD_DEFINITIONS:
        raise MetricError(f"nsd_definition must be one of {', '.join(NSD_DEFINITIONS)}, got {nsd_definition!r}")
    pred_mask, target_mask = as_pair(pred, target)
    distances = surface_distances(pred_mask, target_mask, spacing)
    return {
        "dice": dice(pred_mask, target_mask),
        "iou": iou(pred_mask, target_mask),
        "hd95_mm": hd95_from_distances(distances, context="evaluate_case"),
        "nsd": (nsd_from_distances(distances, tolerance_mm) if nsd_definition == "voxel"
                else nsd_surfel(pred_mask, target_mask, spacing, tolerance_mm)),
    }


def volumes_ml(pred: Any, target: Any, spacing: Sequence[float] | np.ndarray) -> dict[str, float]:
    """Volumes of both masks in millilitres (1 ml = 1000 mm³) and their difference, pred − target."""
    pred_mask, target_mask = as_pair(pred, target)
    voxel_ml = float(np.prod(check_spacing(spacing, pred_mask.ndim))) / 1000.0
    pred_ml = np.count_nonzero(pred_mask) * voxel_ml
    target_ml = np.count_nonzero(target_mask) * voxel_ml
    return {"pred_volume_ml": pred_ml, "target_volume_ml": target_ml, "volume_difference_ml": pred_ml - target_ml}


def brats_regions(label: Any) -> dict[str, np.ndarray]:
    """The BraTS evaluation regions of a label map [D, H, W] as boolean masks.

    WT (whole tumour) = label > 0, TC (tumour core) = label ∈ {1, 4}, ET (enhancing) = label == 4,
    with the BraTS 2020 labels (1 NCR/NET, 2 ED, 4 ET).
    """
    if hasattr(label, "detach"):
        label = label.detach().cpu().numpy()
    values = np.asarray(label)
    region_values = dict(BRATS_REGIONS)  # {"WT": (1, 2, 4), "TC": (1, 4), "ET": (4,)}
    return {
        "WT": values > 0,
        "TC": np.isin(values, region_values["TC"]),
        "ET": values == region_values["ET"][0],
    }


def _is_label_map(array: Any) -> bool:
    """True for an integer array holding a value other than 0 and 1 (a BraTS label map)."""
    if hasattr(array, "detach"):
        array = array.detach().cpu().numpy()
    values = np.asarray(array)
    return bool(np.issubdtype(values.dtype, np.integer) and np.any((values != 0) & (values != 1)))


def evaluate_brats(
    pred_label_or_mask: Any, target_label: Any, spacing: Sequence[float] | np.ndarray,
    tolerance_mm: float = NSD_TOLERANCE_MM,
) -> dict[str, dict[str, float]]:
    """`evaluate_case` per BraTS region: WT always, TC and ET when the prediction carries those labels.

    The prediction is taken as a BraTS label map when it is an integer array holding a value other
    than 0 and 1; a binary prediction (bool, float, or 0/1 integers, as OSS-Net's single-class
    output) is the whole tumour and is scored on WT only. The target is always a label map.

    Returns e.g. `{"WT": {"dice": ..., "iou": ..., "hd95_mm": ..., "nsd": ...}, "TC": {...}, "ET": {...}}`.
    """
    targets = brats_regions(target_label)
    if _is_label_map(pred_label_or_mask):
        preds = brats_regions(pred_label_or_mask)
    else:
        preds = {"WT": as_mask(pred_label_or_mask)}
    return {region: evaluate_case(mask, targets[region], spacing, tolerance_mm) for region, mask in preds.items()}


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def summarise(per_case: Sequence[Mapping[str, Any]]) -> dict[str, float | int]:
    """Means over cases of every numeric field, NaNs excluded, plus `cases` and `hd95_undefined`.

    Args:
        per_case: one flat mapping per case, e.g. `{"case": "x", **evaluate_case(...), "seconds": 1.2}`;
            a field is averaged when it is a real number (not bool) in every case that has it.

    Returns `{"dice": mean, ..., "cases": n, "hd95_undefined": number of cases whose hd95_mm is NaN}`.
    A field that is NaN in every case has mean NaN.
    """
    fields: dict[str, list[float]] = {}
    skipped: set[str] = set()
    for case in per_case:
        for key, value in case.items():
            if _is_number(value):
                fields.setdefault(key, []).append(float(value))
            else:
                skipped.add(key)
    summary: dict[str, float | int] = {}
    for key, values in fields.items():
        if key in skipped:
            continue
        finite = [v for v in values if not math.isnan(v)]
        summary[key] = sum(finite) / len(finite) if finite else math.nan
    summary["cases"] = len(per_case)
    summary["hd95_undefined"] = sum(
        1 for case in per_case if _is_number(case.get("hd95_mm")) and math.isnan(float(case["hd95_mm"]))
    )
    return summary
