"""`python -m oss_net.resample_label`: a label on a finer grid of the same box keeps its values voxel for voxel."""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from oss_net.geometry import grid_at_spacing
from oss_net.io import atomic_save_nifti
from oss_net.resample_label import main

from tests.data.test_geometry import affine_of, rotation


@pytest.mark.parametrize("columns", [np.diag([-2.0, -2.0, 2.0]), rotation(1, 25) @ np.diag([1.0, 1.5, 3.0])])
def test_each_fine_voxel_takes_the_label_of_the_voxel_holding_its_centre(tmp_path, columns, capsys):
    affine = affine_of(columns)
    label = np.random.default_rng(0).integers(0, 3, size=(6, 5, 4)).astype(np.uint8)
    atomic_save_nifti(label, affine, tmp_path / "label.nii.gz")
    grid = grid_at_spacing(affine, label.shape, 0.5)
    atomic_save_nifti(np.zeros(grid.shape, np.uint8), grid.affine, tmp_path / "prediction.nii.gz")
    assert main([str(tmp_path / "label.nii.gz"), str(tmp_path / "prediction.nii.gz"), str(tmp_path / "out" / "l.nii.gz")]) == 0
    written = nib.load(str(tmp_path / "out" / "l.nii.gz"))
    assert written.shape == grid.shape and np.allclose(written.affine, grid.affine)
    factors = [g // n for g, n in zip(grid.shape, label.shape)]
    expected = label.repeat(factors[0], 0).repeat(factors[1], 1).repeat(factors[2], 2)
    assert np.array_equal(np.asarray(written.dataobj), expected) and "wrote" in capsys.readouterr().out


def test_a_missing_file_is_one_line(tmp_path, capsys):
    assert main([str(tmp_path / "none.nii.gz"), str(tmp_path / "none.nii.gz"), str(tmp_path / "o.nii.gz")]) == 2
    assert "none.nii.gz" in capsys.readouterr().err and not (tmp_path / "o.nii.gz").exists()
