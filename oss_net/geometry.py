"""Geometry that the data, the models and the metrics share: voxel spacing, nearest voxels, trilinear
stencils, the patch size, and the grid of an output at another spacing (`grid_at_spacing`).

A leaf module (it imports nothing of the packages but `oss_net.datasets` for its error), so
`oss_net.metrics` takes spacings and `oss_net.models` knows the patch size without importing
`oss_net.data`.
"""
from __future__ import annotations

import itertools
import math
from typing import Any, NamedTuple, Sequence

import numpy as np
import torch

from oss_net.datasets import DatasetError

PATCH_SIZE = 7  # every patch the decoder sees is 7³ voxels: small c−3..c+3, or large pooled to 7³
LARGE_PATCH_SIZE = 2 * PATCH_SIZE  # the large patch c−7..c+6 before its 2× average pooling
# How the 14³ large patch becomes 7³: "avg" (the original's training) or "max" (the original's inference).
LARGE_PATCH_POOLINGS = ("avg", "max")
# The eight corners of a trilinear stencil, offsets from its base voxel, in the order of `corner_weights`.
CORNER_OFFSETS: tuple[tuple[int, int, int], ...] = tuple(itertools.product((0, 1), repeat=3))


def spacing_from_affine(affine: Any) -> np.ndarray:
    """Voxel size in mm per array axis (i, j, k) `[3]` float64: the column norms of the affine's 3×3 part.

    Column c of the 3×3 block is the step in scanner millimetres for one voxel along array axis c, so its
    norm is that axis' spacing whatever the rotation or flip. `affine` is 4×4 (or its 3×4 / 3×3 part),
    numpy or torch; a singular one (an axis of length zero) is an error.
    """
    matrix = np.asarray(affine.detach().cpu() if isinstance(affine, torch.Tensor) else affine, dtype=np.float64)
    if matrix.shape not in ((4, 4), (3, 4), (3, 3)):
        raise DatasetError(f"affine must be 4×4 (or its 3×4 / 3×3 part), got shape {matrix.shape}")
    norms = np.linalg.norm(matrix[:3, :3], axis=0)
    if not np.all(norms > 0):
        raise DatasetError(f"affine is singular: an axis has zero length ({list(norms)})")
    return norms


def nearest_voxel(coords: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Round `[.., 3]` coordinates to the nearest voxel index, clamped into the grid (int64)."""
    upper = torch.tensor([int(s) - 1 for s in shape], device=coords.device)
    return torch.round(coords).long().clamp(min=torch.zeros_like(upper), max=upper)


def trilinear_stencil(coords: torch.Tensor, shape: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(base [.., 3] int64, fraction [.., 3]) of `coords [.., 3]` clamped into the grid of `shape`.

    coords = base + fraction with 0 <= fraction < 1, and base + 1 lies inside the grid wherever the fraction
    is above 0, so the eight corners of a stencil with non-zero weight are voxels of the grid. Integer
    coordinates (any dtype) give their own voxel and fraction 0 exactly; beyond the outer voxel centres the
    edge value holds (the clamp), as trilinear resampling with align_corners=False does. The fraction is
    float (the coordinates' dtype, or float32 for integer ones).
    """
    upper = torch.tensor([int(s) - 1 for s in shape], device=coords.device)
    if not coords.is_floating_point():
        base = coords.long().clamp(min=torch.zeros_like(upper), max=upper)
        return base, torch.zeros(base.shape, dtype=torch.float32, device=coords.device)
    clamped = torch.maximum(torch.minimum(coords, upper.to(coords.dtype)), torch.zeros((), dtype=coords.dtype, device=coords.device))
    base = torch.floor(clamped).long()
    return base, clamped - base.to(coords.dtype)


def corner_weights(fraction: torch.Tensor) -> torch.Tensor:
    """Trilinear weights [.., 8] of the corners `CORNER_OFFSETS` of stencils with `fraction [.., 3]`; they sum to 1,
    and a fraction of 0 gives exactly 1 at the base corner and 0 elsewhere."""
    low, high = 1 - fraction, fraction  # [.., 3] each: the weight of offset 0 and of offset 1 per axis
    return torch.stack([(high if i else low)[..., 0] * (high if j else low)[..., 1] * (high if k else low)[..., 2]
                        for i, j, k in CORNER_OFFSETS], dim=-1)


class SpacedGrid(NamedTuple):
    """A grid covering the same box of voxel corners as an input grid, at another spacing (`grid_at_spacing`).

    shape: voxels per input array axis (i, j, k). affine: 4×4 voxel→mm matrix: the input's axis directions
    and order, each column scaled to the new spacing. spacing: mm per axis (the column norms of `affine`).
    input_shape: the input grid's shape, for `to_input_voxel`.
    """

    shape: tuple[int, int, int]
    affine: np.ndarray
    spacing: tuple[float, float, float]
    input_shape: tuple[int, int, int]

    @property
    def scale(self) -> np.ndarray:
        """Input voxels per voxel of this grid, per axis `[3]` (input size / this size)."""
        return np.asarray(self.input_shape, dtype=np.float64) / np.asarray(self.shape, dtype=np.float64)

    def to_input_voxel(self, points: Any) -> Any:
        """Voxel coordinates of this grid `[.., 3]` → input-grid voxel coordinates `[.., 3]` (numpy or torch, float):
        centres map through (u + 0.5)·scale − 0.5, so the outer corners (u = −0.5 and size − 0.5) meet the input's."""
        scale = self.scale
        if isinstance(points, torch.Tensor):
            scale = torch.as_tensor(scale, dtype=points.dtype if points.is_floating_point() else torch.float64,
                                    device=points.device)
        return (points + 0.5) * scale - 0.5


def grid_at_spacing(affine: Any, shape: Sequence[int], spacing: float | Sequence[float]) -> SpacedGrid:
    """The grid covering the same world box as the grid (`affine` 4×4, `shape` (i, j, k)) at `spacing` mm.

    `spacing` is one number (isotropic) or three (per array axis i, j, k). Each axis gets
    n = max(1, round(extent / spacing)) voxels, extent = size × input spacing; the box of voxel corners is
    kept exactly, so the spacing is extent / n: the one asked for when it divides the extent (2 mm → 0.5 mm
    always does), else the nearest value that does. Axis order, directions and flips are the input's (an
    oblique affine stays oblique): only each column's length and the origin change.
    """
    input_shape = tuple(int(n) for n in shape)
    if len(input_shape) != 3 or min(input_shape) < 1:
        raise DatasetError(f"a grid needs three positive sizes, got {tuple(shape)}")
    try:
        values = np.asarray(spacing, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        values = np.zeros(0)
    if values.size not in (1, 3) or not np.all(np.isfinite(values)) or not np.all(values > 0):
        raise DatasetError(f"an output spacing is one number or three, each > 0 mm; got {spacing!r}")
    wanted = np.broadcast_to(values, (3,))
    matrix = np.asarray(affine, dtype=np.float64)
    extent = spacing_from_affine(matrix) * np.asarray(input_shape, dtype=np.float64)  # [3] mm per axis
    sizes = tuple(max(1, int(math.floor(e / w + 0.5))) for e, w in zip(extent, wanted))
    scale = np.asarray(input_shape, dtype=np.float64) / np.asarray(sizes, dtype=np.float64)  # input voxels per voxel
    fine = np.eye(4)
    fine[:3, :3] = matrix[:3, :3] * scale[None, :]
    fine[:3, 3] = matrix[:3, :3] @ (0.5 * scale - 0.5) + matrix[:3, 3]  # voxel 0's centre, half a voxel in from the corner
    return SpacedGrid(sizes, fine, tuple(float(v) for v in extent / np.asarray(sizes)), input_shape)
