"""What the data, the models and the metrics share about datasets: their names, their error, their fingerprint.

A leaf module (it imports nothing of the packages), so `oss_net.models` can validate and store these
facts without importing `oss_net.data`:

- `DATASETS`, `PAPER_DATASETS` and `canonical_dataset`, the one dataset-name normaliser;
- `DatasetError`, the error of a dataset file, folder, name or description;
- `Fingerprint`: what the training cases look like (computed by `oss_net.data.fingerprint`), stored in
  the model configuration (`OSSNetConfig.fingerprint`) and so in every checkpoint, as plain values
  (`to_dict`), and `model_grid_shape`, the model grid it gives.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from oss_net.io import OSSNetError

DATASETS = ("brats", "lits", "nnunet", "msd", "flare")
PAPER_DATASETS = ("brats", "lits")  # the datasets the paper's configurations and the original's weights exist for
# Other spellings of the datasets: the original's scripts and folders say BraTS, bra_ts, BraTS2020, LiTS.
_DATASET_ALIASES = {"brats": "brats", "bra_ts": "brats", "brats2020": "brats", "lits": "lits", "nnunet": "nnunet",
                    "nnu_net": "nnunet", "msd": "msd", "decathlon": "msd", "flare": "flare", "flare21": "flare"}


class DatasetError(OSSNetError):
    """A dataset file or folder that cannot be used; the message names the file and the problem."""


def canonical_dataset(name: str) -> str:
    """The name in DATASETS for any accepted spelling (case, surrounding blanks and "-" for "_" do not matter).

    The one dataset-name normaliser; raises DatasetError naming the valid datasets for anything else.
    """
    key = name.strip().lower().replace("-", "_") if isinstance(name, str) else None
    if key not in _DATASET_ALIASES:
        raise DatasetError(f"unknown dataset {name!r}; valid datasets: {', '.join(DATASETS)}")
    return _DATASET_ALIASES[key]


@dataclass(frozen=True)
class ChannelIntensity:
    """Foreground intensity statistics of one CT channel over the training cases."""

    lower: float  # 0.5th percentile
    upper: float  # 99.5th percentile
    mean: float
    std: float


@dataclass(frozen=True)
class Fingerprint:
    """The training set's geometry and intensities (`oss_net.data.fingerprint` computes it and says how).

    Attributes:
        channel_names: one name per image channel, in channel order.
        modalities: "CT" or "MRI" per channel.
        spacing: median voxel size in mm per canonical axis.
        shape: median shape (voxels) per canonical axis.
        intensities: per channel, `ChannelIntensity` for CT and None for MRI.
        label_values: the values label files may hold (0 included).
        cases: number of training cases it was computed from.
    """

    channel_names: tuple[str, ...]
    modalities: tuple[str, ...]
    spacing: tuple[float, float, float]
    shape: tuple[int, int, int]
    intensities: tuple[ChannelIntensity | None, ...]
    label_values: tuple[int, ...]
    cases: int

    @property
    def num_channels(self) -> int:
        return len(self.channel_names)

    def to_dict(self) -> dict[str, Any]:
        """Plain types only (it travels in checkpoints loaded with weights_only=True)."""
        return {"channel_names": list(self.channel_names), "modalities": list(self.modalities),
                "spacing": list(self.spacing), "shape": list(self.shape),
                "intensities": [None if i is None else [i.lower, i.upper, i.mean, i.std] for i in self.intensities],
                "label_values": list(self.label_values), "cases": self.cases}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Fingerprint":
        try:
            return cls(tuple(str(c) for c in data["channel_names"]), tuple(str(m) for m in data["modalities"]),
                       tuple(float(s) for s in data["spacing"]), tuple(int(s) for s in data["shape"]),
                       tuple(None if i is None else ChannelIntensity(*(float(v) for v in i)) for i in data["intensities"]),
                       tuple(int(v) for v in data["label_values"]), int(data["cases"]))
        except (KeyError, TypeError, ValueError) as error:
            raise DatasetError(f"invalid dataset fingerprint {dict(data)!r}: {error}") from None


def model_grid_shape(fingerprint: Fingerprint, divisor: int, target_spacing: Sequence[float] | None = None,
                     largest: int | None = None) -> tuple[int, int, int]:
    """The model grid: median shape × median spacing / target spacing, each rounded up to a multiple of `divisor`.

    `divisor` is 2^(encoder depth) so every pooling divides evenly; `target_spacing` defaults to the
    median spacing. `largest` scales all axes by one factor first so the largest axis is `largest`
    (the demo preset's small grid, with the aspect of the scans kept).
    """
    target = fingerprint.spacing if target_spacing is None else tuple(float(s) for s in target_spacing)
    sizes = [n * s / t for n, s, t in zip(fingerprint.shape, fingerprint.spacing, target)]
    if largest is not None:
        sizes = [size * largest / max(sizes) for size in sizes]
    return tuple(max(divisor, int(math.ceil(size / divisor - 1e-9)) * divisor) for size in sizes)
