"""Geometry that the data, the models and the metrics share: voxel spacing, nearest voxels, trilinear
stencils, the patch size, the grid of an output at another spacing (`grid_at_spacing`), and the one
check of a file's voxel→mm affine (`header_affine`).

A leaf module (it imports nothing of the packages but `oss_net.datasets` for its error), so
`oss_net.metrics` takes spacings and `oss_net.models` knows the patch size without importing
`oss_net.data`.

A NIfTI header holds two affines, the qform (a rotation, a flip and the spacing) and the sform (any
affine), each with a code saying whether it is set. `header_affine` takes the one that is set (the sform
when both are, as nibabel does), refuses a pair that disagrees unless the user chose one (`--prefer`,
`preferred_affine`), and refuses an affine that is no voxel grid: NaN or Inf, a zero or non-finite
spacing, a zero determinant or (nearly) parallel axes. Every problem names the file.
"""
from __future__ import annotations

import argparse
import contextlib
import itertools
import math
import os
from typing import Any, Iterator, NamedTuple, Sequence

import numpy as np
import torch

from oss_net.datasets import DatasetError

PATCH_SIZE = 7  # every patch the decoder sees is 7³ voxels: small c−3..c+3, or large pooled to 7³
LARGE_PATCH_SIZE = 2 * PATCH_SIZE  # the large patch c−7..c+6 before its 2× average pooling
# How the 14³ large patch becomes 7³: "avg" (the original's training) or "max" (the original's inference).
LARGE_PATCH_POOLINGS = ("avg", "max")
# The eight corners of a trilinear stencil, offsets from its base voxel, in the order of `corner_weights`.
CORNER_OFFSETS: tuple[tuple[int, int, int], ...] = tuple(itertools.product((0, 1), repeat=3))
AFFINE_SOURCES = ("sform", "qform")  # `--prefer`: which of a header's two affines to use when they disagree
PREFER_VARIABLE = "OSS_NET_PREFER_AFFINE"  # the choice for this process and its workers (`preferred_affine`)
# Condition number of an affine's unit axis directions above which two axes are (nearly) parallel: two
# directions at an angle θ give cot(θ/2), so 100 is about 1.1°. Orthogonal axes give 1, a 30° gantry tilt 1.7.
MAX_AXIS_CONDITION = 100.0
AFFINE_AGREEMENT_MM = 1e-3  # qform and sform agree when every entry differs by less (the qform is stored as float32)
FIX_AFFINE = "fix the file's affine or re-export it"


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


def affine_problem(affine: Any) -> str | None:
    """What makes a 4×4 voxel→mm affine no usable voxel grid, in words (None when it is one).

    NaN or Inf entries, a zero or non-finite spacing (a column of length zero), a zero determinant, or axis
    directions so close to parallel (condition number above `MAX_AXIS_CONDITION`) that the grid has no volume.
    """
    matrix = np.asarray(affine, dtype=np.float64)
    if not np.isfinite(matrix).all():
        return "affine holds NaN or Inf"
    spacing = np.linalg.norm(matrix[:3, :3], axis=0)
    if not np.all(spacing > 0):
        shown = ", ".join(f"{s:g}" for s in spacing)
        return f"affine is singular: voxel spacing ({shown}) mm has a zero axis"
    determinant = float(np.linalg.det(matrix[:3, :3]))
    condition = float(np.linalg.cond(matrix[:3, :3] / spacing))
    if determinant == 0.0 or not np.isfinite(condition) or condition > MAX_AXIS_CONDITION:
        return (f"affine is degenerate: two of its axes are (nearly) parallel (determinant {determinant:.3g}, "
                f"condition {condition:.3g} of its axis directions, at most {MAX_AXIS_CONDITION:g})")
    return None


def header_affine(source: Any, qform: Any, qform_code: int, sform: Any, sform_code: int, fallback: Any,
                  prefer: str | None = None) -> np.ndarray:
    """The checked voxel→mm affine of a NIfTI header `[4, 4]` float64; DatasetError naming `source` otherwise.

    qform/sform: the header's two affines (None or a code of 0: not set); fallback: the affine of a header
    that sets neither (nibabel's base affine from the spacing). Both set and disagreeing is an error unless
    `prefer` (one of AFFINE_SOURCES) picks one; `prefer` names the one to use whenever it is set.
    """
    forms = {name: np.asarray(matrix, dtype=np.float64) for name, matrix, code in
             (("sform", sform, sform_code), ("qform", qform, qform_code)) if matrix is not None and code > 0}
    if prefer is not None and prefer not in AFFINE_SOURCES:
        raise DatasetError(f"--prefer {prefer!r}: expected one of {', '.join(AFFINE_SOURCES)}")
    if len(forms) == 2 and prefer is None and not _forms_agree(forms["sform"], forms["qform"]):
        raise DatasetError(f"{source}: qform and sform disagree ({_difference(forms['qform'], forms['sform'])}); "
                           f"pass --prefer sform or --prefer qform to choose one, or {FIX_AFFINE}")
    name = prefer if prefer in forms else next(iter(forms), None)
    chosen = forms[name] if name is not None else np.asarray(fallback, dtype=np.float64)
    problem = affine_problem(chosen)
    if problem is not None:
        which = f"{name} " if name is not None else ""
        raise DatasetError(f"{source}: {which}{problem} ({FIX_AFFINE})")
    return chosen


def _forms_agree(sform: np.ndarray, qform: np.ndarray) -> bool:
    return bool(np.isfinite(sform).all() and np.isfinite(qform).all()
                and np.abs(sform - qform).max() < AFFINE_AGREEMENT_MM)


def _difference(qform: np.ndarray, sform: np.ndarray) -> str:
    """How the qform differs from the sform, in words: a mirror image (e.g. a left-right flip), or by how much."""
    with np.errstate(all="ignore"):
        mirrored = np.sign(np.linalg.det(qform[:3, :3])) != np.sign(np.linalg.det(sform[:3, :3]))
        largest = float(np.nanmax(np.abs(qform - sform)))
    if mirrored:
        return "one is the mirror image of the other, e.g. a left-right flip"
    return f"entries differ by up to {largest:.3g}"


def add_prefer_flag(parser: argparse.ArgumentParser, default: str | None = None) -> None:
    """`--prefer sform|qform` of every command that reads images (check, training, inference, predict)."""
    parser.add_argument("--prefer", choices=AFFINE_SOURCES, default=default,
                        help="use this affine of a NIfTI file whose qform and sform disagree (default: refuse such "
                             "a file)")


def affine_preference() -> str | None:
    """The affine `--prefer` chose for this process (None: the file's own, refused when its two disagree)."""
    return os.environ.get(PREFER_VARIABLE) or None


@contextlib.contextmanager
def preferred_affine(prefer: str | None) -> Iterator[None]:
    """Within the block every file's affine is its `prefer` form (see `header_affine`); None leaves the choice
    as it is. Held in the environment, so DataLoader workers (forked or spawned) read files the same way."""
    if prefer is None:
        yield
        return
    if prefer not in AFFINE_SOURCES:
        raise DatasetError(f"--prefer {prefer!r}: expected one of {', '.join(AFFINE_SOURCES)}")
    before = os.environ.get(PREFER_VARIABLE)
    os.environ[PREFER_VARIABLE] = prefer
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(PREFER_VARIABLE, None)
        else:
            os.environ[PREFER_VARIABLE] = before
