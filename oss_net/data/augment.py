"""The paper's training augmentations, applied on the model grid (reference §6.3).

Each is applied independently with probability ½, in this order: flip along a random non-empty
subset of the two in-plane axes (image, label and border alike); brightness x ← x + max(x)·u with
u ~ U(−0.15, 0.15) drawn per channel; Gaussian noise N(0, 0.15²) per voxel. The original applied
them before padding; on the model grid the flips are the same for BraTS (symmetric in-plane
padding) and LiTS (resampling commutes with flips). All randomness comes from the given generator.
"""
from __future__ import annotations

import torch

PROBABILITY = 0.5
BRIGHTNESS = 0.15
NOISE_STD = 0.15
_FLIP_SUBSETS = ((0,), (1,), (0, 1))  # the two in-plane axes (array axes 0 and 1 of [D, H, W])


def augment(volume: torch.Tensor, masks: list[torch.Tensor | None], generator: torch.Generator
            ) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
    """Augment `volume [C, D, H, W]` and flip the `masks [D, H, W]` (label, border) consistently."""
    if _coin(generator):
        axes = _FLIP_SUBSETS[int(torch.randint(len(_FLIP_SUBSETS), (1,), generator=generator))]
        volume = volume.flip([a + 1 for a in axes])
        masks = [None if m is None else m.flip(list(axes)) for m in masks]
    if _coin(generator):
        shift = (torch.rand(volume.shape[0], generator=generator) * 2 - 1) * BRIGHTNESS  # [C]
        peak = volume.reshape(volume.shape[0], -1).amax(dim=1)  # [C]
        volume = volume + (peak * shift.to(volume.dtype)).reshape(-1, 1, 1, 1)
    if _coin(generator):
        noise = torch.randn(volume.shape, generator=generator, dtype=volume.dtype) * NOISE_STD
        volume = volume + noise
    return volume, masks


def _coin(generator: torch.Generator) -> bool:
    return bool(torch.rand(1, generator=generator) < PROBABILITY)
