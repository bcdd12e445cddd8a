"""Area-weighted surface elements ("surfels"): the NSD definition of Google DeepMind's `surface-distance`.

That definition (Nikolov et al. 2018; FLARE21 reported it) does not count surface voxels. It looks
at every 2×2×2 cell of voxel centres: a cell whose eight corners are neither all inside nor all
outside holds a piece of the boundary, a surfel, located at the cell (half a voxel off the voxel
lattice) and weighted by the area in mm² of the marching-cubes surface inside the cell. Surface
distances are taken between surfel positions (an exact EDT in mm), and NSD is the inside-tolerance
share of the total surfel *area* of both masks.

The area per corner pattern comes from the classic (Lorensen) marching-cubes triangulation of the
cell, or of its complement when more than four corners are inside: that is the table the package
ships (it differs from a plain marching-cubes area on the ambiguous patterns), rebuilt here from
scikit-image so no table is copied. A test checks the result against the package to 1e-6.
"""
from __future__ import annotations

import functools
from typing import Any, Sequence

import numpy as np
from scipy import ndimage
from skimage.measure import marching_cubes, mesh_surface_area

from oss_net.metrics.masks import as_pair, check_spacing
from oss_net.metrics.surface import NSD_TOLERANCE_MM, check_tolerance

CORNER_BITS = 1 << np.arange(7, -1, -1).reshape(2, 2, 2)  # corner (a, b, c) of a cell → bit 7 − (4a + 2b + c)


@functools.lru_cache(maxsize=16)
def surfel_area_table(spacing: tuple[float, float, float]) -> np.ndarray:
    """Area in mm² of the surface inside one cell, for each of the 256 corner patterns [256]."""
    table = np.zeros(256)
    for code in range(1, 255):
        corners = ((code & CORNER_BITS) > 0).astype(np.float64)  # [2, 2, 2]
        if corners.sum() > 4:
            corners = 1.0 - corners
        # In unit steps the vertices sit exactly on 0, 0.5 or 1; the spacing is applied in float64.
        vertices, faces, _, _ = marching_cubes(corners, 0.5, method="lorensen")
        table[code] = mesh_surface_area(vertices.astype(np.float64) * np.asarray(spacing), faces)
    return table


def cell_codes(mask: np.ndarray) -> np.ndarray:
    """Corner pattern of every 2×2×2 cell of voxel centres, the array border counted as outside.

    `mask [D, H, W]` → uint8 `[D + 1, H + 1, W + 1]`; cell (i, j, k) has the voxels i−1..i, j−1..j,
    k−1..k as corners.
    """
    padded = np.pad(mask, 1).astype(np.uint8)
    codes = np.zeros(tuple(n + 1 for n in mask.shape), dtype=np.uint8)
    for (a, b, c), bit in np.ndenumerate(CORNER_BITS):
        codes |= padded[a : a + codes.shape[0], b : b + codes.shape[1], c : c + codes.shape[2]] * np.uint8(bit)
    return codes


def surfel_distances(
    pred: Any, target: Any, spacing: Sequence[float] | np.ndarray
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]] | None:
    """((pred surfel → target distances, pred surfel areas), (target → pred, target areas)) in mm / mm².

    None when exactly one mask is empty; both empty gives four empty vectors.
    """
    pred_mask, target_mask = as_pair(pred, target)
    sampling = check_spacing(spacing, pred_mask.ndim)
    has_pred, has_target = bool(pred_mask.any()), bool(target_mask.any())
    if has_pred != has_target:
        return None
    if not has_pred:
        empty = (np.zeros(0), np.zeros(0))
        return empty, empty
    box = tuple(slice(int(idx.min()), int(idx.max()) + 1) for idx in np.nonzero(pred_mask | target_mask))
    table = surfel_area_table(tuple(float(s) for s in sampling))
    codes = [cell_codes(mask[box]) for mask in (pred_mask, target_mask)]
    surfels = [(code != 0) & (code != 255) for code in codes]
    # EDT of the complement: every cell's distance in mm to the nearest surfel of that mask.
    to_surface = [ndimage.distance_transform_edt(~surfel, sampling=sampling) for surfel in surfels]
    pred_side = (to_surface[1][surfels[0]], table[codes[0][surfels[0]]])
    target_side = (to_surface[0][surfels[1]], table[codes[1][surfels[1]]])
    return pred_side, target_side


def nsd_surfel(pred: Any, target: Any, spacing: Sequence[float] | np.ndarray,
               tolerance_mm: float = NSD_TOLERANCE_MM) -> float:
    """NSD at `tolerance_mm`, area-weighted over surfels (the `surface-distance` package's definition).

    (pred surfel area within the tolerance of the target surface + target surfel area within the
    tolerance of the pred surface) / (total surfel area of both); distances `<=` the tolerance count.
    Same empty-mask convention as `nsd`: both empty → 1.0, exactly one empty → 0.0.
    """
    check_tolerance(tolerance_mm)
    sides = surfel_distances(pred, target, spacing)
    if sides is None:
        return 0.0
    total = sum(float(areas.sum()) for _, areas in sides)
    if total == 0:
        return 1.0
    within = sum(float(areas[distances <= tolerance_mm].sum()) for distances, areas in sides)
    return within / total
