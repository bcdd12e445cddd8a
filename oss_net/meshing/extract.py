"""Surface meshes from occupancy probability grids, in scanner millimetres.

The steps, in order, each one comment in `extract_mesh`: binarise and drop small components →
zero-pad one voxel (closed surfaces at the grid border) → marching cubes at `level` → undo the pad →
voxel indices to mm through the affine → quadric decimation to a face budget sized from the
surface area (a target edge length) → clean-up and outward normals. The original stored its meshes in padded voxel indices; `affine=None` keeps that
frame (without the pad offset) for comparison.
"""
from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import trimesh
from scipy import ndimage
from skimage.measure import marching_cubes

from oss_net.meshing.decimate import clean, decimate, face_budget_for_edge
from oss_net.meshing.errors import MeshingError

logger = logging.getLogger(__name__)

MESH_EDGE_MM = 2.0  # target edge length of a written mesh: ~1.7 mm² per face
MIN_COMPONENT_VOXELS = 12**3  # the original's smallest kept component


def _as_grid(probabilities: Any) -> np.ndarray:
    """A float32 numpy [D, H, W] grid from numpy or torch, or a MeshingError."""
    if hasattr(probabilities, "detach"):
        probabilities = probabilities.detach().float().cpu().numpy()
    grid = np.asarray(probabilities, dtype=np.float32)
    if grid.ndim != 3:
        raise MeshingError(f"probabilities must be a 3-D grid [D, H, W], got shape {grid.shape}")
    if not np.all(np.isfinite(grid)):
        raise MeshingError("probabilities contain NaN or infinite values")
    return grid


def _as_affine(affine: Any) -> np.ndarray | None:
    """The affine as a float64 4×4 with an invertible 3×3 part, None kept, else a MeshingError."""
    if affine is None:
        return None
    matrix = np.asarray(affine.detach().cpu() if hasattr(affine, "detach") else affine, dtype=np.float64)
    if matrix.shape != (4, 4) or not np.all(np.isfinite(matrix)):
        raise MeshingError(f"affine must be a finite 4×4 matrix, got shape {matrix.shape}")
    if abs(np.linalg.det(matrix[:3, :3])) < 1e-12:
        raise MeshingError("affine is singular: its 3×3 part has determinant 0")
    return matrix


def _check_options(level: float, edge_mm: float | None, face_budget: int | None) -> None:
    """A MeshingError for a level the zero pad would not be outside of, or a bad budget."""
    if not (math.isfinite(level) and level > 0):
        raise MeshingError(f"level must be a finite number > 0 (the zero pad must be outside), got {level}")
    if face_budget is not None and face_budget < 4:
        raise MeshingError(f"face_budget must be at least 4 (a closed surface), got {face_budget}")
    if edge_mm is not None and not (math.isfinite(edge_mm) and edge_mm > 0):
        raise MeshingError(f"edge_mm must be a finite number > 0, got {edge_mm}")


def remove_small_components(mask: np.ndarray, min_voxels: int) -> np.ndarray:
    """Boolean [D, H, W]: `mask` without its connected components of fewer than `min_voxels` voxels.

    Components are 6-connected (face neighbours, scipy's default and the original's choice): two
    voxels that touch only along an edge or at a corner belong to different components. This is
    the stricter choice, so thin diagonal bridges do not keep a speck of noise alive.
    """
    if min_voxels <= 1:
        return mask
    labels, _ = ndimage.label(mask)
    sizes = np.bincount(labels.ravel())
    too_small = sizes < min_voxels
    too_small[0] = False  # label 0 is the background
    return mask & ~too_small[labels]


def extract_mesh(
    probabilities: Any,
    affine: Any | None,
    level: float = 0.5,
    min_component_voxels: int = MIN_COMPONENT_VOXELS,
    edge_mm: float | None = MESH_EDGE_MM,
    face_budget: int | None = None,
) -> trimesh.Trimesh:
    """Triangle mesh of the `level` isosurface of a probability grid, in scanner mm.

    Args:
        probabilities: occupancy probabilities [D, H, W] (numpy or torch), on the grid that
            `affine` describes (for inference: the model grid, with `writers.model_grid_affine`, so
            vertices land in scanner mm).
        affine: 4×4 voxel-index → scanner-mm matrix (NIfTI convention, index (i, j, k) in array
            order), or None for vertices in voxel indices (the original's frame, without its pad).
        level: isosurface value; voxels above it are inside. Must be > 0 (the zero pad is outside).
        min_component_voxels: smaller 6-connected components of `probabilities > level` are dropped.
        edge_mm: target edge length (mm; voxels without affine): the face budget is the number of
            equilateral triangles of that edge covering the surface (`face_budget_for_edge`).
        face_budget: an upper limit on that budget. Either may be None; both None: no decimation.

    Returns a `trimesh.Trimesh` with consistent winding and outward normals, watertight whenever the
    input grid gives a closed surface (always, thanks to the pad; `decimate` exceeds the budget
    rather than open it). An empty grid (nothing above `level` after component removal) gives an
    **empty mesh** (0 vertices, 0 faces; `mesh.is_empty` is True) and an info log, so a case
    without a prediction does not stop a whole inference run.
    """
    grid = _as_grid(probabilities)
    matrix = _as_affine(affine)
    _check_options(level, edge_mm, face_budget)

    # Binarise at the level and zero every voxel of a too-small component, so no surface forms there.
    inside = grid > level
    kept = remove_small_components(inside, min_component_voxels)
    if not kept.any():
        logger.info("no voxel above level %.3g after component removal: empty mesh", level)
        return trimesh.Trimesh(vertices=np.zeros((0, 3)), faces=np.zeros((0, 3), dtype=np.int64))
    grid = np.where(inside & ~kept, np.float32(0), grid)

    # One voxel of zeros on every side, so objects touching the border still give closed surfaces.
    padded = np.pad(grid, 1, mode="constant", constant_values=0)
    vertices, faces, _, _ = marching_cubes(padded, level=level, allow_degenerate=False)  # [V, 3], [F, 3]
    # skimage returns positions in padded index units (no half-voxel shift): undo the pad.
    vertices = vertices.astype(np.float64) - 1.0
    # skimage winds faces left-handed for "object above level": reverse them for outward normals.
    faces = faces[:, ::-1]
    if matrix is not None:
        # Voxel index (i, j, k) → scanner mm; a mirroring affine (det < 0) flips the winding back.
        vertices = vertices @ matrix[:3, :3].T + matrix[:3, 3]
        if np.linalg.det(matrix[:3, :3]) < 0:
            faces = faces[:, ::-1]
    mesh = clean(trimesh.Trimesh(vertices=vertices, faces=np.ascontiguousarray(faces), process=False))

    # Decimate in mm, so the quadric error is a physical distance even on anisotropic grids.
    budgets = [b for b in (face_budget_for_edge(mesh.area, edge_mm) if edge_mm else None, face_budget) if b is not None]
    if budgets:
        mesh = decimate(mesh, min(budgets))
    # A safety net after decimation: consistent winding, outward per body when it is closed.
    trimesh.repair.fix_normals(mesh, multibody=True)
    return mesh
