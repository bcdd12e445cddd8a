"""The two baselines behind one interface, and their model kind "unet" (dense: see `oss_net.models.is_dense`).

The 3D net sees the whole volume (``input_shape``; the paper trained the LiTS 3D U-Net at 224^3 because
512^3 would need >110 GB, then upsampled its prediction to 512^3, docs/reference.md §13.2). The 2D net folds the
slices along ``slice_axis`` into the batch, runs a 2D U-Net on each, and stacks the answers back, so a
"volume" of any number of slices goes through; training uses ``training_slices`` random slices per volume.
"""
from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ConfigError
from ..oss_net import ModelInputError
from ..registry import register_model
from .blocks import ResidualUNet
from .unet_config import UNetConfig


class _UNetBaseline(nn.Module):
    """The interface training and inference call on either baseline.

    - training_pair(volume [B, C, *volume_shape], label [B, *volume_shape], generator) -> (inputs, target [B, 1, ...])
    - forward(inputs) -> logits shaped like target (feed both to segmentation_loss)
    - predict_volume(volume [B, C, *volume_shape]) -> probabilities [B, 1, *volume_shape], without gradients
    """

    kind: ClassVar[str] = "unet"  # the checkpoint kind (oss_net.models.registry)
    config_name: ClassVar[str]  # the UNetConfig.name this net is built from

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        if config.name != self.config_name:
            raise ConfigError(f"{type(self).__name__} needs a {self.config_name!r} configuration, got {config.name!r}")
        self.config = config
        self.body = ResidualUNet(config)

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

    config_name = "unet3d"

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

    config_name = "unet2d"

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


register_model(_UNetBaseline.kind, UNetConfig, build_unet, dense=True)
