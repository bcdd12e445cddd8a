"""U-Net baseline configurations: `UNetConfig`, the per-dataset presets and the U-Net names.

A U-Net name is "unet3d" or "unet2d" in any spelling ("UNet-3D"); `canonical_network_name` gives the one
spelling of any network name, OSS-Net or U-Net, so a run and its resumption compare equal.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from oss_net.datasets import DATASETS

from ..config import ConfigError, canonical_name, check_config_fields, config_dataset

UNET_NAMES: tuple[str, ...] = ("unet3d", "unet2d")
ACTIVATIONS: tuple[str, ...] = ("pau", "leaky_relu")
NORMALIZATIONS: tuple[str, ...] = ("batch", "instance")

# Per-dataset base values. The paper does not give the baselines' widths; these give a 3D U-Net whose
# training activations at 256x256x160 are of the order of the paper's 14.4 GB, and a standard 2D U-Net.
_BASES: dict[str, dict[str, Any]] = {
    "brats": {"in_channels": 4, "volume_shape": (256, 256, 160)},
    "lits": {"in_channels": 1, "volume_shape": (512, 512, 512)},
}
_VARIANTS: dict[str, dict[str, Any]] = {
    "unet3d": {"channels": (16, 32, 64, 128, 256), "strides": (2, 2, 2, 2)},
    "unet2d": {"channels": (32, 64, 128, 256, 512), "strides": (2, 2, 2, 2)},
}
# Best slicing orientation of the paper's 2D U-Net (docs/reference.md §13.1): BraTS depth-wise (array axis 2),
# LiTS width-wise (taken here as array axis 1; which array axis the paper called width is unverified).
_SLICE_AXIS: dict[str, int] = {"brats": 2, "lits": 1}
LITS_UNET3D_INPUT_SHAPE: tuple[int, int, int] = (224, 224, 224)


@dataclass(frozen=True)
class UNetConfig:
    """A residual U-Net baseline.

    Args:
        name: "unet3d" (whole volume) or "unet2d" (slice by slice).
        dataset: "brats" or "lits".
        in_channels: image channels (4 BraTS, 1 LiTS).
        volume_shape: the model grid of the data pipeline, the same as OSS-Net's (i, j, k).
        input_shape: grid the 3D net runs at; the volume is resized to it and the prediction back.
            None = volume_shape. LiTS 3D default 224^3 (the paper's). The 2D net always runs at native size.
        channels: feature width per level, c0 at full resolution.
        strides: down-sampling factor between consecutive levels (len(channels) - 1 entries).
        slice_axis: 2D only: the array axis (0, 1, 2 of volume_shape) that is sliced.
        training_slices: 2D only: slices drawn per volume for one training step.
        inference_slices: 2D only: slices per forward call in predict_volume (bounds the memory).
        activation: "pau" (one Padé unit per site, as OSS-Net) or "leaky_relu" (slope 0.01).
        normalization: "batch" (as the OSS-Net encoder) or "instance".
        dice_weight: segmentation_loss = BCE + dice_weight * soft Dice.
    """

    name: str
    dataset: str
    in_channels: int
    volume_shape: tuple[int, int, int]
    input_shape: tuple[int, int, int] | None = None
    channels: tuple[int, ...] = (16, 32, 64, 128, 256)
    strides: tuple[int, ...] = (2, 2, 2, 2)
    slice_axis: int = 2
    training_slices: int = 16
    inference_slices: int = 32
    activation: str = "pau"
    normalization: str = "batch"
    dice_weight: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "volume_shape", tuple(int(s) for s in self.volume_shape))
        if self.input_shape is not None:
            object.__setattr__(self, "input_shape", tuple(int(s) for s in self.input_shape))
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        object.__setattr__(self, "strides", tuple(int(s) for s in self.strides))
        self._validate()

    def _validate(self) -> None:
        """Collect every problem and raise once, naming the configuration."""
        problems = []
        if self.name not in UNET_NAMES:
            problems.append(f"name must be one of {UNET_NAMES}, got {self.name!r}")
        if self.dataset not in DATASETS:
            problems.append(f"dataset must be one of {DATASETS}, got {self.dataset!r}")
        if len(self.volume_shape) != 3 or min(self.volume_shape, default=0) < 1:
            problems.append(f"volume_shape must be 3 positive sizes, got {self.volume_shape}")
        if self.input_shape is not None and (len(self.input_shape) != 3 or min(self.input_shape) < 1):
            problems.append(f"input_shape must be None or 3 positive sizes, got {self.input_shape}")
        if self.name == "unet2d" and self.input_shape not in (None, self.volume_shape):
            problems.append("input_shape applies to unet3d only; the 2D U-Net runs at the native slice size")
        if len(self.channels) < 2 or min(self.channels) < 1:
            problems.append(f"channels must be >= 2 positive widths, got {self.channels}")
        if len(self.strides) != len(self.channels) - 1 or min(self.strides, default=1) < 1:
            problems.append(f"strides must be {len(self.channels) - 1} positive factors (len(channels) - 1), got {self.strides}")
        if self.slice_axis not in (0, 1, 2):
            problems.append(f"slice_axis must be 0, 1 or 2, got {self.slice_axis}")
        if self.activation not in ACTIVATIONS:
            problems.append(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        if self.normalization not in NORMALIZATIONS:
            problems.append(f"normalization must be one of {NORMALIZATIONS}, got {self.normalization!r}")
        for field in ("in_channels", "training_slices", "inference_slices"):
            if getattr(self, field) < 1:
                problems.append(f"{field} must be >= 1, got {getattr(self, field)}")
        if self.dice_weight < 0:
            problems.append(f"dice_weight must be >= 0, got {self.dice_weight}")
        if problems:
            raise ConfigError(f"configuration {self.name!r} ({self.dataset}): " + "; ".join(problems))

    @property
    def spatial_dims(self) -> int:
        """3 for unet3d, 2 for unet2d."""
        return 3 if self.name == "unet3d" else 2

    @property
    def network_shape(self) -> tuple[int, int, int]:
        """The grid the network computes on: input_shape for the 3D net when set, else volume_shape."""
        return self.input_shape or self.volume_shape

    @property
    def size_multiple(self) -> int:
        """Each spatial size is padded up to a multiple of this (the product of the strides)."""
        return math.prod(self.strides)

    def to_dict(self) -> dict[str, Any]:
        """Plain types only (lists, not tuples), so it survives JSON and torch.load(weights_only=True)."""
        data = dataclasses.asdict(self)
        for key in ("volume_shape", "input_shape", "channels", "strides"):
            data[key] = None if data[key] is None else list(data[key])
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UNetConfig:
        """Inverse of to_dict; unknown or missing fields raise ConfigError naming them."""
        check_config_fields(cls, data, "U-Net configuration")
        return cls(**data)


def get_unet_config(name: str, dataset: str, **overrides: Any) -> UNetConfig:
    """The baseline `name` ("unet3d" / "unet2d", case-insensitive) for `dataset`, with field overrides.

    LiTS unet3d runs at input_shape 224^3 unless input_shape or volume_shape is overridden (then the net
    runs at the given volume_shape, which is what demo grids want).
    """
    key = _unet_key(name)
    if key not in UNET_NAMES:
        raise ConfigError(f"unknown U-Net configuration {name!r}; valid names: {', '.join(UNET_NAMES)}")
    dataset = config_dataset(dataset)
    fields = {f.name for f in dataclasses.fields(UNetConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ConfigError(f"unknown U-Net configuration fields {unknown}; valid fields: {', '.join(sorted(fields))}")
    values: dict[str, Any] = {**_BASES[dataset], **_VARIANTS[key], "slice_axis": _SLICE_AXIS[dataset]}
    if key == "unet3d" and dataset == "lits" and not {"input_shape", "volume_shape"} & set(overrides):
        values["input_shape"] = LITS_UNET3D_INPUT_SHAPE
    return UNetConfig(name=key, dataset=dataset, **{**values, **overrides})


def is_unet_name(name: str) -> bool:
    """Whether `name` ("unet3d", "UNet-2D", ...) names a U-Net baseline rather than an OSS-Net configuration."""
    return isinstance(name, str) and _unet_key(name) in UNET_NAMES


def canonical_network_name(name: str) -> str:
    """The one spelling of any network name, OSS-Net ("C" -> "full") or U-Net ("UNet3D" -> "unet3d")."""
    if is_unet_name(name):
        return _unet_key(name)
    return canonical_name(name)


def _unet_key(name: str) -> str:
    """"UNet-3D", "unet_3d", " unet3d " -> "unet3d": case, blanks, "-" and "_" do not matter."""
    return name.strip().lower().replace("-", "").replace("_", "")
