"""Shapes whose true surface is known in closed form, rendered as scans: the cases of `bench_resolution`.

A shape is a closed-form inside test in world millimetres (`AnalyticShape.inside`) and the exact distance
of any point to its surface (`surface_distance`: closed-form for the torus and the shell, the root of the
ellipsoid's one-dimensional closest-point equation, by bisection to float64 precision). Kinds:

- "ellipsoid": radii (a, b, c) along its own axes;
- "torus": major radius R (centre to tube centre) and minor radius r (the tube), around its own third axis;
- "shell": a hollow sphere, outer radius and wall thickness (2-3 voxels at 2 mm: thin).

Each is placed at a random centre with a random rotation. A case renders one shape on the input grid
(60×60×36 voxels of 2 mm, BraTS-like flipped axes, so the demo configuration's 64×64×40 model grid pads
it): each voxel's inside fraction (partial volume, from 4³ sub-voxel samples) mixes a background and an
object intensity per channel (four channels of different contrast, as the BraTS layout wants), plus
Gaussian noise; the label is the voxels at least half inside. The truth at any spacing is the inside test
at that grid's voxel centres (`truth_mask`).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from oss_net.data.layouts.brats import BRATS_MODALITIES, BRATS_TRAINING
from oss_net.geometry import SpacedGrid
from oss_net.io import atomic_save_nifti

KINDS = ("ellipsoid", "torus", "shell")
INPUT_SHAPE = (60, 60, 36)  # voxels of the rendered scan (padded onto the demo's 64×64×40 model grid)
INPUT_SPACING_MM = 2.0
SUPERSAMPLING = 4  # sub-voxel samples per axis for the partial-volume fractions
# Per channel (background, object) intensity: bright, dark, faint and bright objects on different backgrounds.
CHANNEL_CONTRAST = {"flair": (300.0, 900.0), "t1": (600.0, 250.0), "t1ce": (400.0, 650.0), "t2": (200.0, 800.0)}
NOISE_SD = 40.0  # Gaussian noise per voxel and channel (the object's contrast is 250-600)


@dataclass(frozen=True)
class AnalyticShape:
    """One shape in world mm: `kind` (see KINDS), `centre` [3], `rotation` 3×3 (columns: its own axes), `sizes`."""

    kind: str
    centre: tuple[float, float, float]
    rotation: tuple[tuple[float, float, float], ...]
    sizes: tuple[float, ...]

    def local(self, points: np.ndarray) -> np.ndarray:
        """World points [N, 3] in the shape's own frame [N, 3]."""
        return (np.asarray(points, dtype=np.float64) - np.asarray(self.centre)) @ np.asarray(self.rotation)

    def inside(self, points: np.ndarray) -> np.ndarray:
        """bool [N]: which world points [N, 3] lie inside (closed-form)."""
        p = self.local(points)
        if self.kind == "ellipsoid":
            return ((p / np.asarray(self.sizes)) ** 2).sum(axis=1) <= 1.0
        if self.kind == "torus":
            major, minor = self.sizes
            return (np.hypot(p[:, 0], p[:, 1]) - major) ** 2 + p[:, 2] ** 2 <= minor**2
        outer, thickness = self.sizes
        radius = np.linalg.norm(p, axis=1)
        return (radius <= outer) & (radius >= outer - thickness)

    @property
    def reach(self) -> float:
        """The largest distance in mm from the centre to a point of the shape."""
        return float(max(self.sizes) if self.kind != "torus" else sum(self.sizes))

    def surface_distance(self, points: np.ndarray) -> np.ndarray:
        """Exact distance in mm [N] from world points [N, 3] to the true surface."""
        p = self.local(points)
        if self.kind == "ellipsoid":
            return _ellipsoid_distance(p, np.asarray(self.sizes, dtype=np.float64))
        if self.kind == "torus":
            major, minor = self.sizes
            return np.abs(np.hypot(np.hypot(p[:, 0], p[:, 1]) - major, p[:, 2]) - minor)
        outer, thickness = self.sizes
        radius = np.linalg.norm(p, axis=1)
        return np.minimum(np.abs(radius - outer), np.abs(radius - (outer - thickness)))


def _ellipsoid_distance(p: np.ndarray, radii: np.ndarray, iterations: int = 64) -> np.ndarray:
    """Distance [N] from points p [N, 3] (the ellipsoid's frame) to the ellipsoid with `radii` [3].

    The closest point is x_i = a_i² p_i / (t + a_i²) for the root t > −min a_i² of
    F(t) = Σ (a_i p_i / (t + a_i²))² − 1, which decreases monotonically there (Eberly's formulation); the root is
    bracketed by (−min a_i², |p|·max a_i] and found by bisection. A point on the plane of the shortest axis
    (where that bracket degenerates: the centre of a sphere, say) is moved 1e-9 mm off it.
    """
    squares = radii**2
    shortest = int(np.argmin(radii))
    p = p.copy()
    p[:, shortest] = np.where(np.abs(p[:, shortest]) < 1e-9, 1e-9, p[:, shortest])
    low = np.full(len(p), -squares.min())
    high = np.maximum(np.linalg.norm(p, axis=1) * radii.max(), 1.0)
    for _ in range(iterations):
        middle = (low + high) / 2
        above = (((radii * p) / (middle[:, None] + squares)) ** 2).sum(axis=1) > 1.0
        low, high = np.where(above, middle, low), np.where(above, high, middle)
    t = (low + high) / 2
    closest = squares * p / (t[:, None] + squares)
    return np.linalg.norm(p - closest, axis=1)


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random rotation 3×3 (QR of a Gaussian matrix, signs fixed, det +1)."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else q[:, [1, 0, 2]]


def random_shape(kind: str, rng: np.random.Generator, affine: np.ndarray, shape: Sequence[int] = INPUT_SHAPE) -> AnalyticShape:
    """A shape of `kind` with random sizes and rotation, placed so that it stays 6 mm inside the grid's box."""
    if kind == "ellipsoid":
        sizes = tuple(float(v) for v in sorted(rng.uniform(7.0, 22.0, size=3)))
    elif kind == "torus":
        sizes = (float(rng.uniform(12.0, 20.0)), float(rng.uniform(3.5, 6.0)))
    elif kind == "shell":
        sizes = (float(rng.uniform(12.0, 22.0)), float(rng.uniform(4.0, 6.0)))
    else:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    reach = AnalyticShape(kind, (0.0, 0.0, 0.0), tuple(map(tuple, np.eye(3))), sizes).reach
    corners = np.asarray(list(itertools.product(*[(-0.5, n - 0.5) for n in shape]))) @ affine[:3, :3].T + affine[:3, 3]
    low, high = corners.min(axis=0) + reach + 6.0, corners.max(axis=0) - reach - 6.0
    centre = rng.uniform(low, np.maximum(high, low))
    return AnalyticShape(kind, tuple(float(c) for c in centre), tuple(map(tuple, random_rotation(rng))), sizes)


def case_affine(shape: Sequence[int] = INPUT_SHAPE, spacing_mm: float = INPUT_SPACING_MM) -> np.ndarray:
    """A BraTS-like affine: x and y flipped, `spacing_mm` voxels, the volume centred near the origin."""
    affine = np.diag([-spacing_mm, -spacing_mm, spacing_mm, 1.0])
    affine[:3, 3] = np.array([1.0, 1.0, -1.0]) * spacing_mm * (np.asarray(shape) - 1) / 2
    return affine


def voxel_centres_mm(affine: np.ndarray, shape: Sequence[int], offset: Sequence[float] = (0.0, 0.0, 0.0)) -> np.ndarray:
    """World positions [prod(shape), 3] of the voxel centres (+ `offset` in voxels) of a grid, C order."""
    axes = [np.arange(n, dtype=np.float64) + o for n, o in zip(shape, offset)]
    index = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    return index @ affine[:3, :3].T + affine[:3, 3]


def inside_fraction(shape: AnalyticShape, affine: np.ndarray, grid_shape: Sequence[int],
                    supersampling: int = SUPERSAMPLING) -> np.ndarray:
    """float32 [*grid_shape]: the share of each voxel inside the shape (partial volume). A voxel whose centre lies
    farther from the surface than its half diagonal is wholly inside or outside; the others count supersampling³
    sub-voxel samples."""
    centres = voxel_centres_mm(affine, grid_shape)
    fraction = shape.inside(centres).astype(np.float32)
    half_diagonal = 0.5 * float(np.linalg.norm(np.linalg.norm(affine[:3, :3], axis=0)))
    mixed = np.flatnonzero(shape.surface_distance(centres) < half_diagonal)
    steps = (np.arange(supersampling) + 0.5) / supersampling - 0.5  # sub-voxel offsets in voxels
    offsets = np.asarray(list(itertools.product(steps, repeat=3)))  # [s³, 3]
    samples = (centres[mixed, None, :] + (offsets @ affine[:3, :3].T)[None]).reshape(-1, 3)
    fraction[mixed] = shape.inside(samples).reshape(len(mixed), -1).mean(axis=1)
    return fraction.reshape(tuple(grid_shape))


def truth_mask(shape: AnalyticShape, grid: SpacedGrid) -> np.ndarray:
    """bool [*grid.shape]: the grid's voxels whose centres lie inside the shape (tested within its bounding box only)."""
    box = np.asarray(list(itertools.product(*[(c - shape.reach, c + shape.reach) for c in shape.centre])))  # [8, 3] mm
    corners = (box - grid.affine[:3, 3]) @ np.linalg.inv(grid.affine[:3, :3]).T  # voxel coordinates
    first = np.clip(np.floor(corners.min(axis=0)).astype(int), 0, np.asarray(grid.shape))
    last = np.clip(np.ceil(corners.max(axis=0)).astype(int) + 1, 0, np.asarray(grid.shape))
    mask = np.zeros(grid.shape, dtype=bool)
    size = tuple(int(n) for n in last - first)
    if min(size) > 0:
        origin = grid.affine.copy()
        origin[:3, 3] = grid.affine[:3, :3] @ first + grid.affine[:3, 3]
        mask[tuple(slice(a, b) for a, b in zip(first, last))] = shape.inside(voxel_centres_mm(origin, size)).reshape(size)
    return mask


def render_case(shape: AnalyticShape, affine: np.ndarray, rng: np.random.Generator,
                grid_shape: Sequence[int] = INPUT_SHAPE) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """({modality: float32 image [*grid_shape]}, uint8 label [*grid_shape]) of one shape (module docstring)."""
    fraction = inside_fraction(shape, affine, grid_shape)
    images = {}
    for modality in BRATS_MODALITIES:
        background, inside = CHANNEL_CONTRAST[modality]
        noise = rng.normal(0.0, NOISE_SD, size=fraction.shape)
        images[modality] = (background + (inside - background) * fraction + noise).astype(np.float32)
    return images, (fraction >= 0.5).astype(np.uint8)


def write_shape_cases(root: Path, shapes: Sequence[AnalyticShape], seed: int) -> Path:
    """The shapes as BraTS-layout cases under `root` (BraTS20_Training_001, ...), rendered on the input grid; `root`."""
    affine = case_affine()
    for number, shape in enumerate(shapes, start=1):
        images, label = render_case(shape, affine, np.random.default_rng([seed, number]))
        case_id = f"BraTS20_Training_{number:03d}"
        folder = Path(root) / BRATS_TRAINING / case_id
        folder.mkdir(parents=True, exist_ok=True)
        for modality, image in images.items():
            atomic_save_nifti(image, affine, folder / f"{case_id}_{modality}.nii.gz")
        atomic_save_nifti(label, affine, folder / f"{case_id}_seg.nii.gz")
    return Path(root)


def shape_series(count: int, seed: int, affine: np.ndarray | None = None) -> list[AnalyticShape]:
    """`count` random shapes cycling through KINDS (ellipsoid, torus, shell, ellipsoid, ...), from `seed`."""
    affine = case_affine() if affine is None else affine
    rng = np.random.default_rng(seed)
    return [random_shape(KINDS[index % len(KINDS)], rng, affine) for index in range(count)]
