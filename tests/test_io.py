"""oss_net.io: writes are atomic and NIfTI output keeps the affine."""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch

from oss_net.io import OSSNetError, atomic_save_json, atomic_save_nifti, atomic_save_torch, atomic_write


def test_failed_write_keeps_previous_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "result.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_write(target, "w") as handle:
            handle.write("half of the new cont")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.txt"]


def test_missing_output_folder_is_a_clear_error(tmp_path):
    with pytest.raises(OSSNetError, match="output folder does not exist"):
        atomic_save_json({"a": 1}, tmp_path / "missing" / "x.json")


def test_torch_and_json_round_trip(tmp_path):
    atomic_save_torch({"w": torch.arange(5)}, tmp_path / "w.pt")
    assert torch.equal(torch.load(tmp_path / "w.pt", weights_only=True)["w"], torch.arange(5))
    atomic_save_json({"b": 2, "a": [1.5]}, tmp_path / "x.json")
    assert (tmp_path / "x.json").read_text() == '{\n  "a": [\n    1.5\n  ],\n  "b": 2\n}\n'


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_nifti_keeps_affine_shape_and_values(tmp_path, suffix):
    affine = np.array([[0.9, 0, 0, -90.0], [0, 1.1, 0, 12.5], [0, 0, 2.0, -30.0], [0, 0, 0, 1]])
    data = np.random.default_rng(0).integers(0, 3, size=(5, 6, 7)).astype(np.uint8)
    path = tmp_path / f"mask{suffix}"
    atomic_save_nifti(data, affine, path)
    loaded = nib.load(str(path))
    np.testing.assert_array_equal(np.asarray(loaded.dataobj), data)
    np.testing.assert_allclose(loaded.affine, affine)
    assert loaded.get_data_dtype() == np.uint8


def test_written_files_follow_the_umask_not_mkstemp_private_mode(tmp_path):
    import os

    previous = os.umask(0o022)
    try:
        atomic_save_json({}, tmp_path / "public.json")
    finally:
        os.umask(previous)
    assert (tmp_path / "public.json").stat().st_mode & 0o777 == 0o644
