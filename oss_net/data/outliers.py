"""How far an input case is from what the model was trained on: spacing, modality, intensity range.

A model applied to a scan unlike its training data predicts something anyway, so inference compares every
case with the training reference and says when it is far outside: a warning in the log and the words in
the case's record (`input_outliers`). The reference is the checkpoint's dataset fingerprint
(`oss_net.datasets.Fingerprint`: median spacing, modality and, for CT, the foreground intensity range); a
BraTS model was trained on MRI, a LiTS model on CT (their checkpoints store no spacing to compare with:
the synthetic demo sets are 4 mm, real BraTS 1 mm).

The rules, each a clear case rather than a statistic:
- spacing: an axis more than `SPACING_FACTOR` times finer or coarser than training's (canonical axes);
- a CT channel: no voxel darker than `CT_DARKEST_HU` (a CT in Hounsfield units holds air at −1000), or an
  intensity range entirely outside the training foreground's;
- an MRI channel: voxels as dark as `MRI_DARKEST` (that is CT air, not an MR signal).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from oss_net.data.dataset_info import BRATS_INFO, CT, LITS_INFO
from oss_net.data.grid import GridMeta

INPUT_PERCENTILES = (0.5, 99.5)  # the robust intensity range of an input channel, in percent
INPUT_STRIDE = 2  # every 2nd voxel along each axis (1/8 of them) is enough for the range, and 8× cheaper
SPACING_FACTOR = 3.0
CT_DARKEST_HU = -200.0  # a CT channel whose 0.5th percentile is above this holds no air: not HU, or not a CT
MRI_DARKEST = -500.0  # an MRI channel whose 0.5th percentile is below this looks like CT Hounsfield units


def intensity_ranges(channels: Sequence[np.ndarray]) -> tuple[tuple[float, float], ...]:
    """Per channel `[D, H, W]`, the (0.5th, 99.5th) percentile of every INPUT_STRIDE-th voxel along each axis."""
    ranges = []
    for values in channels:
        sample = np.asarray(values)[::INPUT_STRIDE, ::INPUT_STRIDE, ::INPUT_STRIDE]
        low, high = np.percentile(sample, INPUT_PERCENTILES) if sample.size else (0.0, 0.0)
        ranges.append((float(low), float(high)))
    return tuple(ranges)


def training_reference(config: Any) -> tuple[tuple[str, ...], tuple[str, ...], tuple[float, ...] | None, tuple]:
    """(channel names, modalities, spacing or None, CT intensity statistics per channel) a model was trained on."""
    fingerprint = getattr(config, "fingerprint", None)
    if fingerprint is not None:
        return (tuple(fingerprint.channel_names), tuple(fingerprint.modalities), tuple(fingerprint.spacing),
                tuple(fingerprint.intensities))
    info = {"brats": BRATS_INFO, "lits": LITS_INFO}.get(str(getattr(config, "dataset", "")))
    if info is None or info.num_channels != int(config.in_channels):
        return (), (), None, ()
    return tuple(info.channel_names), tuple(info.modalities), None, (None,) * info.num_channels


def input_outliers(ranges: Sequence[tuple[float, float]] | None, meta: GridMeta, config: Any) -> list[str]:
    """Why a case (its `intensity_ranges` and grid) is far from the training data of `config`, one line each;
    [] when it is not, or when there is nothing to compare with."""
    names, modalities, spacing, intensities = training_reference(config)
    problems = []
    if spacing is not None:
        ratios = np.asarray(meta.oriented_spacing, dtype=np.float64) / np.asarray(spacing, dtype=np.float64)
        if np.any(ratios > SPACING_FACTOR) or np.any(ratios < 1 / SPACING_FACTOR):
            problems.append(f"spacing {_mm(meta.oriented_spacing)} mm is far from the training spacing "
                            f"{_mm(spacing)} mm (more than {SPACING_FACTOR:g}× on an axis); resample it closer")
    for name, modality, stats, (low, high) in zip(names, modalities, intensities, ranges or ()):
        where = f"channel {name} ({modality})"
        if modality == CT and low > CT_DARKEST_HU:
            problems.append(f"{where}: no voxel darker than {low:.4g} (CT air is −1000 HU): not a CT in Hounsfield "
                            f"units, or another modality")
        elif modality == CT and stats is not None and (high < stats.lower or low > stats.upper):
            problems.append(f"{where}: intensities {low:.4g} to {high:.4g} lie outside the training range "
                            f"{stats.lower:.4g} to {stats.upper:.4g}")
        elif modality != CT and low < MRI_DARKEST:
            problems.append(f"{where}: intensities down to {low:.4g} look like CT Hounsfield units, not an MR signal")
    return problems


def _mm(spacing: Sequence[float]) -> str:
    return "×".join(f"{float(s):.3g}" for s in spacing)
