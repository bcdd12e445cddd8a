"""The training augmentations of docs/reference.md §6.3, in our form and in the original's.

Both apply three transforms, each independently with probability ½, in this order: a flip along a
non-empty subset of the two in-plane axes (image, label and border alike); brightness
x ← x + max(x)·u with u ~ U(−0.15, 0.15) drawn per channel; Gaussian noise N(0, 0.15²) per voxel.
All randomness comes from the given generator.

- `augment` (ours): everything on the model grid, the three flip subsets equally likely.
- `augment_original` (paper mode, `oss_net.compat`): as the original, which augmented the volume at
  its native resolution before padding (BraTS) or resampling (LiTS). The flip subsets {axis 0},
  {axis 1}, {both} have probabilities 1/4, 1/4, 1/2. On a padded grid the flip, brightness and noise
  touch only the native box (the padding stays zero); on a resampled grid the noise is drawn on the
  input grid and resampled like the image. Two details are approximate: the brightness peak of a
  resampled volume is the model grid's maximum (interpolation can lower it below the input's, by
  less than the step between neighbouring voxels), and a cropped axis flips only the kept part.
"""
from __future__ import annotations

from typing import Any

import torch

AUGMENTATIONS = ("ours", "original")  # the rules `augment_with` selects between (oss_net.compat.Behaviour.augmentation)
PROBABILITY = 0.5
BRIGHTNESS = 0.15
NOISE_STD = 0.15
_FLIP_SUBSETS = ((0,), (1,), (0, 1))  # the two in-plane axes (array axes 0 and 1 of [D, H, W])
ORIGINAL_FLIP_PROBABILITIES = (0.25, 0.25, 0.5)  # of _FLIP_SUBSETS: one axis, drawn among two, or both


def augment(volume: torch.Tensor, masks: list[torch.Tensor | None], generator: torch.Generator
            ) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
    """Augment `volume [C, D, H, W]` and flip the `masks [..., D, H, W]` (label, border bands) consistently."""
    if _coin(generator):
        axes = _FLIP_SUBSETS[int(torch.randint(len(_FLIP_SUBSETS), (1,), generator=generator))]
        volume = volume.flip([a + 1 for a in axes])
        masks = [None if m is None else m.flip([a - 3 for a in axes]) for m in masks]
    if _coin(generator):
        shift = (torch.rand(volume.shape[0], generator=generator) * 2 - 1) * BRIGHTNESS  # [C]
        peak = volume.reshape(volume.shape[0], -1).amax(dim=1)  # [C]
        volume = volume + (peak * shift.to(volume.dtype)).reshape(-1, 1, 1, 1)
    if _coin(generator):
        noise = torch.randn(volume.shape, generator=generator, dtype=volume.dtype) * NOISE_STD
        volume = volume + noise
    return volume, masks


def augment_original(volume: torch.Tensor, masks: list[torch.Tensor | None], generator: torch.Generator,
                     meta: Any) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
    """The original's augmentation of `volume [C, D, H, W]` and `masks [..., D, H, W]` on the model grid.

    `meta` is the case's `oss_net.data.GridMeta` (how the input grid reached the model grid).
    """
    box = native_box(meta)  # slices of the native voxels ([:] everywhere on a resampled grid)
    volume = volume.clone()
    if _coin(generator):
        choice = torch.multinomial(torch.tensor(ORIGINAL_FLIP_PROBABILITIES), 1, generator=generator)
        axes = _FLIP_SUBSETS[int(choice)]
        volume[(slice(None), *box)] = volume[(slice(None), *box)].flip([a + 1 for a in axes])
        masks = [None if m is None else _flip_inside(m, box, axes) for m in masks]
    inside = volume[(slice(None), *box)]  # a view: changes below reach `volume`
    if _coin(generator):
        shift = (torch.rand(volume.shape[0], generator=generator) * 2 - 1) * BRIGHTNESS  # [C]
        peak = inside.reshape(volume.shape[0], -1).amax(dim=1)  # [C]
        inside += (peak * shift.to(volume.dtype)).reshape(-1, 1, 1, 1)
    if _coin(generator):
        if meta.mode == "pad":
            inside += torch.randn(inside.shape, generator=generator, dtype=volume.dtype) * NOISE_STD
        else:  # noise of the input grid, carried to the model grid as the image was (linear, so exact)
            noise = torch.randn((volume.shape[0], *meta.input_shape), generator=generator, dtype=torch.float32)
            inside += meta.to_model_grid(noise * NOISE_STD, order=1).to(volume.dtype)
    return volume, masks


def augment_with(rule: str, volume: torch.Tensor, masks: list[torch.Tensor | None], generator: torch.Generator,
                 meta: Any) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
    """`augment` ("ours") or `augment_original` ("original"), by `rule`."""
    if rule == "ours":
        return augment(volume, masks, generator)
    if rule == "original":
        return augment_original(volume, masks, generator, meta)
    raise ValueError(f"unknown augmentation {rule!r}; expected one of {AUGMENTATIONS}")


def native_box(meta: Any) -> tuple[slice, slice, slice]:
    """Where the input voxels lie on the model grid: the unpadded box of a padded grid, all of a resampled one."""
    if meta.mode != "pad":
        return (slice(None),) * 3
    return tuple(slice(max(before, 0), size - max(after, 0))
                 for before, after, size in zip(meta.pad_before, meta.pad_after, meta.volume_shape))


def _flip_inside(mask: torch.Tensor, box: tuple[slice, ...], axes: tuple[int, ...]) -> torch.Tensor:
    """`mask [..., D, H, W]` flipped along spatial `axes` within `box` only."""
    flipped = mask.clone()
    flipped[(Ellipsis, *box)] = mask[(Ellipsis, *box)].flip([a - 3 for a in axes])
    return flipped


def _coin(generator: torch.Generator) -> bool:
    return bool(torch.rand(1, generator=generator) < PROBABILITY)
