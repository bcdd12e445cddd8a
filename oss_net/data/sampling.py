"""Query points, their labels and the low-resolution target (the patches around them: `patches`).

One sampler serves both datasets and every split (docs/reference.md §6.4), with two fixes of the original:
uniform draws can reach the last index of each axis, and continuous points (`--continuous_sampling`) are an
option: each drawn voxel is jittered uniformly inside itself, and its target is the label interpolated
there (`oss_net.labels.LabelScheme.point_targets`), so the decoder learns the field between voxel centres.
"""
from __future__ import annotations

import math
import warnings
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from oss_net.geometry import nearest_voxel


def sample_coordinates(shape: Sequence[int], border_mask: np.ndarray | torch.Tensor | None, samples: int,
                       border_balance: float, generator: torch.Generator, include_last_index: bool = True,
                       continuous: bool = False) -> torch.Tensor:
    """Voxel coordinates `[S, 3]` float32 on the model grid, shuffled.

    floor(S·ρ) points are border voxels drawn without replacement (all of them when the band is
    smaller), the rest uniform with replacement. Several bands (one per class, `[K, D, H, W]`) share
    the border points equally, each drawn without replacement from its own band (empty bands left out). With `include_last_index` uniform indices cover
    0..dim−1; otherwise floor(U·(dim−1)) as the original, which never reaches dim−1. With
    `continuous` every drawn voxel (border or uniform, the last index included) moves by a uniform
    offset in [−½, ½)³, inside its own voxel, so border points stay in the band's voxels; an offset
    that leaves the grid's outer voxel centres is folded back inside (`fold_into_grid`), where the
    patches and labels are defined. An empty border band falls back to uniform sampling with a warning.

    Args:
        shape: the model grid (D, H, W).
        border_mask: bool `[D, H, W]` border band, or `[K, D, H, W]` bands, or None for uniform sampling.
        samples: S.
        border_balance: ρ in [0, 1].
        generator: a CPU torch.Generator; the only source of randomness.
    """
    if not 0.0 <= border_balance <= 1.0:
        raise ValueError(f"border_balance must lie in [0, 1], got {border_balance}")
    dims = torch.tensor([int(s) for s in shape], dtype=torch.int64)
    wanted = math.floor(samples * border_balance) if border_mask is not None else 0
    border = torch.empty(0, 3, dtype=torch.int64)
    if wanted > 0:
        masks = torch.as_tensor(np.asarray(border_mask) if isinstance(border_mask, np.ndarray) else border_mask)
        bands = [torch.nonzero(band.reshape(-1).cpu(), as_tuple=False).squeeze(1)  # [n_k] flat indices per band
                 for band in masks.reshape(-1, *masks.shape[-3:])]
        bands = [band for band in bands if band.numel()]
        if not bands:
            warnings.warn("empty border band (no foreground): sampling uniformly instead", RuntimeWarning, stacklevel=2)
        else:
            chosen = []
            for index, candidates in enumerate(bands):  # equal shares, the remainder to the first bands
                share = wanted // len(bands) + (index < wanted % len(bands))
                if candidates.numel() > share:
                    candidates = candidates[torch.randperm(candidates.numel(), generator=generator)[:share]]
                chosen.append(candidates)
            border = _unravel(torch.cat(chosen), dims)  # [n, 3]
    uniform_count = samples - border.shape[0]
    last = include_last_index or continuous  # a continuous point may lie anywhere in the grid
    uniform = torch.floor(torch.rand(uniform_count, 3, generator=generator, dtype=torch.float64) * (dims if last else dims - 1))
    points = torch.cat([border.double(), uniform])  # [S, 3] voxel indices
    if continuous:
        points = fold_into_grid(points + torch.rand(points.shape, generator=generator, dtype=torch.float64) - 0.5, dims)
    points = points[torch.randperm(points.shape[0], generator=generator)]
    return points.to(torch.float32)  # [S, 3]


def fold_into_grid(points: torch.Tensor, dims: torch.Tensor) -> torch.Tensor:
    """Points `[S, 3]` within half a voxel of the grid `dims` folded back into [0, dim − 1] by reflection at the
    outer voxel centres (no point mass on the faces, as a clamp would make)."""
    upper = (dims - 1).to(points.dtype)
    points = points.abs()
    return torch.minimum(torch.where(points > upper, 2 * upper - points, points).clamp(min=0), upper)


def labels_at(label: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Binary labels `[..., N, 1]` float32 of `label [..., D, H, W]` at the nearest voxel of `coords [..., N, 3]`."""
    shape = label.shape[-3:]
    index = nearest_voxel(coords, shape)
    flat = (index[..., 0] * shape[1] + index[..., 1]) * shape[2] + index[..., 2]  # [..., N]
    values = label.reshape(*label.shape[:-3], -1).gather(-1, flat.to(label.device))
    return (values > 0).to(torch.float32).unsqueeze(-1)


def segmentation_target(label: torch.Tensor, output_shape: Sequence[int]) -> torch.Tensor:
    """Low-resolution target `[B, 1, *output_shape]`: 1 where any voxel of the cell is foreground."""
    foreground = (label > 0).to(torch.float32).unsqueeze(1)  # [B, 1, D, H, W]
    return F.adaptive_max_pool3d(foreground, tuple(int(s) for s in output_shape))


def _unravel(flat_index: torch.Tensor, dims: torch.Tensor) -> torch.Tensor:
    """Flat C-order indices `[K]` → `[K, 3]` voxel indices."""
    k = flat_index % dims[2]
    j = (flat_index // dims[2]) % dims[1]
    i = flat_index // (dims[1] * dims[2])
    return torch.stack([i, j, k], dim=1)
