"""Meshing test fixtures: one torch thread (the refinement's tiny ops slow down badly when two
threads compete with other test processes on a 2-core machine), and a voxelised sphere."""
from __future__ import annotations

from typing import Iterator

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def single_torch_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _sphere_grid(shape: tuple[int, int, int], affine: np.ndarray, radius_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Binary float grid [*shape] of a ball of `radius_mm` around the affine image of the grid
    centre (tested on voxel centres in mm), and that centre in mm [3]."""
    index = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1)  # [D, H, W, 3]
    points = index @ affine[:3, :3].T + affine[:3, 3]
    centre = (np.asarray(shape) - 1) / 2 @ affine[:3, :3].T + affine[:3, 3] + 0.3  # off the voxel lattice
    return (np.linalg.norm(points - centre, axis=-1) < radius_mm).astype(np.float32), centre


def _make_affine(spacing: tuple[float, float, float], origin: tuple[float, float, float], rotate: bool) -> np.ndarray:
    """4×4 voxel → mm affine; `rotate` adds a rotation and a mirror (det < 0), as LPS/RAS flips do."""
    affine = np.eye(4)
    rotation = np.eye(3)
    if rotate:
        angle = 0.5
        rotation = np.array(
            [[np.cos(angle), 0.0, np.sin(angle)], [0.0, -1.0, 0.0], [-np.sin(angle), 0.0, np.cos(angle)]]
        )
    affine[:3, :3] = rotation @ np.diag(spacing)
    affine[:3, 3] = origin
    return affine


@pytest.fixture
def sphere_grid():
    """The `_sphere_grid` helper (fixtures, so test modules need not import this conftest)."""
    return _sphere_grid


@pytest.fixture
def make_affine():
    """The `_make_affine` helper."""
    return _make_affine
