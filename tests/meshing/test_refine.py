"""refine_vertices: moves a coarse sphere onto an analytic occupancy's 0.5 level set (docs/reference.md §8.3)."""
from __future__ import annotations

from typing import Callable

import numpy as np
import pytest
import torch
import trimesh

from oss_net.meshing import MeshingError, extract_mesh, refine_vertices, refinement_loss

RADIUS = 8.0

SphereFn = Callable[..., tuple[np.ndarray, np.ndarray]]  # (shape, affine, radius_mm) -> (grid, centre)
AffineFn = Callable[..., np.ndarray]  # (spacing, origin, rotate) -> [4, 4]


def sphere_occupancy(centre: np.ndarray, sharpness: float = 2.0):
    centre_t = torch.as_tensor(centre, dtype=torch.float32)
    return lambda points: torch.sigmoid((RADIUS - (points - centre_t).norm(dim=1)) * sharpness)


def test_refinement_moves_vertices_onto_the_surface(sphere_grid: SphereFn, make_affine: AffineFn) -> None:
    affine = make_affine((2.0, 2.0, 2.5), (5.0, -3.0, 1.0), rotate=False)
    grid, centre = sphere_grid((12, 12, 10), affine, RADIUS)
    coarse = extract_mesh(grid, affine, min_component_voxels=1)
    before = np.abs(np.linalg.norm(coarse.vertices - centre, axis=1) - RADIUS)
    original_vertices = coarse.vertices.copy()
    refined = refine_vertices(coarse, sphere_occupancy(centre), steps=40, lr=1e-2)
    after = np.abs(np.linalg.norm(refined.vertices - centre, axis=1) - RADIUS)
    assert after.mean() < 0.5 * before.mean()
    assert after.max() < before.max()
    np.testing.assert_array_equal(refined.faces, coarse.faces)
    np.testing.assert_array_equal(coarse.vertices, original_vertices)  # input untouched
    assert refined.is_watertight


def test_normal_term_matches_outward_winding() -> None:
    sphere = trimesh.creation.icosphere(subdivisions=2, radius=RADIUS)
    vertices = torch.tensor(sphere.vertices, dtype=torch.float32, requires_grad=True)
    weights = torch.full((len(sphere.faces), 3), 1 / 3)
    occupancy = sphere_occupancy(np.zeros(3))

    def normal_loss(faces: np.ndarray) -> float:
        level_only = refinement_loss(vertices, torch.as_tensor(faces), occupancy, weights, normal_weight=0.0)
        total = refinement_loss(vertices, torch.as_tensor(faces), occupancy, weights, normal_weight=1.0)
        return float((total - level_only).detach())

    assert normal_loss(sphere.faces) < 0.05  # outward normals agree with −∇occ
    assert normal_loss(sphere.faces[:, ::-1].copy()) > 3.9  # inverted: ‖n − (−n)‖² = 4


def test_normal_term_is_differentiated_through_the_gradient() -> None:
    sphere = trimesh.creation.icosphere(subdivisions=1, radius=RADIUS - 1.0)
    vertices = torch.tensor(sphere.vertices, dtype=torch.float64, requires_grad=True)
    weights = torch.full((len(sphere.faces), 3), 1 / 3, dtype=torch.float64)
    centre = torch.zeros(3, dtype=torch.float64)

    def occupancy(points: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid((RADIUS - (points - centre).norm(dim=1)) * 2.0)

    def loss(v: torch.Tensor) -> torch.Tensor:
        return refinement_loss(v, torch.as_tensor(sphere.faces), occupancy, weights, normal_weight=1.0)

    assert torch.autograd.gradcheck(loss, (vertices,), eps=1e-6, atol=1e-5)


def test_empty_mesh_and_bad_arguments() -> None:
    empty = trimesh.Trimesh(vertices=np.zeros((0, 3)), faces=np.zeros((0, 3), dtype=np.int64))
    assert refine_vertices(empty, sphere_occupancy(np.zeros(3))).is_empty
    with pytest.raises(MeshingError, match="lr > 0"):
        refine_vertices(trimesh.creation.icosphere(), sphere_occupancy(np.zeros(3)), lr=0.0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_refinement_on_cuda_matches_cpu() -> None:
    sphere = trimesh.creation.icosphere(subdivisions=2, radius=RADIUS - 0.7)
    cpu = refine_vertices(sphere, sphere_occupancy(np.zeros(3)), steps=10, lr=1e-2)
    centre = torch.zeros(3, device="cuda")

    def occupancy(points: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid((RADIUS - (points - centre).norm(dim=1)) * 2.0)

    cuda = refine_vertices(sphere, occupancy, steps=10, lr=1e-2, device="cuda")
    np.testing.assert_allclose(cuda.vertices, cpu.vertices, atol=1e-4)
