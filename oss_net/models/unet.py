"""The paper's dense baselines: a 3D residual U-Net and a 2D residual U-Net that segments slice by slice.

Why our own modules and not ``monai.networks.nets.UNet``: MONAI is the field's library, but here the
baselines exist to be *compared* with OSS-Net, above all in memory (paper Table 2). That comparison is
only fair when the U-Nets use the same building parts as the OSS-Net encoder (3^3 convolutions,
BatchNorm, one Padé activation per site, residual blocks) and when we know exactly which tensor each
layer keeps for backward. MONAI's UNet fixes its own block layout (a strided first convolution,
PReLU/instance norm by default, and a residual unit whose shortcut we cannot choose), and MONAI is only a
test dependency of this project, so a training run would need an extra package. The modules below are
about a hundred lines and give full control over widths, activation, normalisation and padding.

Layout (both dimensionalities, ``channels = (c0, c1, ..., cK)``, ``strides = (s1, ..., sK)``)::

    x -- Res(in->c0) ------------------------------------------- cat -- Res(2c0->c0) -- Conv1(c0->1) -- logits
              \\-- Res(c0->c1, stride s1) -------- cat -- Res(2c1->c1) -- Up(c1->c0) --/
                        \\-- ... Res(c(K-1)->cK, stride sK) -- Up(cK->c(K-1)) --/

    Res(a->b, s) = act( BN(Conv3(BN-act(Conv3_s(x)))) + shortcut(x) ),  shortcut = BN(Conv1_s(x)) if a != b or s != 1

Inputs of any size work: the grid is zero-padded at the far end up to a multiple of prod(strides) and the
output cropped back, so odd demo grids (e.g. 30x28x18) keep their shape.

The 3D net sees the whole volume (``input_shape``; the paper trained the LiTS 3D U-Net at 224^3 because
512^3 would need >110 GB, then upsampled its prediction to 512^3, reference §13.2). The 2D net folds the
slices along ``slice_axis`` into the batch, runs a 2D U-Net on each, and stacks the answers back, so a
"volume" of any number of slices goes through; training uses ``training_slices`` random slices per volume.

    config = get_unet_config("unet3d", "brats")             # 256x256x160, channels 16..256
    model = build_unet(config)
    inputs, target = model.training_pair(volume, label)     # [B, C, *grid], [B, 1, *grid]
    loss = segmentation_loss(model(inputs), target)         # BCE + soft Dice on logits
    probs = model.predict_volume(volume)                    # [B, 1, *volume_shape] in [0, 1]
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .config import DATASETS, ConfigError, canonical_dataset, canonical_name
from .oss_net import ModelInputError
from .registry import register_model

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
# Best slicing orientation of the paper's 2D U-Net (reference §13.1): BraTS depth-wise (array axis 2),
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
        fields = {f.name for f in dataclasses.fields(cls)}
        required = {f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING}
        unknown = sorted(set(data) - fields)
        missing = sorted(required - set(data))
        if unknown or missing:
            raise ConfigError(f"U-Net configuration dict has unknown fields {unknown} and misses fields {missing}")
        return cls(**data)


def get_unet_config(name: str, dataset: str, **overrides: Any) -> UNetConfig:
    """The baseline `name` ("unet3d" / "unet2d", case-insensitive) for `dataset`, with field overrides.

    LiTS unet3d runs at input_shape 224^3 unless input_shape or volume_shape is overridden (then the net
    runs at the given volume_shape, which is what demo grids want).
    """
    key = name.strip().lower().replace("-", "").replace("_", "")
    if key not in UNET_NAMES:
        raise ConfigError(f"unknown U-Net configuration {name!r}; valid names: {', '.join(UNET_NAMES)}")
    dataset = canonical_dataset(dataset)
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
    return isinstance(name, str) and name.strip().lower().replace("-", "").replace("_", "") in UNET_NAMES


def canonical_network_name(name: str) -> str:
    """The one spelling of any network name, OSS-Net ("C" -> "full") or U-Net ("UNet3D" -> "unet3d")."""
    if is_unet_name(name):
        return name.strip().lower().replace("-", "").replace("_", "")
    return canonical_name(name)


def _activation(config: UNetConfig) -> nn.Module:
    """A fresh activation module per site (every PAU learns its own coefficients, as in OSS-Net)."""
    if config.activation == "pau":
        from pade_activation_unit import PAU

        return PAU()
    return nn.LeakyReLU(0.01)


def _norm(config: UNetConfig, channels: int) -> nn.Module:
    if config.normalization == "batch":
        return (nn.BatchNorm3d if config.spatial_dims == 3 else nn.BatchNorm2d)(channels)
    return (nn.InstanceNorm3d if config.spatial_dims == 3 else nn.InstanceNorm2d)(channels, affine=True)


def _conv(config: UNetConfig, c_in: int, c_out: int, kernel: int, stride: int = 1, bias: bool = False) -> nn.Module:
    conv = nn.Conv3d if config.spatial_dims == 3 else nn.Conv2d
    return conv(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=bias)


class ResidualBlock(nn.Module):
    """act(BN(Conv3(act(BN(Conv3_stride(x))))) + shortcut(x)); shortcut = BN(Conv1_stride) when the shape changes.

    Shape: [B, c_in, *S] -> [B, c_out, *S/stride] (S divisible by stride).
    """

    def __init__(self, config: UNetConfig, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.main = nn.Sequential(
            _conv(config, c_in, c_out, 3, stride),
            _norm(config, c_out),
            _activation(config),
            _conv(config, c_out, c_out, 3),
            _norm(config, c_out),
        )
        needs_projection = c_in != c_out or stride != 1
        self.shortcut = nn.Sequential(_conv(config, c_in, c_out, 1, stride), _norm(config, c_out)) if needs_projection else nn.Identity()
        self.output_activation = _activation(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_activation(self.main(x) + self.shortcut(x))


class ResidualUNet(nn.Module):
    """The U-Net body in 2 or 3 spatial dimensions: [B, C, *S] -> logits [B, 1, *S] for any S."""

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.multiple = config.size_multiple
        widths = config.channels
        self.stem = ResidualBlock(config, config.in_channels, widths[0])
        self.down = nn.ModuleList(
            ResidualBlock(config, widths[i], widths[i + 1], stride) for i, stride in enumerate(config.strides)
        )
        transpose = nn.ConvTranspose3d if config.spatial_dims == 3 else nn.ConvTranspose2d
        self.up = nn.ModuleList(transpose(widths[i + 1], widths[i], stride, stride=stride) for i, stride in enumerate(config.strides))
        self.merge = nn.ModuleList(ResidualBlock(config, 2 * widths[i], widths[i]) for i in range(len(config.strides)))
        self.head = _conv(config, widths[0], 1, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[2:]
        padding = [p for s in reversed(size) for p in (0, -s % self.multiple)]
        if any(padding):
            x = F.pad(x, padding)  # [B, C, *S padded to the multiple]
        skips = [self.stem(x)]  # level 0: [B, c0, *S]
        for block in self.down:
            skips.append(block(skips[-1]))  # level i: [B, ci, *S / prod(strides[:i])]
        h = skips.pop()
        for level in reversed(range(len(self.up))):
            h = self.merge[level](torch.cat([skips[level], self.up[level](h)], dim=1))  # [B, c_level, ...]
        logits = self.head(h)  # [B, 1, *S padded]
        return logits[(..., *(slice(0, s) for s in size))]


class _UNetBaseline(nn.Module):
    """The interface training and inference call on either baseline.

    - training_pair(volume [B, C, *volume_shape], label [B, *volume_shape], generator) -> (inputs, target [B, 1, ...])
    - forward(inputs) -> logits shaped like target (feed both to segmentation_loss)
    - predict_volume(volume [B, C, *volume_shape]) -> probabilities [B, 1, *volume_shape], without gradients
    """

    kind: ClassVar[str] = "unet"  # the checkpoint kind (oss_net.models.registry)
    config: UNetConfig

    def _check_volume(self, volume: torch.Tensor) -> None:
        expected = (self.config.in_channels, *self.config.volume_shape)
        if volume.dim() != 5 or tuple(volume.shape[1:]) != expected:
            raise ModelInputError(
                f"{self.config.name} ({self.config.dataset}) expects volumes [B, {', '.join(map(str, expected))}], got {tuple(volume.shape)}"
            )


class UNet3D(_UNetBaseline):
    """3D residual U-Net on the whole volume (resized to config.input_shape when set).

    Shape: forward [B, C, D, H, W] -> logits [B, 1, D, H, W] for any D, H, W.
    """

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        if config.name != "unet3d":
            raise ConfigError(f"UNet3D needs a 'unet3d' configuration, got {config.name!r}")
        self.config = config
        self.body = ResidualUNet(config)

    def forward(self, volume: torch.Tensor) -> torch.Tensor:
        return self.body(volume)

    def training_pair(
        self, volume: torch.Tensor, label: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The whole volume at the network grid: inputs [B, C, *network_shape], target [B, 1, *network_shape] in {0, 1}."""
        self._check_volume(volume)
        target = (label > 0).to(volume.dtype).unsqueeze(1)  # [B, 1, *volume_shape]
        shape = self.config.network_shape
        if shape != self.config.volume_shape:
            volume = F.interpolate(volume, size=shape, mode="trilinear", align_corners=False)
            target = F.interpolate(target, size=shape, mode="nearest")
        return volume, target

    @torch.no_grad()
    def predict_volume(self, volume: torch.Tensor) -> torch.Tensor:
        self._check_volume(volume)
        shape = self.config.network_shape
        if shape != self.config.volume_shape:
            volume = F.interpolate(volume, size=shape, mode="trilinear", align_corners=False)
        logits = self(volume)  # [B, 1, *network_shape]
        if shape != self.config.volume_shape:
            # The paper upsampled the LiTS 224^3 prediction to 512^3; logits interpolate to smoother borders.
            logits = F.interpolate(logits, size=self.config.volume_shape, mode="trilinear", align_corners=False)
        return torch.sigmoid(logits)


class UNet2D(_UNetBaseline):
    """2D residual U-Net applied to every slice along config.slice_axis.

    Shape: forward [B, C, D, H, W] -> logits [B, 1, D, H, W]; the sliced axis may have any length (the
    slices are folded into the batch: [B * n_slices, C, a, b]).
    """

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        if config.name != "unet2d":
            raise ConfigError(f"UNet2D needs a 'unet2d' configuration, got {config.name!r}")
        self.config = config
        self.body = ResidualUNet(config)

    def forward(self, volume: torch.Tensor) -> torch.Tensor:
        axis = 2 + self.config.slice_axis  # tensor dimension of the sliced axis
        moved = volume.movedim(axis, 1)  # [B, n, C, a, b]
        batch, slices = moved.shape[:2]
        logits = self.body(moved.reshape(batch * slices, *moved.shape[2:]))  # [B * n, 1, a, b]
        return logits.reshape(batch, slices, *logits.shape[1:]).movedim(1, axis)  # [B, 1, D, H, W]

    def training_pair(
        self, volume: torch.Tensor, label: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """training_slices random slices (the same indices for the whole batch), as a thin volume.

        inputs [B, C, *S], target [B, 1, *S] where S is volume_shape with the sliced axis cut to
        min(training_slices, its length).
        """
        self._check_volume(volume)
        axis = 2 + self.config.slice_axis
        extent = volume.shape[axis]
        count = min(self.config.training_slices, extent)
        index = torch.randperm(extent, generator=generator)[:count].sort().values.to(volume.device)
        target = (label > 0).to(volume.dtype).unsqueeze(1)  # [B, 1, *volume_shape]
        return volume.index_select(axis, index), target.index_select(axis, index)

    @torch.no_grad()
    def predict_volume(self, volume: torch.Tensor) -> torch.Tensor:
        self._check_volume(volume)
        axis = 2 + self.config.slice_axis
        step = self.config.inference_slices
        parts = [self(part) for part in volume.split(step, dim=axis)]  # each [B, 1, ..., <=step, ...]
        return torch.sigmoid(torch.cat(parts, dim=axis))


def build_unet(config: UNetConfig) -> UNet3D | UNet2D:
    """The baseline for a UNetConfig (the models package's build_model dispatches here)."""
    if not isinstance(config, UNetConfig):
        raise ConfigError(f"build_unet needs a UNetConfig, got {type(config).__name__}")
    return UNet3D(config) if config.name == "unet3d" else UNet2D(config)


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor, dice_weight: float = 1.0, eps: float = 1.0) -> torch.Tensor:
    """BCE on logits (mean over voxels) + dice_weight * (1 - soft Dice), the usual dense U-Net objective.

    The soft Dice pools all voxels of the batch (one score), smoothed by eps so an empty target does not
    divide by zero. logits, target: [B, 1, *S], target in {0, 1}.
    """
    bce = F.binary_cross_entropy_with_logits(logits, target)
    if dice_weight == 0:
        return bce
    probs = torch.sigmoid(logits)
    intersection = (probs * target).sum()
    dice = (2 * intersection + eps) / (probs.sum() + target.sum() + eps)
    return bce + dice_weight * (1 - dice)


register_model(_UNetBaseline.kind, UNetConfig, build_unet)
