"""Geometry that the data, the models and the metrics share: voxel spacing, nearest voxels, the patch size.

A leaf module (it imports nothing of the packages but `oss_net.datasets` for its error), so
`oss_net.metrics` takes spacings and `oss_net.models` knows the patch size without importing
`oss_net.data`.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from oss_net.datasets import DatasetError

PATCH_SIZE = 7  # every patch the decoder sees is 7³ voxels: small c−3..c+3, or large pooled to 7³
LARGE_PATCH_SIZE = 2 * PATCH_SIZE  # the large patch c−7..c+6 before its 2× average pooling
# How the 14³ large patch becomes 7³: "avg" (the original's training) or "max" (the original's inference).
LARGE_PATCH_POOLINGS = ("avg", "max")


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
