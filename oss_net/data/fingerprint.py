"""A dataset fingerprint: what the training cases look like, which decides preprocessing for datasets
other than BraTS and LiTS (those keep the paper's preprocessing, `oss_net.data.cases`).

As nnU-Net does, the fingerprint holds the median voxel spacing and shape (after reorientation to the
closest canonical frame, `oss_net.data.grid.closest_canonical`), each channel's modality and, for CT
channels, statistics of the intensities inside the labelled foreground of the training cases. Geometry
comes from the file headers alone; voxel values are read only for CT channels, and at most
`samples_per_case` foreground voxels of each case are kept, so a large dataset stays cheap.

It is stored in the model configuration (`OSSNetConfig.fingerprint`), hence in every checkpoint, so
inference preprocesses exactly as training did.

Intensity schemes (`normalize_intensities`):
- CT: clip to the training foreground's 0.5 and 99.5 percentiles, then z-score with its mean and std
  (nnU-Net's CT scheme, one set of numbers for the whole dataset).
- MRI (every other channel name): z-score per case over the non-zero voxels; zero voxels stay 0.
"""
from __future__ import annotations

from collections import Counter
from typing import Sequence

import numpy as np

from oss_net.data.case_files import CaseFiles
from oss_net.data.channels import file_grid, read_channels
from oss_net.data.dataset_info import CT, DatasetInfo
from oss_net.data.grid import closest_canonical
from oss_net.data.nifti import read_image
from oss_net.datasets import ChannelIntensity, DatasetError, Fingerprint
from oss_net.geometry import spacing_from_affine

PERCENTILES = (0.5, 99.5)  # CT clipping range, percent of the training foreground intensities
SAMPLES_PER_CASE = 10_000  # foreground voxels kept per case for the CT statistics (as nnU-Net)
NORMALIZE_EPSILON = 1e-8  # added to a std before dividing, so a constant channel gives zeros


def compute_fingerprint(cases: Sequence[CaseFiles], info: DatasetInfo, samples_per_case: int = SAMPLES_PER_CASE,
                        seed: int = 0) -> Fingerprint:
    """The fingerprint of the labelled training `cases` of a dataset described by `info`.

    Deterministic for a given seed (the foreground samples are drawn per case from seed and case index).
    """
    if not cases:
        raise DatasetError(f"{info.name}: no training cases to compute a fingerprint from")
    modalities = info.modalities
    if any(len(case.images) != len(modalities) for case in cases):
        bad = next(case for case in cases if len(case.images) != len(modalities))
        raise DatasetError(f"{bad.images[0]}: case {bad.case_id} has {len(bad.images)} channel(s), "
                           f"the dataset {len(modalities)} ({', '.join(info.channel_names)})")
    spacings, shapes = [], []
    samples: list[list[np.ndarray]] = [[] for _ in modalities]
    for index, case in enumerate(cases):
        shape, affine, _ = file_grid(case.images[0], Counter(case.images)[case.images[0]])
        orientation = closest_canonical(affine)
        canonical_shape, canonical_spacing = [0, 0, 0], [0.0, 0.0, 0.0]
        for size, step, (axis, _) in zip(shape, spacing_from_affine(affine), orientation):
            canonical_shape[axis], canonical_spacing[axis] = size, float(step)
        shapes.append(canonical_shape)
        spacings.append(canonical_spacing)
        if CT in modalities and case.label is not None:
            for channel, values in enumerate(_foreground_samples(case, modalities, samples_per_case, seed + index)):
                samples[channel].append(values)
    intensities = tuple(_intensity(info, channel, samples[channel]) if modality == CT else None
                        for channel, modality in enumerate(modalities))
    return Fingerprint(tuple(info.channel_names), tuple(modalities),
                       tuple(float(v) for v in np.median(np.asarray(spacings), axis=0)),
                       tuple(int(round(v)) for v in np.median(np.asarray(shapes), axis=0)),
                       intensities, tuple(sorted(info.label_values)), len(cases))


def normalize_intensities(channels: np.ndarray, fingerprint: Fingerprint) -> np.ndarray:
    """`channels [C, *shape]` → float32 `[C, *shape]`, each channel by its modality's scheme (module docstring)."""
    if len(channels) != fingerprint.num_channels:
        raise DatasetError(f"{len(channels)} channel(s) but the fingerprint has {fingerprint.num_channels}")
    out = np.empty(channels.shape, dtype=np.float32)
    for index, (values, stats) in enumerate(zip(channels, fingerprint.intensities)):
        values = values.astype(np.float64, copy=False)
        if stats is not None:
            out[index] = (np.clip(values, stats.lower, stats.upper) - stats.mean) / (stats.std + NORMALIZE_EPSILON)
            continue
        nonzero = values != 0
        if not nonzero.any():
            out[index] = 0.0
            continue
        mean, std = values[nonzero].mean(), values[nonzero].std()
        out[index] = np.where(nonzero, (values - mean) / (std + NORMALIZE_EPSILON), 0.0)
    return out


def _foreground_samples(case: CaseFiles, modalities: Sequence[str], count: int, seed: int) -> list[np.ndarray]:
    """Per channel: up to `count` intensities at random foreground voxels of `case` (empty for non-CT channels)."""
    foreground = np.flatnonzero(read_image(case.label).array > 0)
    if foreground.size > count:
        foreground = np.random.default_rng(seed).choice(foreground, size=count, replace=False)
    volumes = read_channels(case)
    return [volume.array.reshape(-1)[foreground] if modality == CT else np.empty(0, np.float32)
            for volume, modality in zip(volumes, modalities)]


def _intensity(info: DatasetInfo, channel: int, samples: list[np.ndarray]) -> ChannelIntensity:
    values = np.concatenate(samples).astype(np.float64) if samples else np.empty(0)
    if values.size == 0:
        raise DatasetError(f"{info.name}: no foreground voxels in the training labels, so channel "
                           f"{info.channel_names[channel]!r} (CT) has no intensity statistics")
    lower, upper = np.percentile(values, PERCENTILES)
    return ChannelIntensity(float(lower), float(upper), float(values.mean()), float(values.std()))
