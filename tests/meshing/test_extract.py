"""extract_mesh: geometry in mm, watertightness, decimation, component removal, voxel frame, errors."""
from __future__ import annotations

from typing import Callable

import numpy as np
import pytest
import torch
import trimesh
from scipy import ndimage

from oss_net.meshing import MeshingError, close_defects, decimate, extract_mesh, face_budget_for_edge, remove_small_components

SPACING = (0.9, 1.1, 2.0)
ORIGIN = (-40.0, 25.0, 7.5)
SHAPE = (30, 25, 14)
RADIUS = 10.0

SphereFn = Callable[..., tuple[np.ndarray, np.ndarray]]  # (shape, affine, radius_mm) -> (grid, centre)
AffineFn = Callable[..., np.ndarray]  # (spacing, origin, rotate) -> [4, 4]


@pytest.mark.parametrize("rotate", [False, True], ids=["diagonal", "rotated-mirrored"])
def test_sphere_in_mm_is_watertight_and_within_one_voxel(
    rotate: bool, sphere_grid: SphereFn, make_affine: AffineFn
) -> None:
    affine = make_affine(SPACING, ORIGIN, rotate)
    grid, centre = sphere_grid(SHAPE, affine, RADIUS)
    mesh = extract_mesh(grid, affine, min_component_voxels=10)
    assert mesh.is_watertight and mesh.is_winding_consistent
    assert mesh.volume > 0  # outward normals, also under a mirroring affine
    assert mesh.volume == pytest.approx(4 / 3 * np.pi * RADIUS**3, rel=0.1)
    radial_error = np.abs(np.linalg.norm(mesh.vertices - centre, axis=1) - RADIUS)
    assert radial_error.max() <= max(SPACING)


def test_decimation_respects_budget_and_stays_closed(sphere_grid: SphereFn, make_affine: AffineFn) -> None:
    affine = make_affine((0.5, 0.5, 0.5), (0.0, 0.0, 0.0), rotate=False)
    grid, _ = sphere_grid((44, 44, 44), affine, RADIUS)
    full = extract_mesh(grid, affine, min_component_voxels=10, face_budget=None, edge_mm=None)
    mesh = extract_mesh(grid, affine, min_component_voxels=10, face_budget=600)
    assert len(full.faces) > 5000
    assert 300 < len(mesh.faces) <= 600
    assert mesh.is_watertight and mesh.volume > 0
    assert mesh.volume == pytest.approx(full.volume, rel=0.05)


def test_small_components_removed(sphere_grid: SphereFn, make_affine: AffineFn) -> None:
    affine = make_affine(SPACING, ORIGIN, rotate=False)
    grid, centre = sphere_grid(SHAPE, affine, RADIUS - 3)
    grid[0:3, 0:3, 0:3] = 1.0  # a 27-voxel speck in a corner
    assert extract_mesh(grid, affine, min_component_voxels=1).body_count == 2
    cleaned = extract_mesh(grid, affine, min_component_voxels=28)
    assert cleaned.body_count == 1
    assert np.linalg.norm(cleaned.vertices - centre, axis=1).max() < RADIUS - 3 + max(SPACING)


def test_components_are_six_connected() -> None:
    mask = np.zeros((4, 4, 4), dtype=bool)
    mask[0, 0, 0] = mask[1, 1, 0] = True  # touch along an edge only
    mask[3, 3, 2:4] = True  # two face neighbours
    kept = remove_small_components(mask, min_voxels=2)
    assert not kept[0, 0, 0] and not kept[1, 1, 0]
    assert kept[3, 3, 2] and kept[3, 3, 3]


def test_affine_none_gives_voxel_coordinates_and_pad_closes_border(make_affine: AffineFn) -> None:
    grid = np.zeros((10, 8, 6), dtype=np.float32)
    grid[3:8, 2:6, 0:6] = 1.0  # touches both ends of axis 2
    mesh = extract_mesh(torch.from_numpy(grid), None, min_component_voxels=1)
    assert mesh.is_watertight and mesh.volume > 0
    # The 0.5 level lies halfway between voxel centres; at the border it meets the zero pad.
    np.testing.assert_allclose(mesh.bounds, [[2.5, 1.5, -0.5], [7.5, 5.5, 5.5]])
    affine = make_affine(SPACING, ORIGIN, rotate=False)
    in_mm = extract_mesh(grid, affine, min_component_voxels=1)
    np.testing.assert_allclose(in_mm.bounds, mesh.bounds * SPACING + ORIGIN)


def test_empty_grid_gives_empty_mesh() -> None:
    assert extract_mesh(np.zeros((5, 5, 5)), None).is_empty
    speck = np.zeros((6, 6, 6))
    speck[2, 2, 2] = 0.9
    mesh = extract_mesh(speck, np.eye(4), min_component_voxels=2)  # removed as too small
    assert mesh.is_empty and len(mesh.faces) == 0


def test_bad_inputs_raise_clear_errors() -> None:
    with pytest.raises(MeshingError, match=r"3-D grid \[D, H, W\], got shape \(4, 4\)"):
        extract_mesh(np.zeros((4, 4)), None)
    with pytest.raises(MeshingError, match="finite 4×4"):
        extract_mesh(np.zeros((4, 4, 4)), np.eye(3))
    with pytest.raises(MeshingError, match="singular"):
        extract_mesh(np.zeros((4, 4, 4)), np.diag([1.0, 1.0, 0.0, 1.0]))
    with pytest.raises(MeshingError, match="level must be"):
        extract_mesh(np.zeros((4, 4, 4)), None, level=0.0)
    with pytest.raises(MeshingError, match="NaN"):
        extract_mesh(np.full((4, 4, 4), np.nan), None)


def test_close_defects_repairs_a_hole() -> None:
    sphere = trimesh.creation.icosphere(subdivisions=2)
    holed = trimesh.Trimesh(sphere.vertices, sphere.faces[1:], process=False)
    assert not holed.is_watertight
    repaired = close_defects(holed)
    assert repaired is not None and repaired.is_watertight and repaired.is_winding_consistent
    assert repaired.volume == pytest.approx(sphere.volume, rel=0.05)


def test_decimate_leaves_small_meshes_alone() -> None:
    sphere = trimesh.creation.icosphere(subdivisions=1)
    assert decimate(sphere, 10_000) is sphere
    assert len(decimate(sphere, 40).faces) <= 40


def test_budget_from_edge_length_counts_equilateral_triangles() -> None:
    # a 10 × 10 mm square in triangles of 1 mm edge (√3/4 mm² each): ceil(100 / 0.4330) = 231
    assert face_budget_for_edge(100.0, 1.0) == 231
    assert face_budget_for_edge(100.0, 2.0) == 58  # four times fewer for twice the edge
    with pytest.raises(MeshingError, match="edge length must be a finite number > 0"):
        face_budget_for_edge(100.0, 0.0)


def test_budget_follows_the_surface(sphere_grid: SphereFn, make_affine: AffineFn) -> None:
    affine = make_affine((0.5, 0.5, 0.5), (0.0, 0.0, 0.0), rotate=False)
    grid, _ = sphere_grid((44, 44, 44), affine, RADIUS)
    coarse = extract_mesh(grid, affine, min_component_voxels=10, edge_mm=3.0)
    fine = extract_mesh(grid, affine, min_component_voxels=10, edge_mm=1.5)
    full = extract_mesh(grid, affine, min_component_voxels=10, edge_mm=None)
    assert len(coarse.faces) <= face_budget_for_edge(full.area, 3.0) < len(full.faces)
    assert len(fine.faces) == pytest.approx(4 * len(coarse.faces), rel=0.1)
    assert coarse.is_watertight and fine.is_watertight
    assert len(extract_mesh(grid, affine, min_component_voxels=10, edge_mm=1.5, face_budget=300).faces) <= 300


def test_decimation_that_would_open_a_mesh_falls_back_to_more_faces() -> None:
    # Many small bodies: no aggression level keeps 1,000 faces closed, so the budget grows.
    noise = np.random.default_rng(1).normal(size=(40, 40, 24))
    grid = (ndimage.gaussian_filter(noise, 1.5) > 0.05).astype(np.float32)
    full = extract_mesh(grid, None, min_component_voxels=1, edge_mm=None)
    mesh = extract_mesh(grid, None, min_component_voxels=1, edge_mm=None, face_budget=1_000)
    assert full.is_watertight and full.body_count > 10
    assert mesh.is_watertight and mesh.is_winding_consistent
    assert 1_000 < len(mesh.faces) < len(full.faces)
    assert mesh.volume == pytest.approx(full.volume, rel=0.1)


def test_decimate_keeps_every_body_closed_when_the_budget_is_too_small() -> None:
    icosahedra = trimesh.util.concatenate(
        [trimesh.creation.icosphere(subdivisions=0).apply_translation((3.0 * i, 0.0, 0.0)) for i in range(20)]
    )
    assert icosahedra.is_watertight and len(icosahedra.faces) == 400
    kept = decimate(icosahedra, 8)  # 20 closed bodies cannot be closed in 8 faces: each gets its share, at least 4
    assert kept.is_watertight and kept.body_count == 20
    assert 80 <= len(kept.faces) <= 400
