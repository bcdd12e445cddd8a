"""The header is read before the data (issue 24): a declared size that cannot be the file's, or that does not fit in
memory, and an affine that is no voxel grid, are refused naming the file before any voxel is read."""
from __future__ import annotations

import gzip
import shutil
import tracemalloc
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from oss_net.data import nifti
from oss_net.data.check import main as check_main
from oss_net.data.nifti import read_header, read_image
from oss_net.datasets import DatasetError
from oss_net.geometry import affine_problem, header_affine, preferred_affine


def _declared_huge(path: Path, shape: tuple[int, int, int], dtype=np.uint8) -> Path:
    header = nib.Nifti1Header()
    header.set_data_dtype(dtype)
    header.set_data_shape(shape)
    header.set_sform(np.eye(4), code=1)
    path.write_bytes(gzip.compress(header.binaryblock + b"\0" * 4 + bytes(48), mtime=0))
    return path


def test_a_tiny_gzip_file_declaring_a_huge_volume_is_refused_from_its_header(tmp_path):
    path = _declared_huge(tmp_path / "bomb.nii.gz", (20000, 20000, 20000))
    assert path.stat().st_size < 400
    tracemalloc.start()
    try:
        with pytest.raises(DatasetError) as raised:
            read_image(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(raised.value).startswith(f"{path}: truncated or corrupt voxel data: the header declares "
                                        "20000×20000×20000 uint8 (8.0 TB) but the file is ")
    assert "which inflates to at most" in str(raised.value)
    assert peak < 4 * 2**20  # nothing of the declared 8 TB (nor of a 13.5 GB float32 copy) was allocated


@pytest.mark.parametrize("cut, problem", [(-10, "truncated or corrupt voxel data"),
                                          (+10, "longer than its header says")])
def test_an_uncompressed_file_must_hold_exactly_what_its_header_declares(tmp_path, cut, problem):
    path = tmp_path / "image.nii"
    nib.save(nib.Nifti1Image(np.zeros((4, 5, 6), np.int16), np.eye(4)), str(path))
    data = path.read_bytes()
    path.write_bytes(data[:cut] if cut < 0 else data + bytes(cut))
    with pytest.raises(DatasetError, match=rf"{path}: {problem}.*4×5×6 int16 \(240 B\) after a 352-byte header, "
                                           rf"592 bytes in all, but the file holds {len(data) + cut} bytes"):
        read_header(path)


def test_a_volume_larger_than_the_memory_available_is_refused_before_it_is_read(tmp_path, monkeypatch):
    path = tmp_path / "image.nii.gz"
    nib.save(nib.Nifti1Image(np.arange(1000, dtype=np.int16).reshape(10, 10, 10), np.eye(4)), str(path))
    assert read_image(path).array.shape == (10, 10, 10)
    monkeypatch.setattr(nifti, "memory_budget", lambda: 5_999)  # 1000 voxels × (2 bytes + a float32 copy)
    with pytest.raises(DatasetError, match=rf"{path}: the header declares 10×10×10 int16 \(2.0 kB\), which needs about "
                                           r"6.0 kB of memory to read, more than the 6.0 kB available"):
        read_image(path)


@pytest.mark.parametrize("affine, problem", [
    (np.eye(4), None),
    (np.diag([0.1, 0.1, 12.0, 1.0]), None),  # very anisotropic is still a grid
    (np.array([[1, 0.5, 0, 0], [0, 0.866, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]), None),  # axes at 60°
    (np.array([[1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]), "two of its axes are (nearly) parallel"),
    (np.array([[1, 1, 0, 0], [0, 0.001, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]), "two of its axes are (nearly) parallel"),
    (np.diag([1.0, 0.0, 1.0, 1.0]), "affine is singular: voxel spacing (1, 0, 1) mm has a zero axis"),
    (np.diag([1.0, np.nan, 1.0, 1.0]), "affine holds NaN or Inf"),
])
def test_affine_problems(affine, problem):
    found = affine_problem(affine)
    assert found == problem if problem is None else problem in found


def _flipped_pair(path: Path) -> tuple[np.ndarray, np.ndarray]:
    sform = np.diag([1.0, 1.0, 2.0, 1.0])
    sform[:3, 3] = [-10, -20, -30]
    qform = sform.copy()
    qform[:, 0] *= -1  # left-right mirrored
    image = nib.Nifti1Image(np.arange(48, dtype=np.int16).reshape(4, 4, 3), sform)
    image.set_sform(sform, code=1)
    image.set_qform(qform, code=1)
    nib.save(image, str(path))
    return sform, qform


def test_a_qform_that_mirrors_the_sform_is_refused_unless_the_user_prefers_one(tmp_path):
    path = tmp_path / "flipped.nii.gz"
    sform, qform = _flipped_pair(path)
    with pytest.raises(DatasetError, match=rf"{path}: qform and sform disagree \(one is the mirror image of the other, "
                                           r"e.g. a left-right flip\); pass --prefer sform or --prefer qform"):
        read_image(path)
    for prefer, expected in (("sform", sform), ("qform", qform)):
        with preferred_affine(prefer):
            assert np.allclose(read_image(path).affine, expected, atol=1e-5)
    with pytest.raises(DatasetError):  # the choice holds inside the block only
        read_header(path)


def test_only_a_set_form_counts_and_a_bad_one_names_the_file():
    good = np.diag([2.0, 2.0, 2.0, 1.0])
    assert np.array_equal(header_affine("f.nii", None, 0, good, 2, np.eye(4)), good)  # the sform alone
    assert np.array_equal(header_affine("f.nii", good, 1, None, 0, np.eye(4)), good)  # the qform alone
    assert np.array_equal(header_affine("f.nii", None, 0, None, 0, good), good)  # neither: the base affine
    with pytest.raises(DatasetError, match=r"f.nii: sform affine is singular: voxel spacing \(2, 0, 2\) mm"):
        header_affine("f.nii", good, 1, np.diag([2.0, 0.0, 2.0, 1.0]), 1, np.eye(4), prefer="sform")


def test_check_with_prefer_accepts_a_flipped_case(synthetic_brats_root, tmp_path, capsys):
    root = shutil.copytree(synthetic_brats_root, tmp_path / "data")
    case = sorted(root.rglob("BraTS20_Training_001"))[0]
    for path in sorted(case.glob("*.nii.gz")):
        image = nib.load(str(path))
        flipped = image.affine.copy()
        flipped[:, 0] *= -1
        image = nib.Nifti1Image(np.asarray(image.dataobj), image.affine)
        image.set_sform(image.affine, code=1)
        image.set_qform(flipped, code=1)
        nib.save(image, str(path))
    assert check_main([str(root)]) == 1
    assert "qform and sform disagree" in capsys.readouterr().out
    assert check_main([str(root), "--prefer", "sform"]) == 0
    assert "4 case(s): 4 ok" in capsys.readouterr().out
