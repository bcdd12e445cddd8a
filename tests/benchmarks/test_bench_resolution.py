"""benchmarks/analytic_shapes.py and bench_resolution.py: closed-form truth, partial volumes, the smoke run."""
from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks import bench_resolution
from benchmarks.analytic_shapes import (
    INPUT_SHAPE, KINDS, AnalyticShape, case_affine, inside_fraction, random_shape, render_case, truth_mask,
)
from oss_net.geometry import grid_at_spacing

IDENTITY = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))


def _volume(shape: AnalyticShape) -> float:
    """The closed-form volume in mm³."""
    if shape.kind == "ellipsoid":
        return 4 / 3 * np.pi * np.prod(shape.sizes)
    if shape.kind == "torus":
        return 2 * np.pi**2 * shape.sizes[0] * shape.sizes[1] ** 2
    outer, thickness = shape.sizes
    return 4 / 3 * np.pi * (outer**3 - (outer - thickness) ** 3)


@pytest.mark.parametrize("kind", KINDS)
def test_partial_volumes_and_fine_truth_hold_the_closed_form_volume(kind):
    affine = case_affine()
    shape = random_shape(kind, np.random.default_rng(3), affine)
    coarse = inside_fraction(shape, affine, INPUT_SHAPE).sum() * 8.0  # 2 mm voxels
    fine = truth_mask(shape, grid_at_spacing(affine, INPUT_SHAPE, 1.0)).sum() * 1.0
    assert coarse == pytest.approx(_volume(shape), rel=0.01) and fine == pytest.approx(_volume(shape), rel=0.03)
    images, label = render_case(shape, affine, np.random.default_rng(0))
    assert set(images) == {"flair", "t1", "t1ce", "t2"} and label.shape == INPUT_SHAPE
    assert label.sum() * 8.0 == pytest.approx(_volume(shape), rel=0.15)


def test_surface_distances_are_exact():
    sphere = AnalyticShape("ellipsoid", (1.0, 2.0, 3.0), IDENTITY, (5.0, 5.0, 5.0))
    points = np.array([[1.0, 2.0, 3.0], [11.0, 2.0, 3.0], [1.0, 4.0, 3.0]])
    assert sphere.surface_distance(points) == pytest.approx([5.0, 5.0, 3.0])
    ellipsoid = AnalyticShape("ellipsoid", (0.0, 0.0, 0.0), IDENTITY, (2.0, 4.0, 8.0))
    # (0, 1, 0): on the shortest axis' plane; the nearest point of x²/4 + y²/16 = 1 has sin θ = 1/3: √33 / 3
    distances = ellipsoid.surface_distance(np.array([[0.0, 0.0, 10.0], [3.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
    assert distances == pytest.approx([2.0, 1.0, np.sqrt(33) / 3])
    torus = AnalyticShape("torus", (0.0, 0.0, 0.0), IDENTITY, (10.0, 2.0))
    assert torus.surface_distance(np.array([[10.0, 0.0, 0.0], [0.0, 15.0, 0.0], [0.0, 0.0, 0.0]])) == pytest.approx([2.0, 3.0, 8.0])
    shell = AnalyticShape("shell", (0.0, 0.0, 0.0), IDENTITY, (10.0, 3.0))
    assert shell.surface_distance(np.array([[0.0, 8.0, 0.0], [0.0, 0.0, 0.0], [12.0, 0.0, 0.0]])) == pytest.approx([1.0, 7.0, 2.0])
    assert list(shell.inside(np.array([[0.0, 8.0, 0.0], [0.0, 0.0, 0.0]]))) == [True, False]


@pytest.mark.slow
def test_smoke_run_writes_the_table_and_the_picture(results_dir):
    result = bench_resolution.run("cpu", smoke=True)
    written = json.loads((results_dir / "resolution.json").read_text())
    assert written["columns"][:2] == ["training", "method"]
    assert {(row["training"], row["method"]) for row in written["rows"]} >= {
        (training, method) for training in ("voxel_centres", "continuous")
        for method in ("trilinear_upsampling", "nearest_upsampling")}
    assert all({"dice", "msd_mm", "hd95_mm", "seconds"} <= set(row) for row in result["rows"])
    assert (results_dir / "resolution.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
