"""Meshes land on the image in LPS viewers: checked against SimpleITK's physical points (LPS).

The NIfTI gets an oblique, anisotropic affine; SimpleITK reads it on its own and maps voxel indices
to LPS millimetres. The mesh we write (LPS by default) must lie on those points: its centre equals
the mask's centre within a voxel, and every marching-cubes vertex lies within half a voxel step of
a mask voxel. SimpleITK is a test-only dependency.
"""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import trimesh
from scipy import ndimage
from scipy.spatial import cKDTree

from oss_net.meshing import extract_mesh, save_mesh

sitk = pytest.importorskip("SimpleITK")

SPACING = np.array([0.8, 1.3, 2.5])
SHAPE = (40, 36, 24)


def oblique_affine() -> np.ndarray:
    """Voxel → RAS mm: a rotation of 0.4 rad about the axis (1, 2, 3), anisotropic spacing, an offset."""
    axis = np.array([1.0, 2.0, 3.0]) / np.sqrt(14.0)
    cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rotation = np.eye(3) + np.sin(0.4) * cross + (1 - np.cos(0.4)) * cross @ cross
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag(SPACING)
    affine[:3, 3] = (-52.0, 31.5, 12.25)
    return affine


def off_centre_blob() -> np.ndarray:
    """Boolean [*SHAPE]: one smooth blob, away from the grid centre."""
    index = np.stack(np.meshgrid(*[np.arange(n) for n in SHAPE], indexing="ij"), axis=-1)
    radii = np.array([9.0, 7.0, 4.0])
    inside = (((index - np.array([24.0, 14.0, 13.0])) / radii) ** 2).sum(axis=-1) < 1.0
    return ndimage.binary_opening(inside)


@pytest.fixture(scope="module")
def case(tmp_path_factory) -> tuple[Path, np.ndarray, np.ndarray]:
    """(NIfTI path, mask [*SHAPE], affine) of the blob on the oblique grid."""
    mask, affine = off_centre_blob(), oblique_affine()
    path = tmp_path_factory.mktemp("space") / "mask.nii.gz"
    nib.save(nib.Nifti1Image(mask.astype(np.uint8), affine), str(path))
    return path, mask, affine


def sitk_points_lps(path: Path) -> np.ndarray:
    """LPS mm of every mask voxel centre, from SimpleITK's reading of the file [N, 3]."""
    image = sitk.ReadImage(str(path))
    index = np.argwhere(sitk.GetArrayFromImage(image).transpose(2, 1, 0) > 0)  # SimpleITK arrays are [k, j, i]
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    return np.asarray(image.GetOrigin()) + (index * np.asarray(image.GetSpacing())) @ direction.T


def test_lps_mesh_centre_is_the_mask_centre_in_simpleitk(case, tmp_path: Path) -> None:
    path, mask, affine = case
    points = sitk_points_lps(path)
    assert len(points) == mask.sum()
    mask_centre = np.asarray(sitk.ReadImage(str(path)).TransformContinuousIndexToPhysicalPoint(
        tuple(float(c) for c in np.argwhere(mask).mean(axis=0))))
    np.testing.assert_allclose(points.mean(axis=0), mask_centre, atol=1e-6)  # one reading of the geometry

    mesh = extract_mesh(mask.astype(np.float32), affine, min_component_voxels=1)
    written = save_mesh(mesh, tmp_path / "prediction.obj")
    assert written.read_text().startswith("# SPACE=LPS\n")
    loaded = trimesh.load(written, process=False, force="mesh")
    assert loaded.is_watertight and loaded.volume > 0  # outward faces in LPS
    assert np.linalg.norm(loaded.center_mass - mask_centre) < SPACING.min()

    ras = trimesh.load(save_mesh(mesh, tmp_path / "ras.obj", space="RAS"), process=False, force="mesh")
    assert np.linalg.norm(ras.center_mass - mask_centre) > 50.0  # a RAS file read as LPS lands far away


def test_every_vertex_lies_half_a_step_from_a_mask_voxel(case, tmp_path: Path) -> None:
    path, mask, affine = case
    mesh = extract_mesh(mask.astype(np.float32), affine, min_component_voxels=1, edge_mm=None)
    for suffix in (".ply", ".stl"):
        loaded = trimesh.load(save_mesh(mesh, tmp_path / f"label{suffix}"), force="mesh")
        distance, _ = cKDTree(sitk_points_lps(path)).query(loaded.vertices)
        # marching cubes puts each vertex halfway between an inside and an outside voxel centre
        assert distance.max() <= SPACING.max() / 2 + 1e-4
        assert loaded.is_watertight and loaded.volume == pytest.approx(mask.sum() * SPACING.prod(), rel=0.1)
