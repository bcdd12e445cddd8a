"""The implicit decoder of OSS-Net (docs/reference.md §3): residual conditional-batch-norm blocks over query points.

Each point gets [coordinates (3 or 35) | patch features (343) | latent 0 (L)]; five residual CBN blocks
conditioned on the volume's latent(s) map it to occupancy. All points of all volumes of the batch are
normalised together, as in the original (batch-major, M = B*N rows).
"""
from __future__ import annotations

import contextlib
import math

import torch
from torch import nn
from torch.nn import functional as F

from pade_activation_unit import PAU

from oss_net.data.patches import PATCH_SIZE

from .config import FOURIER_FEATURES, OSSNetConfig

FOURIER_SCALE = 4.0  # standard deviation of the random frequencies (docs/reference.md §3.2)


class ConditionalBatchNorm(nn.Module):
    """CBN(h, z) = gamma(z) * BN(h) + beta(z), gamma/beta linear maps of the volume's latent (docs/reference.md §3.3).

    normalization="scalar" pools one mean/variance over every point and feature of the batch, as the
    original's BatchNorm1d(1) on [M, 1, W] did; "per_feature" keeps one statistic per feature (O-Net).
    Either way the statistics depend on the whole batch in train mode.

    Shape: h [B, N, W], z [B, L] -> [B, N, W].
    """

    def __init__(self, features: int, latent_size: int, normalization: str = "scalar") -> None:
        super().__init__()
        self.scalar = normalization == "scalar"
        self.norm = nn.BatchNorm1d(1 if self.scalar else features, affine=False)
        self.gamma = nn.Linear(latent_size, features)
        self.beta = nn.Linear(latent_size, features)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Zero weights, gamma bias 1, beta bias 0: at init CBN is the plain normalisation."""
        nn.init.zeros_(self.gamma.weight)
        nn.init.ones_(self.gamma.bias)
        nn.init.zeros_(self.beta.weight)
        nn.init.zeros_(self.beta.bias)

    def forward(self, h: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        batch, points, width = h.shape
        if not self.training and self.norm.running_var is not None:
            return self._eval_affine(h, z)
        if self.scalar:
            normalized = self.norm(h.reshape(batch * points, 1, width))  # [M, 1, W]
        else:
            normalized = self.norm(h.reshape(batch * points, width))  # [M, W]
        normalized = normalized.view(batch, points, width)
        return self.gamma(z).unsqueeze(1) * normalized + self.beta(z).unsqueeze(1)

    def _eval_affine(self, h: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Eval mode: with the running statistics, BN then gamma/beta is one affine map per volume and
        feature, h * scale + shift, applied in a single pass over h instead of three (BN, *, +)."""
        stats, exact = self.norm, torch.promote_types(h.dtype, torch.float32)  # at least float32, float64 kept
        scale = self.gamma(z).to(exact) * torch.rsqrt(stats.running_var.to(exact) + stats.eps)  # [B, W]
        shift = self.beta(z).to(exact) - scale * stats.running_mean.to(exact)  # [B, W]
        return torch.addcmul(shift.to(h.dtype).unsqueeze(1), h, scale.to(h.dtype).unsqueeze(1))


class CBNResidualBlock(nn.Module):
    """Linear -- CBN -- PAU -- Linear -- CBN, plus a shortcut, then PAU (docs/reference.md §3.3).

    The shortcut is a Linear (with bias) only when the width changes (the first block). The original's
    Dropout(p=0) is left out.

    Shape: x [B, N, F_in], z [B, L] -> [B, N, W].
    """

    def __init__(self, in_features: int, width: int, latent_size: int, normalization: str) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, width)
        self.cbn1 = ConditionalBatchNorm(width, latent_size, normalization)
        self.act1 = PAU()
        self.fc2 = nn.Linear(width, width)
        self.cbn2 = ConditionalBatchNorm(width, latent_size, normalization)
        self.shortcut = nn.Linear(in_features, width) if in_features != width else nn.Identity()
        self.act2 = PAU()

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        h = self.act1(self.cbn1(self.fc1(x), z))
        h = self.cbn2(self.fc2(h), z)
        return self.act2(h + self.shortcut(x))


def _same_padding_conv_taps(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Kernel tap index and validity for every (output voxel, input voxel) pair of a size^3 'same' convolution.

    Returns tap [P, P] (flat kernel index, P = size^3) and valid [P, P] (the tap lies inside the kernel).
    """
    r = torch.arange(size)
    positions = torch.stack(torch.meshgrid(r, r, r, indexing="ij"), dim=-1).reshape(-1, 3)  # [P, 3]
    offset = positions[None, :, :] - positions[:, None, :] + size // 2  # [P_out, P_in, 3]
    valid = ((offset >= 0) & (offset < size)).all(dim=-1)
    offset = offset.clamp(0, size - 1)
    tap = (offset[..., 0] * size + offset[..., 1]) * size + offset[..., 2]
    return tap, valid


class PatchMapping(nn.Module):
    """The patch encoder of docs/reference.md §3.4.

    Conv3d 7^3 (bias) C_p -> max(C_p//2, 1) -- PAU -- Conv3d 7^3 -> 1 -- PAU.

    A 7^3 'same' convolution over a 7^3 patch is a dense linear map of the whole patch, so each conv runs as
    one GEMM with its Toeplitz matrix [C_in*343, C_out*343] gathered from the conv weights. Same maths and
    parameters as nn.Conv3d (checkpoints are interchangeable), about 5x faster on the CPU for these tiny
    inputs, where Conv3d falls back to slow direct convolution.

    Shape: [B, N, C_p, 7, 7, 7] -> [B, N, 343].
    """

    def __init__(self, patch_channels: int) -> None:
        super().__init__()
        hidden = max(patch_channels // 2, 1)
        self.conv1 = nn.Conv3d(patch_channels, hidden, PATCH_SIZE, padding=PATCH_SIZE // 2)
        self.act1 = PAU()
        self.conv2 = nn.Conv3d(hidden, 1, PATCH_SIZE, padding=PATCH_SIZE // 2)
        self.act2 = PAU()
        tap, valid = _same_padding_conv_taps(PATCH_SIZE)
        self.register_buffer("tap", tap, persistent=False)
        self.register_buffer("valid", valid, persistent=False)

    def _conv_as_matmul(self, x: torch.Tensor, conv: nn.Conv3d) -> torch.Tensor:
        """[M, C_in*343] -> [M, C_out*343], identical to conv applied to the [M, C_in, 7, 7, 7] patches."""
        c_out, c_in = conv.weight.shape[:2]
        taps = conv.weight.reshape(c_out, c_in, -1)[:, :, self.tap] * self.valid  # [C_out, C_in, P_out, P_in]
        toeplitz = taps.permute(1, 3, 0, 2).reshape(c_in * self.tap.shape[1], c_out * self.tap.shape[0])
        return torch.addmm(conv.bias.repeat_interleave(self.tap.shape[0]), x, toeplitz.to(x.dtype))

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        batch, points = patches.shape[:2]
        x = patches.reshape(batch * points, -1)  # [M, C_p*343], channel-major like the conv's input
        x = self.act1(self._conv_as_matmul(x, self.conv1))  # [M, hidden*343]
        x = self.act2(self._conv_as_matmul(x, self.conv2))  # [M, 343]
        return x.reshape(batch, points, -1)


class FourierFeatures(nn.Module):
    """[cos(2 pi p b), sin(2 pi p b), p] with a fixed random b ~ N(0, 4^2) of shape [1, 3, 16] (docs/reference.md §3.2).

    b is a buffer: saved in the state dict, never trained. The original applied it to raw voxel indices;
    with normalised coordinates (the default here) the frequencies cover the volume sensibly. The
    projection runs in at least float32 even under autocast: |2 pi p b| reaches ~100 and half precision
    would round the phase by a sizeable fraction of a period (float64 inputs keep float64: with raw
    indices the phase reaches ~10^4, where float32 rounds it by ~1e-3).

    Shape: [B, N, 3] -> [B, N, 35].
    """

    def __init__(self, features: int = FOURIER_FEATURES, scale: float = FOURIER_SCALE) -> None:
        super().__init__()
        self.register_buffer("frequencies", torch.randn(1, 3, features) * scale)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        device_type = points.device.type
        full_precision = (
            torch.autocast(device_type, enabled=False) if torch.amp.is_autocast_available(device_type) else contextlib.nullcontext()
        )
        with full_precision:
            wide = points.to(torch.promote_types(points.dtype, torch.float32))  # float64 stays float64
            projected = 2 * math.pi * wide @ self.frequencies[0].to(wide.dtype)  # [B, N, 16]
            features = torch.cat([torch.cos(projected), torch.sin(projected), wide], dim=-1)  # [B, N, 35]
        return features.to(points.dtype)


class OccupancyDecoder(nn.Module):
    """Points (+ patches) + latents -> class probabilities (docs/reference.md §3).

    Plain encoder (K = 1): the one latent is concatenated into the input and conditions every block.
    Skip encoder (K = blocks + 1): latent 0 is concatenated, latent i+1 conditions block i.
    Output: Linear W -> number_of_classes (no bias), then sigmoid (1 class, or per region in label_mode
    "regions") or softmax over classes.

    Shape: points [B, N, 3] (already normalised or raw), latents [B, K, L], patches [B, N, C_p, 7, 7, 7] | None
    -> [B, N, number_of_classes].
    """

    def __init__(self, config: OSSNetConfig) -> None:
        super().__init__()
        self.fourier = FourierFeatures() if config.fourier_features else None
        self.patch_mapping = PatchMapping(config.patch_channels) if config.patches else None
        widths = [config.decoder_input_width] + [config.decoder_width] * config.decoder_blocks
        self.blocks = nn.ModuleList(
            CBNResidualBlock(w_in, w_out, config.latent_size, config.cbn_normalization) for w_in, w_out in zip(widths, widths[1:])
        )
        self.output = nn.Linear(config.decoder_width, config.number_of_classes, bias=False)
        self.independent_outputs = config.label_mode == "regions"  # a sigmoid per region instead of a softmax

    def forward(
        self, points: torch.Tensor, latents: torch.Tensor, patches: torch.Tensor | None, logits: bool = False
    ) -> torch.Tensor:
        points_count = points.shape[1]
        parts = [self.fourier(points) if self.fourier is not None else points]  # [B, N, 3 | 35]
        if self.patch_mapping is not None:
            parts.append(self.patch_mapping(patches))  # [B, N, 343]
        parts.append(latents[:, 0:1].expand(-1, points_count, -1))  # [B, N, L]
        x = torch.cat(parts, dim=-1)  # [B, N, decoder_input_width]
        conditioned = latents.shape[1] > 1
        for index, block in enumerate(self.blocks):
            x = block(x, latents[:, index + 1 if conditioned else 0])  # [B, N, W]
        scores = self.output(x)  # [B, N, classes]
        if logits:
            return scores
        return torch.sigmoid(scores) if scores.shape[-1] == 1 or self.independent_outputs else F.softmax(scores, dim=-1)
