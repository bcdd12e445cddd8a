"""Area-weighted NSD (`nsd_surfel`): Google DeepMind's `surface-distance` numbers, areas, conventions."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from skimage.measure import marching_cubes, mesh_surface_area

from oss_net.metrics import (
    MetricError,
    evaluate_case,
    nsd,
    nsd_surfel,
    surfel_area_table,
    surfel_distances,
    volumes_ml,
)

SPACING = (0.8, 1.0, 2.5)


def blob(shape: tuple[int, int, int], seed: int, threshold: float = 0.05) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(size=shape)
    return ndimage.gaussian_filter(noise, 2.0) > threshold


def pair(seed: int) -> tuple[np.ndarray, np.ndarray]:
    pred = blob((32, 28, 16), seed)
    target = blob((32, 28, 16), seed + 50) | (pred & (np.random.default_rng(seed).random(pred.shape) > 0.3))
    return pred, target


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the package uses scipy.ndimage.morphology
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("spacing", [SPACING, (1.0, 1.0, 1.0), (2.0, 0.7, 1.3)])
def test_agreement_with_deepmind_surface_distance(seed: int, spacing: tuple[float, float, float]) -> None:
    surface_distance = pytest.importorskip("surface_distance")
    pred, target = pair(seed)
    distances = surface_distance.compute_surface_distances(target, pred, spacing)  # (gt, pred) order
    for tolerance in (0.0, 1.0, 2.5):
        expected = surface_distance.compute_surface_dice_at_tolerance(distances, tolerance)
        assert nsd_surfel(pred, target, spacing, tolerance) == pytest.approx(expected, abs=1e-6)
    ours = surfel_distances(pred, target, spacing)
    assert ours is not None
    np.testing.assert_allclose(np.sort(ours[0][0]), distances["distances_pred_to_gt"], atol=1e-9)
    assert ours[1][1].sum() == pytest.approx(distances["surfel_areas_gt"].sum(), rel=1e-9)


def test_surfel_area_of_a_box_equals_its_marching_cubes_area() -> None:
    # A box has no ambiguous cell, so the cell areas add up to the whole marching-cubes surface.
    box = np.zeros((9, 8, 7), dtype=bool)
    box[2:7, 2:5, 1:6] = True
    sides = surfel_distances(box, box, SPACING)
    assert sides is not None
    vertices, faces, _, _ = marching_cubes(np.pad(box, 1).astype(np.float64), 0.5, method="lorensen")
    expected = mesh_surface_area(vertices * np.asarray(SPACING), faces)
    assert sides[0][1].sum() == pytest.approx(expected, rel=1e-9)
    assert np.all(sides[0][0] == 0.0) and nsd_surfel(box, box, SPACING) == 1.0


def test_area_table_is_symmetric_under_complement() -> None:
    table = surfel_area_table(SPACING)
    assert table[0] == table[255] == 0.0
    np.testing.assert_allclose(table, table[::-1], rtol=1e-12)  # inside and outside share one surface
    corner = table[1]  # one corner inside: a triangle through three edge midpoints
    half_edges = np.asarray(SPACING) / 2
    expected = 0.5 * np.linalg.norm(np.cross([-half_edges[0], half_edges[1], 0], [-half_edges[0], 0, half_edges[2]]))
    assert corner == pytest.approx(expected, rel=1e-12)


def test_surfel_nsd_conventions_and_difference_from_voxel_nsd() -> None:
    empty = np.zeros((8, 8, 8), dtype=bool)
    full = empty.copy()
    full[2:6, 2:6, 2:6] = True
    assert nsd_surfel(empty, empty, SPACING) == 1.0
    assert nsd_surfel(full, empty, SPACING) == 0.0 and nsd_surfel(empty, full, SPACING) == 0.0
    pred, target = pair(0)
    surfel = evaluate_case(pred, target, SPACING, nsd_definition="surfel")
    voxel = evaluate_case(pred, target, SPACING)
    assert surfel["nsd"] == pytest.approx(nsd_surfel(pred, target, SPACING))
    assert voxel["nsd"] == pytest.approx(nsd(pred, target, SPACING))
    assert abs(surfel["nsd"] - voxel["nsd"]) > 0.01  # two definitions, measurably apart
    assert {k: v for k, v in surfel.items() if k != "nsd"} == {k: v for k, v in voxel.items() if k != "nsd"}
    with pytest.raises(MetricError, match="nsd_definition must be one of voxel, surfel, got 'area'"):
        evaluate_case(pred, target, SPACING, nsd_definition="area")
    with pytest.raises(MetricError, match="tolerance_mm"):
        nsd_surfel(pred, target, SPACING, tolerance_mm=float("nan"))


def test_volumes_in_millilitres() -> None:
    pred = np.zeros((10, 10, 10), dtype=bool)
    target = pred.copy()
    pred[:5, :4, :2] = True  # 40 voxels of 2 mm³
    target[:5, :5, :5] = True  # 125 voxels
    volumes = volumes_ml(pred, target, (1.0, 1.0, 2.0))
    assert volumes == pytest.approx({"pred_volume_ml": 0.08, "target_volume_ml": 0.25, "volume_difference_ml": -0.17})
