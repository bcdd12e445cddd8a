"""Gradient refinement of mesh vertices against a differentiable occupancy function (docs/reference.md §8.3).

Marching cubes on a voxel grid puts vertices up to half a voxel off the decoder's true 0.5 level
set and leaves a staircase. The occupancy network is continuous, so the vertices can be moved onto
its surface: at every step one random point per face (barycentric weights from Dirichlet(0.5)) is
pulled towards occupancy 0.5, and each face's normal towards the occupancy's descent direction.
The normal target is −∇occ computed with `create_graph=True`, so the loss is differentiated through
that gradient too; an occupancy made of PAUs needs their double backward.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import trimesh

from oss_net.meshing.errors import MeshingError

OccupancyFn = Callable[[torch.Tensor], torch.Tensor]  # points [P, 3] → occupancy [P]


def refinement_loss(
    vertices: torch.Tensor,
    faces: torch.Tensor,
    occupancy_fn: OccupancyFn,
    weights: torch.Tensor,
    normal_weight: float,
    level: float = 0.5,
) -> torch.Tensor:
    """One step's loss (docs/reference.md §8.3): mean((occ − level)²) + normal_weight · mean‖n_face − n_target‖².

    Args:
        vertices: [V, 3] in the mesh frame (requires grad).
        faces: [F, 3] long, wound so that cross(v1 − v0, v2 − v1) points outwards.
        weights: [F, 3] barycentric weights of the one sample point per face.
    """
    corners = vertices[faces]  # [F, 3, 3]
    points = (weights.unsqueeze(-1) * corners).sum(dim=1)  # [F, 3]
    face_normals = torch.linalg.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 1])  # [F, 3]
    face_normals = face_normals / (face_normals.norm(dim=1, keepdim=True) + 1e-10)
    occupancy = occupancy_fn(points).reshape(-1)  # [F]
    if occupancy.shape[0] != points.shape[0]:
        raise MeshingError(f"occupancy_fn returned {occupancy.shape[0]} values for {points.shape[0]} points")
    # Occupancy falls from inside to outside, so its negative gradient is the outward normal.
    (gradient,) = torch.autograd.grad(occupancy.sum(), points, create_graph=True)  # [F, 3]
    target_normals = -gradient / (gradient.norm(dim=1, keepdim=True) + 1e-10)
    level_loss = (occupancy - level).pow(2).mean()
    normal_loss = (face_normals - target_normals).pow(2).sum(dim=1).mean()
    return level_loss + normal_weight * normal_loss


def refine_vertices(
    mesh: trimesh.Trimesh,
    occupancy_fn: OccupancyFn,
    steps: int = 200,
    lr: float = 1e-3,
    normal_weight: float = 0.01,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
) -> trimesh.Trimesh:
    """A copy of `mesh` with its vertices moved onto the 0.5 level set of `occupancy_fn`.

    Args:
        mesh: a mesh with outward normals (e.g. from `extract_mesh`); it is not modified.
        occupancy_fn: differentiable map from points [P, 3] in the mesh's coordinate frame (mm when
            the mesh is in mm) to occupancy probabilities [P], twice differentiable. For inference a
            closure that maps the points to model-grid voxels and calls the decoder.
        steps, lr: RMSprop steps on the vertex positions and its learning rate (the original's
            200 and 1e-3; the step is in the mesh's units).
        normal_weight: weight λ of the normal term (0.01 as the original).
        device, dtype: where and in which precision the vertices live (the occupancy's device).
        seed: seed of the Dirichlet sample points, so a refinement is reproducible.

    Returns a new `trimesh.Trimesh` with the same faces; an empty mesh is returned as a copy.
    """
    if steps < 0 or not lr > 0:
        raise MeshingError(f"steps must be >= 0 and lr > 0, got steps={steps}, lr={lr}")
    if mesh.is_empty or steps == 0:
        return mesh.copy()
    vertices = torch.tensor(np.asarray(mesh.vertices), dtype=dtype, device=device, requires_grad=True)  # [V, 3]
    faces = torch.as_tensor(np.asarray(mesh.faces), dtype=torch.long, device=device)  # [F, 3]
    optimizer = torch.optim.RMSprop([vertices], lr=lr)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        dirichlet = rng.dirichlet((0.5, 0.5, 0.5), size=len(faces))  # [F, 3]
        weights = torch.as_tensor(dirichlet, dtype=dtype, device=device)
        optimizer.zero_grad(set_to_none=True)
        loss = refinement_loss(vertices, faces, occupancy_fn, weights, normal_weight)
        loss.backward()
        optimizer.step()
    refined = vertices.detach().cpu().double().numpy()
    return trimesh.Trimesh(vertices=refined, faces=np.asarray(mesh.faces).copy(), process=False)
