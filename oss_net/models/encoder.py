"""The two 3D CNN encoders of OSS-Net (docs/reference.md §2): plain (O-Net, A, B, D*, E*) and skip (C*, full*).

Both are chains of residual blocks, each halving the resolution. The plain encoder maps the last block to
one 1-channel map whose flattened voxels are the latent ([B, 1, L]); the skip encoder pools every block to
the output shape and mixes all of them into decoder_blocks + 1 latents ([B, K, L]).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from pade_activation_unit import PAU

from oss_net.labels import scheme_of

from .config import OSSNetConfig
from .recompute import RecomputedBlock

HEAD_KERNEL = 5  # heads, final mappings and the segmentation head are 5^3 convolutions, padding 2


class HalvingAveragePool(torch.autograd.Function):
    """F.avg_pool3d(x, 2) keeping only x's shape for backward: aten's avg_pool3d keeps all of x although its
    backward reads only the size, and in a residual block x is a full-resolution tensor (the PAU output,
    the shortcut) that nothing else keeps. Same forward and backward kernels, so the same numbers.

    Shape: [B, C, D, H, W] -> [B, C, D//2, H//2, W//2].
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.input_shape = x.shape
        return F.avg_pool3d(x, 2)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        template = grad.new_zeros(()).expand(ctx.input_shape)  # the size aten's backward reads, no storage
        return torch.ops.aten.avg_pool3d_backward(grad, template, [2, 2, 2], [2, 2, 2], [0, 0, 0], False, True, None)


class ResidualBlock3d(RecomputedBlock):
    """Residual block that halves the resolution in the middle of its main path (docs/reference.md §2.1).

        main:     Conv3d 3^3 (no bias) -- BN -- PAU -- AvgPool 2 -- Conv3d 3^3 (no bias) -- BN
        shortcut: Conv3d 1^3 (no bias, only if channels change) -- AvgPool 2
        out = PAU(main + shortcut)

    The original's Dropout(p=0) is left out: it is the identity. The shortcut pools before its 1^3
    convolution: both are linear and act on different axes, so the result is the same up to float rounding,
    for 1/8 of the convolution's work and no full-resolution C_out tensor (in the first LiTS block, 8 x 256^3
    floats, 0.5 GiB, and its gradient). Its activations can be recomputed in backward (`oss_net.models.recompute`).

    Shape: [B, C_in, D, H, W] -> [B, C_out, D//2, H//2, W//2].
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(in_channels, out_channels, 3, padding=1, bias=False)
        self.norm1 = nn.BatchNorm3d(out_channels)
        self.act1 = PAU()
        self.conv2 = nn.Conv3d(out_channels, out_channels, 3, padding=1, bias=False)
        self.norm2 = nn.BatchNorm3d(out_channels)
        self.shortcut = nn.Conv3d(in_channels, out_channels, 1, bias=False) if in_channels != out_channels else nn.Identity()
        self.act2 = PAU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        main = HalvingAveragePool.apply(self.act1(self.norm1(self.conv1(x))))  # [B, C_out, D/2, H/2, W/2]
        main = self.norm2(self.conv2(main))
        return self.act2(main + self.shortcut(HalvingAveragePool.apply(x)))


def _conv_norm_pau(in_channels: int, out_channels: int, bias: bool) -> nn.Sequential:
    """Conv3d 5^3 pad 2 -- BN -- PAU: the final mappings and the skip heads."""
    return nn.Sequential(
        nn.Conv3d(in_channels, out_channels, HEAD_KERNEL, padding=HEAD_KERNEL // 2, bias=bias),
        nn.BatchNorm3d(out_channels),
        PAU(),
    )


class SegmentationHead(nn.Module):
    """Low-resolution segmentation of the last block: Conv3d 5^3 (no bias) C -> K, then sigmoid per channel.

    K = 1 (binary), or one channel per region / class of the label mode (`oss_net.labels`).
    Shape: [B, C, *encoder_output_shape] -> [B, K, *encoder_output_shape] probabilities.
    """

    def __init__(self, in_channels: int, classes: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv3d(in_channels, classes, HEAD_KERNEL, padding=HEAD_KERNEL // 2, bias=False)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.conv(features))


def _blocks(config: OSSNetConfig) -> nn.ModuleList:
    return nn.ModuleList(ResidualBlock3d(c_in, c_out) for c_in, c_out in config.encoder_channels)


class PlainEncoder(nn.Module):
    """Residual blocks, then Conv3d 5^3 (bias) C -> 1 -- BN -- PAU, flattened to one latent (docs/reference.md §2.2).

    The latent is the 1-channel map itself, so L = prod(encoder_output_shape) follows from the input size.
    Difference from the original: with `config.segmentation_head` (E1/E2) this encoder gets the same
    segmentation head as the skip encoder (on the last block's output); the original silently dropped
    it, which made E1/E2 identical to A/B (docs/reference.md §12.7).

    Shape: [B, C_in, *encoder_input_shape] -> latents [B, 1, L], segmentation [B, 1, *encoder_output_shape] | None.
    """

    def __init__(self, config: OSSNetConfig) -> None:
        super().__init__()
        last = config.encoder_channels[-1][1]
        self.blocks = _blocks(config)
        self.final = _conv_norm_pau(last, 1, bias=True)
        self.segmentation_head = SegmentationHead(last, scheme_of(config).classes_count) if config.segmentation_head else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        for block in self.blocks:
            x = block(x)
        latents = self.final(x).flatten(2)  # [B, 1, L]
        segmentation = self.segmentation_head(x) if self.segmentation_head is not None else None
        return latents, segmentation


class SkipEncoder(nn.Module):
    """Residual blocks with a head after every block, mixed into K latents (docs/reference.md §2.3).

    Head i: AdaptiveMaxPool3d(encoder_output_shape) -- Conv3d 5^3 (no bias) C_i -> C_i/2 -- BN -- PAU.
    The heads are concatenated (BraTS 8+16+32+64 = 120 channels) and mapped by Conv3d 5^3 (bias) -> K
    -- BN -- PAU, with K = decoder_blocks + 1: latent 0 joins the decoder input, latent i+1 conditions block i.

    Shape: [B, C_in, *encoder_input_shape] -> latents [B, K, L], segmentation [B, 1, *encoder_output_shape] | None.
    """

    def __init__(self, config: OSSNetConfig) -> None:
        super().__init__()
        self.blocks = _blocks(config)
        self.heads = nn.ModuleList(
            nn.Sequential(nn.AdaptiveMaxPool3d(config.encoder_output_shape), *_conv_norm_pau(c, c // 2, bias=False))
            for _, c in config.encoder_channels
        )
        head_channels = sum(c // 2 for _, c in config.encoder_channels)
        self.final = _conv_norm_pau(head_channels, config.number_of_latents, bias=True)
        last = config.encoder_channels[-1][1]
        self.segmentation_head = SegmentationHead(last, scheme_of(config).classes_count) if config.segmentation_head else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        pooled = []
        for block, head in zip(self.blocks, self.heads):
            x = block(x)
            pooled.append(head(x))  # [B, C_i/2, *encoder_output_shape]
        latents = self.final(torch.cat(pooled, dim=1)).flatten(2)  # [B, K, L]
        segmentation = self.segmentation_head(x) if self.segmentation_head is not None else None
        return latents, segmentation


def build_encoder(config: OSSNetConfig) -> nn.Module:
    """PlainEncoder or SkipEncoder, by config.encoder."""
    return SkipEncoder(config) if config.encoder == "skip" else PlainEncoder(config)
