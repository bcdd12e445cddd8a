"""Query points, their labels, the local patches around them and the low-resolution target.

One sampler serves both datasets and every split (reference §6.4), with two fixes of the original:
uniform draws can reach the last index of each axis, and off-grid continuous points are an option.
Patches are gathered from the model-grid volume on its own device by index arithmetic, with no
unfolded view and no padded copy of the volume (reference §12 item 24).
"""
from __future__ import annotations

import math
import warnings
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

SMALL_PATCH = 7  # small patch c−3..c+3
LARGE_PATCH = 14  # large patch c−7..c+6, avg-pooled 2× to 7³
_GATHER_ELEMENTS = 1 << 24  # gathered values per chunk (64 MiB of float32)


def sample_coordinates(shape: Sequence[int], border_mask: np.ndarray | torch.Tensor | None, samples: int,
                       border_balance: float, generator: torch.Generator, include_last_index: bool = True,
                       continuous: bool = False) -> torch.Tensor:
    """Voxel coordinates `[S, 3]` float32 on the model grid, shuffled.

    floor(S·ρ) points are border voxels drawn without replacement (all of them when the band is
    smaller), the rest uniform with replacement. With `include_last_index` uniform indices cover
    0..dim−1; otherwise floor(U·(dim−1)) as the original, which never reaches dim−1. With
    `continuous`, uniform points are U·(dim−1) and border points get a U(−½, ½) offset (clamped to
    the grid); their labels are those of the nearest voxel (see `labels_at`). An empty border band
    falls back to uniform sampling with a warning.

    Args:
        shape: the model grid (D, H, W).
        border_mask: bool `[D, H, W]` border band, or None for uniform sampling.
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
        flat = torch.as_tensor(np.asarray(border_mask) if isinstance(border_mask, np.ndarray) else border_mask)
        candidates = torch.nonzero(flat.reshape(-1).cpu(), as_tuple=False).squeeze(1)  # [K]
        if candidates.numel() == 0:
            warnings.warn("empty border band (no foreground): sampling uniformly instead", RuntimeWarning, stacklevel=2)
        else:
            if candidates.numel() > wanted:
                candidates = candidates[torch.randperm(candidates.numel(), generator=generator)[:wanted]]
            border = _unravel(candidates, dims)  # [K, 3]
    uniform_count = samples - border.shape[0]
    if continuous:
        uniform = torch.rand(uniform_count, 3, generator=generator, dtype=torch.float64) * (dims - 1)
        jitter = torch.rand(border.shape[0], 3, generator=generator, dtype=torch.float64) - 0.5
        border_points = (border + jitter).clamp(min=torch.zeros(3, dtype=torch.float64), max=(dims - 1).double())
        points = torch.cat([border_points, uniform])
    else:
        if include_last_index:
            uniform = torch.floor(torch.rand(uniform_count, 3, generator=generator, dtype=torch.float64) * dims)
        else:
            uniform = torch.floor(torch.rand(uniform_count, 3, generator=generator, dtype=torch.float64) * (dims - 1))
        points = torch.cat([border.double(), uniform])
    points = points[torch.randperm(points.shape[0], generator=generator)]
    return points.to(torch.float32)  # [S, 3]


def nearest_voxel(coords: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Round `[.., 3]` coordinates to the nearest voxel index, clamped into the grid (int64)."""
    upper = torch.tensor([int(s) - 1 for s in shape], device=coords.device)
    return torch.round(coords).long().clamp(min=torch.zeros_like(upper), max=upper)


def labels_at(label: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Binary labels `[..., N, 1]` float32 of `label [..., D, H, W]` at the nearest voxel of `coords [..., N, 3]`."""
    shape = label.shape[-3:]
    index = nearest_voxel(coords, shape)
    flat = (index[..., 0] * shape[1] + index[..., 1]) * shape[2] + index[..., 2]  # [..., N]
    values = label.reshape(*label.shape[:-3], -1).gather(-1, flat.to(label.device))
    return (values > 0).to(torch.float32).unsqueeze(-1)


def gather_patches(volume: torch.Tensor, coords: torch.Tensor, large: bool = False) -> torch.Tensor:
    """Patches `[B, N, C·(1|2), 7, 7, 7]` around the nearest voxel of each coordinate, zero outside the grid.

    The small patch covers c−3..c+3; with `large`, the 14³ block c−7..c+6 is average-pooled 2× to 7³
    (zeros outside the grid count in the mean, as the original's zero padding) and stacked after the
    small channels. Runs on `volume.device`: the volume is zero-padded once, the large patches are
    read at stride 2 from its 2³ box average (equal to pooling each 14³ block, 8× less gathering),
    and points are gathered by flat index arithmetic in chunks so temporaries stay ~64 MiB.

    Args:
        volume: `[B, C, D, H, W]` model-grid volume.
        coords: `[B, N, 3]` voxel coordinates (float or int), order (i, j, k).
    """
    batch, channels, *shape = volume.shape
    centres = nearest_voxel(coords.to(volume.device), shape)  # [B, N, 3]
    margin = LARGE_PATCH // 2
    padded = F.pad(volume, [margin] * 6)  # [B, C, D+14, H+14, W+14]
    # Each source: flat volume, its grid, and the offsets of a patch's 7³ entries from a centre's flat index.
    small_steps = range(margin - 3, margin + 4)  # c−3..c+3 sit at padded c+margin−3..c+margin+3
    sources = [(padded.reshape(batch, channels, -1), padded.shape[2:], _offsets(small_steps, padded.shape[2:], volume.device))]
    if large:
        box = F.avg_pool3d(padded, kernel_size=2, stride=1)  # [B, C, D+13, H+13, W+13]; box[p] = mean(padded[p..p+1])
        large_steps = range(0, 2 * SMALL_PATCH, 2)  # box[c+2m] averages c−7+2m and c−6+2m per axis
        sources.append((box.reshape(batch, channels, -1), box.shape[2:], _offsets(large_steps, box.shape[2:], volume.device)))
    chunk = max(1, _GATHER_ELEMENTS // (channels * SMALL_PATCH**3 * len(sources)))
    out = volume.new_empty(batch, centres.shape[1], channels * len(sources), 7, 7, 7)
    for b in range(batch):
        for start in range(0, centres.shape[1], chunk):
            points = centres[b, start:start + chunk]  # [n, 3]
            for part, (flat, grid, offsets) in enumerate(sources):
                base = (points[:, 0] * grid[1] + points[:, 1]) * grid[2] + points[:, 2]  # [n]
                index = (base[:, None] + offsets).reshape(-1)  # [n·343]
                values = flat[b].index_select(1, index).reshape(channels, -1, 7, 7, 7).transpose(0, 1)
                out[b, start:start + chunk, part * channels:(part + 1) * channels] = values
    return out


def segmentation_target(label: torch.Tensor, output_shape: Sequence[int]) -> torch.Tensor:
    """Low-resolution target `[B, 1, *output_shape]`: 1 where any voxel of the cell is foreground."""
    foreground = (label > 0).to(torch.float32).unsqueeze(1)  # [B, 1, D, H, W]
    return F.adaptive_max_pool3d(foreground, tuple(int(s) for s in output_shape))


def _offsets(steps: range, grid: Sequence[int], device: torch.device) -> torch.Tensor:
    """Flat offsets `[343]` of the 7³ positions `steps`³ in a C-order grid of shape `grid`."""
    step = torch.tensor(list(steps), dtype=torch.int64)
    flat = (step[:, None, None] * grid[1] + step[None, :, None]) * grid[2] + step[None, None, :]
    return flat.reshape(-1).to(device)


def _unravel(flat_index: torch.Tensor, dims: torch.Tensor) -> torch.Tensor:
    """Flat C-order indices `[K]` → `[K, 3]` voxel indices."""
    k = flat_index % dims[2]
    j = (flat_index // dims[2]) % dims[1]
    i = flat_index // (dims[1] * dims[2])
    return torch.stack([i, j, k], dim=1)
