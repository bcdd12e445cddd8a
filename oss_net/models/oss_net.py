"""OSSNet: encode a volume once into latents, then decode occupancy at any set of points.

    model = build_model(get_config("C", "brats"))
    encoding = model.encode(volume)                   # volume [B, 4, 256, 256, 160] on the model grid
    occupancy = model.decode(coords, encoding, patches)   # [B, N, 1]

For inference, `model.eval()` then `encoding = model.fold(encoding)` under `torch.no_grad()` attaches
the decoder folded for these latents (`FoldedDecoder`); `decode` then runs it. Folding happens only
when asked for: `encode` never folds, so training and plain encode/decode see the live weights.
"""
from __future__ import annotations

from typing import ClassVar, NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from oss_net.geometry import PATCH_SIZE
from oss_net.io import OSSNetError

from .config import OSSNetConfig
from .decoder import FoldedDecoder, OccupancyDecoder
from .encoder import build_encoder
from .registry import register_model


class ModelInputError(OSSNetError, ValueError):
    """A tensor given to the model does not have the shape its configuration needs."""


class Encoding(NamedTuple):
    """What the encoder gives the decoder: latents [B, K, L] and the low-res segmentation [B, K_seg, *out] | None
    (K_seg = 1, or one channel per class / region of the label mode); after `OSSNet.fold` also the decoder
    folded for these latents (`FoldedDecoder`), which `decode` then uses in eval mode without autograd."""

    latents: torch.Tensor
    segmentation: torch.Tensor | None
    decoder: FoldedDecoder | None = None


class OSSNet(nn.Module):
    """The OSS-Net occupancy network of one configuration (docs/reference.md §2-§4).

    Coordinates are voxel indices on the model grid ([B, N, 3], order i, j, k); the model maps them to
    [-1, 1] by 2c/(shape-1) - 1 unless config.raw_coordinates (the original's raw indices). The encoder
    sees the model-grid volume trilinearly downscaled by 2 (align_corners=False); `encode` does that.
    """

    kind: ClassVar[str] = "oss_net"

    def __init__(self, config: OSSNetConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = build_encoder(config)
        self.decoder = OccupancyDecoder(config)

    def encode(self, volume: torch.Tensor) -> Encoding:
        """volume [B, C, *volume_shape] -> Encoding(latents [B, K, L], segmentation [B, 1, *out] | None)."""
        expected = (self.config.in_channels, *self.config.volume_shape)
        if volume.dim() != 5 or tuple(volume.shape[1:]) != expected:
            raise ModelInputError(
                f"{self.config.name} ({self.config.dataset}) expects a volume [B, {', '.join(map(str, expected))}] "
                f"on the model grid, got {list(volume.shape)}"
            )
        small = F.interpolate(volume, size=self.config.encoder_input_shape, mode="trilinear", align_corners=False)
        return self.encode_downscaled(small)

    def encode_downscaled(self, small: torch.Tensor) -> Encoding:
        """Encode a volume that is already downscaled: small [B, C, *encoder_input_shape] -> Encoding.

        `encode` is this after its x0.5 trilinear downscale. Called directly, it lets a caller feed
        exactly the encoder input of another implementation (the converter's exactness tests do).
        """
        expected = (self.config.in_channels, *self.config.encoder_input_shape)
        if small.dim() != 5 or tuple(small.shape[1:]) != expected:
            raise ModelInputError(
                f"{self.config.name} ({self.config.dataset}) expects a downscaled volume [B, {', '.join(map(str, expected))}], "
                f"got {list(small.shape)}"
            )
        latents, segmentation = self.encoder(small)
        return Encoding(latents, segmentation)

    def fold(self, encoding: Encoding) -> Encoding:
        """`encoding` with the decoder folded for its latents (`OccupancyDecoder.fold`), for inference.

        Eval mode only (the fold uses the batch norms' running statistics). The fold computes its GEMM
        operands from the weights as they are now: decode a folded encoding only while they stay unchanged.
        """
        return encoding._replace(decoder=self.decoder.fold(encoding.latents))

    def normalize_coordinates(self, coords: torch.Tensor) -> torch.Tensor:
        """Model-grid voxel indices [.., 3] -> [-1, 1] (or unchanged with raw_coordinates), in float."""
        if self.config.raw_coordinates:
            return coords
        extent = torch.tensor(self.config.volume_shape, dtype=coords.dtype, device=coords.device) - 1
        return 2 * coords / extent - 1

    def decode(
        self,
        coords: torch.Tensor,
        encoding: Encoding,
        patches: torch.Tensor | None = None,
        logits: bool = False,
    ) -> torch.Tensor:
        """Occupancy probabilities [B, N, classes] at coords [B, N, 3] (voxel indices, any numeric dtype).

        patches [B, N, C_p, 7, 7, 7] are required exactly when the configuration uses them.
        All N points go through at once: a caller with many points splits them (inference's refinement
        loop decodes chunks of its `chunk_size`). In train mode the CBN batch statistics are those of these
        points.
        logits=True returns the scores before sigmoid/softmax (for autocast-safe losses).
        A folded encoding (`fold`) of this model's decoder is decoded by the folded decoder in eval mode
        without autograd (the same maths up to float rounding, with the operands folded at `fold`);
        otherwise, and always with autograd on, the decoder module does the work.
        """
        latents = encoding.latents
        self._check_decode_inputs(coords, latents, patches)
        points = self.normalize_coordinates(coords.to(latents.dtype))  # [B, N, 3]
        folded = encoding.decoder
        if folded is not None and not self.training and not torch.is_grad_enabled() and folded.decoder is self.decoder:
            return folded(points, patches, logits)
        # (an encoding folded by another model of the same encoder keeps that model's fold: not used here)
        return self.decoder(points, latents, patches, logits)

    def forward(
        self, volume: torch.Tensor, coords: torch.Tensor, patches: torch.Tensor | None = None, logits: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(occupancy [B, N, classes], low-res segmentation [B, 1, *out] | None) of one training step."""
        encoding = self.encode(volume)
        return self.decode(coords, encoding, patches, logits=logits), encoding.segmentation

    def _check_decode_inputs(self, coords: torch.Tensor, latents: torch.Tensor, patches: torch.Tensor | None) -> None:
        name = f"{self.config.name} ({self.config.dataset})"
        if coords.dim() != 3 or coords.shape[-1] != 3:
            raise ModelInputError(f"{name}: coords must be [B, N, 3], got {list(coords.shape)}")
        expected_latents = (self.config.number_of_latents, self.config.latent_size)
        if latents.dim() != 3 or tuple(latents.shape[1:]) != expected_latents or latents.shape[0] != coords.shape[0]:
            raise ModelInputError(
                f"{name}: latents must be [{coords.shape[0]}, {expected_latents[0]}, {expected_latents[1]}] "
                f"for coords {list(coords.shape)}, got {list(latents.shape)}"
            )
        if not self.config.patches:
            if patches is not None:
                raise ModelInputError(f"{name} uses no patches, but patches were given")
            return
        expected = [*coords.shape[:2], self.config.patch_channels, PATCH_SIZE, PATCH_SIZE, PATCH_SIZE]
        if patches is None or list(patches.shape) != expected:
            got = "none" if patches is None else list(patches.shape)
            raise ModelInputError(f"{name} needs patches {expected}, got {got}")


register_model(OSSNet.kind, OSSNetConfig, OSSNet)
