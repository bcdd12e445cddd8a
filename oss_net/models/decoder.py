"""The implicit decoder of OSS-Net (docs/reference.md §3): residual conditional-batch-norm blocks over query points.

Each point gets [coordinates (3 or 35) | patch features (343) | latent 0 (L)]; five residual CBN blocks
conditioned on the volume's latent(s) map it to occupancy. All points of all volumes of the batch are
normalised together, as in the original (batch-major, M = B*N rows).
"""
from __future__ import annotations

import contextlib
import math
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from pade_activation_unit import PAU

from oss_net.geometry import PATCH_SIZE

from .config import FOURIER_FEATURES, PATCH_FEATURES, OSSNetConfig
from .recompute import RecomputedBlock

FOURIER_SCALE = 4.0  # standard deviation of the random frequencies (docs/reference.md §3.2)
GEMM_ALIGN = 16  # FoldedDecoder pads GEMM output widths to a multiple of this (fast BLAS paths on the CPU)


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
        scale, shift = self.eval_affine(z, torch.promote_types(h.dtype, torch.float32))  # at least float32
        return torch.addcmul(shift.to(h.dtype).unsqueeze(1), h, scale.to(h.dtype).unsqueeze(1))

    def eval_affine(self, z: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """(scale [B, W], shift [B, W]) in `dtype` with CBN(h, z) = h * scale + shift in eval mode (running statistics)."""
        stats = self.norm
        scale = self.gamma(z).to(dtype) * torch.rsqrt(stats.running_var.to(dtype) + stats.eps)  # [B, W]
        shift = self.beta(z).to(dtype) - scale * stats.running_mean.to(dtype)  # [B, W]
        return scale, shift


class CBNResidualBlock(RecomputedBlock):
    """Linear -- CBN -- PAU -- Linear -- CBN, plus a shortcut, then PAU (docs/reference.md §3.3).

    The shortcut is a Linear (with bias) only when the width changes (the first block). The original's
    Dropout(p=0) is left out. Its activations can be recomputed in backward (`oss_net.models.recompute`).

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

    def conv_matrix(self, conv: nn.Conv3d) -> tuple[torch.Tensor, torch.Tensor]:
        """(bias [C_out*343], Toeplitz matrix [C_in*343, C_out*343]) of one of the two convs, as GEMM operands."""
        c_out, c_in = conv.weight.shape[:2]
        taps = conv.weight.reshape(c_out, c_in, -1)[:, :, self.tap] * self.valid  # [C_out, C_in, P_out, P_in]
        toeplitz = taps.permute(1, 3, 0, 2).reshape(c_in * self.tap.shape[1], c_out * self.tap.shape[0])
        return conv.bias.repeat_interleave(self.tap.shape[0]), toeplitz

    def _conv_as_matmul(self, x: torch.Tensor, conv: nn.Conv3d) -> torch.Tensor:
        """[M, C_in*343] -> [M, C_out*343], identical to conv applied to the [M, C_in, 7, 7, 7] patches."""
        bias, toeplitz = self.conv_matrix(conv)
        return torch.addmm(bias, x, toeplitz.to(x.dtype))

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
        return self.activate(self.output(x), logits)  # [B, N, classes]

    def activate(self, scores: torch.Tensor, logits: bool = False) -> torch.Tensor:
        """scores [B, N, classes] -> probabilities (sigmoid per output or softmax), or the scores when `logits`."""
        if logits:
            return scores
        return torch.sigmoid(scores) if scores.shape[-1] == 1 or self.independent_outputs else F.softmax(scores, dim=-1)

    def fold(self, latents: torch.Tensor) -> "FoldedDecoder":
        """This decoder for the volumes of `latents [B, K, L]` with every CBN folded into the linear layer
        before it (see `FoldedDecoder`). Eval mode only: the fold uses the running statistics."""
        if self.training:
            raise RuntimeError("fold() uses the batch norms' running statistics: call it in eval mode")
        return FoldedDecoder(self, latents)


class FeatureLayout(NamedTuple):
    """Where the decoder input's columns sit in the folded decoder's feature matrix [M, width]:
    (target columns, source columns of the decoder input) pairs; other columns are zero padding."""

    width: int
    columns: list[tuple[slice, slice]]


class FoldedLayer(NamedTuple):
    """One residual block with its CBNs folded in; GEMM operands per volume, weights transposed for x @ w.

    weight1 [B, F, W], bias1 [B, 1, W]: fc1 then CBN1; weight2 [B, W, W], bias2 [B, 1, W]: fc2 then CBN2,
    plus the shortcut's bias; shortcut [B, F, W] (the first block, as a matrix even when it is the
    identity) or None (the identity).
    """

    weight1: torch.Tensor
    bias1: torch.Tensor
    weight2: torch.Tensor
    bias2: torch.Tensor
    shortcut: torch.Tensor | None
    act1: nn.Module
    act2: nn.Module


class FoldedDecoder:
    """An eval-mode `OccupancyDecoder` for given volumes, with the per-volume constants folded into its GEMMs.

    In eval mode a CBN is h * scale + shift with scale, shift [B, W] fixed per volume (running statistics,
    gamma and beta of the volume's latent), so Linear(W, b) then CBN is one Linear with weight
    scale[:, None] * W and bias scale * b + shift: no CBN pass over the points. Latent 0, concatenated
    to every point's input, adds the same W_latent @ z0 to the first block's fc1 and shortcut at every
    point: that goes into their biases, and the first GEMMs only see the point and patch features
    (352 instead of 666 columns for C). The identity shortcuts accumulate in place (x + bias2, then
    += h @ weight2: no separate add). The patch mapping's Toeplitz matrices are built once, their output
    widths padded to a multiple of GEMM_ALIGN with zero columns (the CPU BLAS runs the odd widths 686 and
    343 at about 60% of its speed), and the point features are written into the patch features' padding
    instead of being concatenated. All the points of a call go through in one pass: the caller sizes the
    calls (inference's CPU chunks of 1024 points keep each layer's activations in cache).
    Same maths as the module in eval mode, up to float rounding.

    Built once per volume when the predictor asks for it (`OSSNet.fold` attaches it to the `Encoding`)
    and used for every chunk of that volume. Inference only: it runs without autograd. The weights are
    folded in at least float32 and cast once per compute dtype (the autocast dtype when autocast is on).

    Shape: points [B, N, 3] (normalised as the decoder expects), patches [B, N, C_p, 7, 7, 7] | None
    -> [B, N, classes].
    """

    def __init__(self, decoder: OccupancyDecoder, latents: torch.Tensor) -> None:
        exact = torch.promote_types(latents.dtype, torch.float32)
        mapping = decoder.patch_mapping
        patch_width = PATCH_FEATURES if mapping is not None else 0
        point_width = decoder.blocks[0].fc1.in_features - patch_width - latents.shape[2]  # 3, or 35 with Fourier features
        with torch.no_grad():
            latents = latents.to(exact)
            if mapping is None:  # the features are the point features alone
                self.point_columns, patch_matrices = None, None
                layout = FeatureLayout(point_width, [(slice(0, point_width), slice(0, point_width))])
            else:  # [patch features | point features | zero padding]
                patch_matrices = self._padded_patch_matrices(mapping, point_width, exact)
                self.point_columns = slice(patch_width, patch_width + point_width)
                layout = FeatureLayout(patch_matrices[-1][1].shape[1], [
                    (slice(0, patch_width), slice(point_width, point_width + patch_width)),
                    (self.point_columns, slice(0, point_width)),
                ])
            self.layers = {exact: self._fold_blocks(decoder, latents, layout, exact)}
            self.output = {exact: decoder.output.weight.to(exact).t()}  # [W, classes]
            self.patch_matrices = None if patch_matrices is None else {exact: patch_matrices}
        self.patch_acts = None if mapping is None else (mapping.act1, mapping.act2)
        self.decoder = decoder
        self.batch = latents.shape[0]
        self.device_type = latents.device.type

    @staticmethod
    def _padded_patch_matrices(
        mapping: PatchMapping, point_width: int, exact: torch.dtype
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """[(bias [n1], matrix [C_p*343, n1]), (bias [n2], matrix [n1, n2])]: the two convs as GEMMs, the output
        widths padded with zeros to multiples of GEMM_ALIGN, the second's leaving room for the point features."""
        (bias1, matrix1), (bias2, matrix2) = [
            (bias.to(exact), matrix.to(exact)) for bias, matrix in map(mapping.conv_matrix, (mapping.conv1, mapping.conv2))
        ]
        hidden = _round_up(matrix1.shape[1], GEMM_ALIGN)
        width = _round_up(PATCH_FEATURES + point_width, GEMM_ALIGN)
        padded1 = matrix1.new_zeros(matrix1.shape[0], hidden)
        padded1[:, :matrix1.shape[1]] = matrix1
        padded2 = matrix2.new_zeros(hidden, width)
        padded2[:matrix2.shape[0], :PATCH_FEATURES] = matrix2
        return [(F.pad(bias1, (0, hidden - len(bias1))), padded1), (F.pad(bias2, (0, width - len(bias2))), padded2)]

    @staticmethod
    def _fold_blocks(
        decoder: OccupancyDecoder, latents: torch.Tensor, layout: FeatureLayout, exact: torch.dtype
    ) -> list[FoldedLayer]:
        """The blocks' folded GEMM operands for latents [B, K, L] in dtype `exact`; the first block's input
        is the feature `layout` plus latent 0."""
        conditioned = latents.shape[1] > 1
        z0 = latents[:, 0]  # [B, L], concatenated to every point's input
        latent_width = z0.shape[1]

        def split(matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            """A first-block weight [W, F] -> (its feature columns in the layout [W, F'], latent 0's share [B, W])."""
            features = matrix.new_zeros(matrix.shape[0], layout.width)
            for target, source in layout.columns:
                features[:, target] = matrix[:, source]
            return features, z0 @ matrix[:, -latent_width:].t()

        layers = []
        for index, block in enumerate(decoder.blocks):
            z = latents[:, index + 1 if conditioned else 0]  # [B, L]
            scale1, shift1 = block.cbn1.eval_affine(z, exact)  # [B, W] each
            scale2, shift2 = block.cbn2.eval_affine(z, exact)
            weight1, bias1 = block.fc1.weight.to(exact), block.fc1.bias.to(exact)  # [W, F], [W]
            weight2, bias2 = block.fc2.weight.to(exact), block.fc2.bias.to(exact)
            shortcut = None
            bias2 = scale2 * bias2 + shift2  # [B, W]
            if index == 0:  # the input ends with latent 0: its share is a per-volume constant
                weight1, latent_share = split(weight1)
                bias1 = bias1 + latent_share  # [B, W]
                if isinstance(block.shortcut, nn.Linear):
                    full, bias_s = block.shortcut.weight.to(exact), block.shortcut.bias.to(exact)
                else:  # the identity, as a matrix, so that latent 0's share can be split off the same way
                    full, bias_s = torch.eye(weight2.shape[0], dtype=exact, device=z0.device), 0
                full, latent_share = split(full)
                bias2 = bias2 + bias_s + latent_share
                shortcut = full.t().contiguous().expand(len(z0), -1, -1)  # [B, F', W]
            layers.append(FoldedLayer(
                weight1=(scale1[:, :, None] * weight1).transpose(1, 2),  # [B, F, W]
                bias1=(scale1 * bias1 + shift1)[:, None],  # [B, 1, W]
                weight2=(scale2[:, :, None] * weight2).transpose(1, 2),  # [B, W, W]
                bias2=bias2[:, None],  # [B, 1, W]
                shortcut=shortcut, act1=block.act1, act2=block.act2,
            ))
        return layers

    def _operands(self, dtype: torch.dtype) -> tuple[list[FoldedLayer], torch.Tensor, list | None]:
        """The folded operands in the compute dtype, cast once and kept."""
        if dtype not in self.layers:
            exact = next(iter(self.layers))
            self.layers[dtype] = [
                layer._replace(**{k: getattr(layer, k).to(dtype) for k in ("weight1", "bias1", "weight2", "bias2")},
                               shortcut=None if layer.shortcut is None else layer.shortcut.to(dtype))
                for layer in self.layers[exact]
            ]
            self.output[dtype] = self.output[exact].to(dtype)
            if self.patch_matrices is not None:
                self.patch_matrices[dtype] = [tuple(t.to(dtype) for t in pair) for pair in self.patch_matrices[exact]]
        return self.layers[dtype], self.output[dtype], None if self.patch_matrices is None else self.patch_matrices[dtype]

    def __call__(self, points: torch.Tensor, patches: torch.Tensor | None, logits: bool = False) -> torch.Tensor:
        batch, count = points.shape[:2]
        if batch != self.batch:
            raise ValueError(f"this folded decoder holds {self.batch} volume(s), got points for {batch}")
        autocasting = torch.amp.is_autocast_available(self.device_type) and torch.is_autocast_enabled(self.device_type)
        dtype = torch.get_autocast_dtype(self.device_type) if autocasting else points.dtype
        layers, output, patch_matrices = self._operands(dtype)
        decoder = self.decoder
        with torch.no_grad(), torch.autocast(self.device_type, enabled=False) if autocasting else contextlib.nullcontext():
            point_features = (decoder.fourier(points) if decoder.fourier is not None else points).to(dtype)  # [B, N, 3 | 35]
            if patch_matrices is None:
                x = point_features
            else:
                x = patches.reshape(batch * count, -1).to(dtype)  # [M, C_p*343]
                for (bias, matrix), act in zip(patch_matrices, self.patch_acts):
                    x = act(torch.addmm(bias, x, matrix))  # [M, hidden], then [M, F'] (PAU output: ours)
                x = x.view(batch, count, -1)
                x[..., self.point_columns] = point_features  # [B, N, F'] = [patch | point | padding]
            for layer in layers:
                h = layer.act1(torch.baddbmm(layer.bias1, x, layer.weight1))  # [B, N, W]
                # x is this call's own tensor (features or the previous block's PAU output): add in place
                out = torch.baddbmm(layer.bias2, x, layer.shortcut) if layer.shortcut is not None else x.add_(layer.bias2)
                x = layer.act2(out.baddbmm_(h, layer.weight2))  # [B, N, W]
            return decoder.activate(x @ output, logits)  # [B, N, classes]


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple
