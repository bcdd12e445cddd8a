"""The grid of an output at another spacing (`oss_net.geometry.grid_at_spacing`): same box of voxel corners, same
orientation, an affine and a NIfTI header that say so, for axis-aligned, flipped and oblique affines."""
from __future__ import annotations

import itertools

import nibabel as nib
import numpy as np
import pytest
import torch

from oss_net.datasets import DatasetError
from oss_net.geometry import grid_at_spacing, spacing_from_affine
from oss_net.io import atomic_save_nifti

from tests.data.test_geometry import affine_of, rotation

SHAPE = (10, 12, 7)


AFFINES = {
    "axis-aligned 2 mm": affine_of(np.diag([2.0, 2.0, 2.0])),
    "flipped (LPS-like), anisotropic": affine_of(np.diag([-0.8, -0.8, 3.0])),
    "permuted and flipped": affine_of(np.array([[0.0, 0.0, -5.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])),
    "oblique, anisotropic": affine_of(rotation(0, 20) @ rotation(2, -35) @ np.diag([1.0, 1.2, 5.0])),
}


def _corners(shape) -> np.ndarray:
    """The 8 outer voxel corners of a grid of `shape`, in voxel coordinates [8, 3]."""
    return np.array(list(itertools.product(*[(-0.5, n - 0.5) for n in shape])), dtype=np.float64)


def _to_mm(affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ affine[:3, :3].T + affine[:3, 3]


@pytest.mark.parametrize("name", AFFINES)
@pytest.mark.parametrize("spacing", [0.5, (0.4, 0.6, 1.0)])
def test_the_spaced_grid_keeps_the_box_of_corners_and_the_orientation(name, spacing):
    affine = AFFINES[name]
    grid = grid_at_spacing(affine, SHAPE, spacing)
    extent = spacing_from_affine(affine) * np.asarray(SHAPE)
    wanted = np.broadcast_to(np.asarray(spacing, dtype=np.float64), (3,))
    assert grid.shape == tuple(int(np.floor(e / w + 0.5)) for e, w in zip(extent, wanted))
    assert np.allclose(_to_mm(grid.affine, _corners(grid.shape)), _to_mm(affine, _corners(SHAPE)), atol=1e-9)
    assert np.allclose(spacing_from_affine(grid.affine), grid.spacing) and np.allclose(grid.spacing, extent / grid.shape)
    directions = affine[:3, :3] / spacing_from_affine(affine)
    assert np.allclose(grid.affine[:3, :3] / spacing_from_affine(grid.affine), directions)
    assert nib.aff2axcodes(grid.affine) == nib.aff2axcodes(affine)
    voxels = np.random.default_rng(0).uniform(-0.5, np.asarray(grid.shape) - 0.5, size=(20, 3))
    assert np.allclose(_to_mm(grid.affine, voxels), _to_mm(affine, grid.to_input_voxel(voxels)), atol=1e-9)
    assert torch.allclose(grid.to_input_voxel(torch.from_numpy(voxels)), torch.from_numpy(grid.to_input_voxel(voxels)))


def test_a_spacing_that_divides_the_extent_is_kept_exactly():
    grid = grid_at_spacing(AFFINES["axis-aligned 2 mm"], SHAPE, 0.5)
    assert grid.shape == (40, 48, 28) and grid.spacing == (0.5, 0.5, 0.5)
    assert np.allclose(grid.affine[:3, 3], np.array([3.0, -7.0, 11.0]) - 0.75)  # voxel 0: 0.75 mm before the old centre
    same = grid_at_spacing(AFFINES["oblique, anisotropic"], SHAPE, spacing_from_affine(AFFINES["oblique, anisotropic"]))
    assert same.shape == SHAPE and np.allclose(same.affine, AFFINES["oblique, anisotropic"])


@pytest.mark.parametrize("name", AFFINES)
@pytest.mark.parametrize("codes", [(1, 2), (0, 2), (1, 0)])
def test_the_header_written_with_the_spaced_affine_says_its_spacing(name, codes, tmp_path):
    """A file written with the input's header and the spaced grid's affine reads back with that grid's shape,
    zooms, qform and sform and their codes (nibabel), and the same geometry through SimpleITK, whichever of qform
    and sform the input sets (a header with the sform alone keeps its old voxel sizes unless they are rewritten)."""
    sitk = pytest.importorskip("SimpleITK")
    affine = AFFINES[name]
    source = nib.Nifti1Image(np.zeros(SHAPE, np.float32), affine)
    source.header.set_qform(affine, code=codes[0])
    source.header.set_sform(affine, code=codes[1])
    grid = grid_at_spacing(affine, SHAPE, 0.5)
    path = tmp_path / "fine.nii.gz"
    atomic_save_nifti(np.zeros(grid.shape, np.uint8), grid.affine, path, header=source.header)
    image = nib.load(str(path))
    assert image.shape == grid.shape and np.allclose(image.header.get_zooms(), grid.spacing)
    assert np.allclose(image.affine, grid.affine, atol=1e-5)
    assert (int(image.header["qform_code"]), int(image.header["sform_code"])) == codes
    itk = sitk.ReadImage(str(path))
    assert itk.GetSize() == grid.shape and np.allclose(itk.GetSpacing(), grid.spacing, atol=1e-5)
    lps = np.diag([-1.0, -1.0, 1.0])
    first = _to_mm(grid.affine, _corners(grid.shape)[:1] + 0.5)[0]  # voxel 0's centre, RAS
    assert np.allclose(itk.GetOrigin(), lps @ first, atol=1e-4)


@pytest.mark.parametrize("spacing", [0, -1.0, float("nan"), (1.0, 2.0), "fine", (0.5, 0.5, float("inf"))])
def test_a_bad_spacing_is_one_clear_error(spacing):
    with pytest.raises(DatasetError, match="an output spacing is one number or three, each > 0 mm"):
        grid_at_spacing(AFFINES["axis-aligned 2 mm"], SHAPE, spacing)


def _oriented_index(index: np.ndarray, shape, orientation) -> np.ndarray:
    """Voxel indices [N, 3] of a grid of `shape` → the same voxels' indices after `reorient(.., orientation)`."""
    out = np.zeros_like(index)
    for axis, (target, flip) in enumerate(orientation):
        out[:, target] = index[:, axis] if flip == 1 else shape[axis] - 1 - index[:, axis]
    return out


@pytest.mark.parametrize("name", AFFINES)
@pytest.mark.parametrize("mode", ["pad", "crop", "resample"])
def test_spaced_axes_place_every_voxel_where_the_model_grid_sees_it(name, mode):
    """A lattice over the spaced grid, decoded at u'·scale + offset on the model grid, sees the world point the
    spaced grid's affine gives that voxel, for padded, cropped and resampled (reoriented) cases."""
    from oss_net.data.grid import GridMeta, closest_canonical, reorient

    affine = AFFINES[name]
    if mode == "resample":
        meta = GridMeta.for_resampling(affine, None, SHAPE, (16, 8, 12), orientation=closest_canonical(affine))
    else:
        content = ((2, 7), (1, 9), (0, 6)) if mode == "crop" else None
        meta = GridMeta.for_padding(affine, None, SHAPE, (16, 16, 10) if mode == "pad" else (8, 16, 10), content=content)
    grid = grid_at_spacing(affine, SHAPE, (0.45, 0.7, 1.3))
    shape, scale, offset = meta.spaced_axes(grid)
    assert shape == reorient(np.zeros(grid.shape), meta.orientation).shape
    voxels = np.random.default_rng(1).integers(0, grid.shape, size=(50, 3))
    model = _oriented_index(voxels, grid.shape, meta.orientation) * scale + offset
    assert np.allclose(meta.model_voxel_to_mm(model), _to_mm(grid.affine, voxels.astype(np.float64)), atol=1e-9)
