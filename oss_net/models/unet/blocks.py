"""The residual U-Net body shared by the 3D and the 2D baseline.

Layout (both dimensionalities, ``channels = (c0, c1, ..., cK)``, ``strides = (s1, ..., sK)``)::

    x -- Res(in->c0) ------------------------------------------- cat -- Res(2c0->c0) -- Conv1(c0->1) -- logits
              \\-- Res(c0->c1, stride s1) -------- cat -- Res(2c1->c1) -- Up(c1->c0) --/
                        \\-- ... Res(c(K-1)->cK, stride sK) -- Up(cK->c(K-1)) --/

    Res(a->b, s) = act( BN(Conv3(BN-act(Conv3_s(x)))) + shortcut(x) ),  shortcut = BN(Conv1_s(x)) if a != b or s != 1

Inputs of any size work: the grid is zero-padded at the far end up to a multiple of prod(strides) and the
output cropped back, so odd demo grids (e.g. 30x28x18) keep their shape.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pade_activation_unit import PAU

from ..recompute import RecomputedBlock
from .unet_config import UNetConfig


def _activation(config: UNetConfig) -> nn.Module:
    """A fresh activation module per site (every PAU learns its own coefficients, as in OSS-Net)."""
    if config.activation == "pau":
        return PAU()
    return nn.LeakyReLU(0.01)


def _norm(config: UNetConfig, channels: int) -> nn.Module:
    if config.normalization == "batch":
        return (nn.BatchNorm3d if config.spatial_dims == 3 else nn.BatchNorm2d)(channels)
    return (nn.InstanceNorm3d if config.spatial_dims == 3 else nn.InstanceNorm2d)(channels, affine=True)


def _conv(config: UNetConfig, c_in: int, c_out: int, kernel: int, stride: int = 1, bias: bool = False) -> nn.Module:
    conv = nn.Conv3d if config.spatial_dims == 3 else nn.Conv2d
    return conv(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=bias)


class ResidualBlock(RecomputedBlock):
    """act(BN(Conv3(act(BN(Conv3_stride(x))))) + shortcut(x)); shortcut = BN(Conv1_stride) when the shape changes.

    Its activations can be recomputed in backward (`oss_net.models.recompute`), as OSS-Net's blocks.

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
