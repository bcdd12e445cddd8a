"""Bad input: one DatasetError naming the file and the problem, and nothing written; the check command."""
from __future__ import annotations

import shutil

import nibabel as nib
import numpy as np
import pytest

from oss_net.data import DatasetError, discover, discover_case_folder, load_case
from oss_net.data.check import check_dataset, main as check_main
from oss_net.data.layouts.brats import BRATS_TRAINING

CASE = "BraTS20_Training_001"


@pytest.fixture
def case_dir(synthetic_brats_root, tmp_path):
    target = tmp_path / "root" / BRATS_TRAINING / CASE
    shutil.copytree(synthetic_brats_root / BRATS_TRAINING / CASE, target)
    return target


def _path(case_dir, role):
    return case_dir / f"{CASE}_{role}.nii.gz"


def _rewrite(case_dir, role, array, affine=None):
    original = nib.load(str(_path(case_dir, role)))
    nib.save(nib.Nifti1Image(array, original.affine if affine is None else affine), str(_path(case_dir, role)))


def _shape_mismatch(d):
    _rewrite(d, "t1", np.zeros((60, 60, 37), np.int16))


def _affine_mismatch(d):
    image = nib.load(str(_path(d, "t1")))
    shifted = image.affine.copy()
    shifted[0, 3] += 2.0
    _rewrite(d, "t1", np.asarray(image.dataobj), shifted)


def _truncated(d):
    data = _path(d, "t2").read_bytes()
    _path(d, "t2").write_bytes(data[: len(data) // 2])


def _corrupt(d):
    _path(d, "t2").write_bytes(b"\x1f\x8b" + bytes(range(256)) * 8)


def _nan(d):
    image = np.asarray(nib.load(str(_path(d, "flair"))).dataobj).astype(np.float32)
    image[5, 5, 5] = np.nan
    _rewrite(d, "flair", image)


def _inf(d):
    image = np.asarray(nib.load(str(_path(d, "flair"))).dataobj).astype(np.float32)
    image[1, 2, 3] = -np.inf
    _rewrite(d, "flair", image)


def _bad_label(d):
    label = np.asarray(nib.load(str(_path(d, "seg"))).dataobj).copy()
    label[label == 1] = 3
    label[0, 0, 0] = 3
    _rewrite(d, "seg", label)


def _two_d(d):
    _rewrite(d, "t1ce", np.zeros((60, 60), np.int16))


def _four_d(d):
    _rewrite(d, "t1ce", np.zeros((60, 60, 38, 2), np.int16))


LOAD_ERRORS = {
    "shape": (_shape_mismatch, r"_t1.nii.gz: shape \(60, 60, 37\) differs from \(60, 60, 38\)"),
    "affine": (_affine_mismatch, r"_t1.nii.gz: affine differs from the affine of .*_flair.nii.gz"),
    "truncated": (_truncated, r"_t2.nii.gz: (truncated or corrupt voxel data|not a readable NIfTI file)"),
    "corrupt": (_corrupt, r"_t2.nii.gz: not a readable NIfTI file"),
    "nan": (_nan, r"_flair.nii.gz: image contains 1 NaN or Inf voxel\(s\)"),
    "inf": (_inf, r"_flair.nii.gz: image contains 1 NaN or Inf voxel\(s\)"),
    "label": (_bad_label, r"_seg.nii.gz: label values \[3\] outside \[0, 1, 2, 4\] \(brats\)"),
    "2d": (_two_d, r"_t1ce.nii.gz: expected a 3D volume, got shape \(60, 60\) \(2D\)"),
    "4d": (_four_d, r"_t1ce.nii.gz: expected a 3D volume, got shape \(60, 60, 38, 2\) \(4D\)"),
}


@pytest.mark.parametrize("kind", sorted(LOAD_ERRORS))
def test_bad_files_raise_one_clear_error_and_write_nothing(case_dir, tmp_path, brats_config, kind):
    breaker, message = LOAD_ERRORS[kind]
    breaker(case_dir)
    cache = tmp_path / "cache"
    cache.mkdir()
    with pytest.raises(DatasetError, match=message):
        load_case(discover_case_folder(case_dir, "brats"), brats_config, cache_dir=cache)
    assert list(cache.iterdir()) == []


def test_missing_extra_and_duplicate_files(case_dir):
    _path(case_dir, "t2").unlink()
    (case_dir / "notes.txt").write_text("x")
    shutil.copy(_path(case_dir, "flair"), case_dir / f"{CASE}_flair.nii")
    with pytest.raises(DatasetError) as error:
        discover_case_folder(case_dir, "brats")
    text = str(error.value)
    assert text.startswith(str(case_dir)) and "unexpected file(s) ['notes.txt']" in text
    assert f"duplicate flair files ['{CASE}_flair.nii', '{CASE}_flair.nii.gz']" in text and "missing t2 file(s)" in text
    with pytest.raises(DatasetError, match="1 bad case folder"):
        discover("brats", case_dir.parent.parent, "all")


def test_lits_label_outside_its_set(synthetic_lits_root, tmp_path, lits_config):
    for kind in ("volume", "segmentation"):
        shutil.copy(synthetic_lits_root / f"{kind}-0.nii", tmp_path / f"{kind}-0.nii")
    image = nib.load(str(tmp_path / "segmentation-0.nii"))
    label = np.asarray(image.dataobj).copy()
    label[0, 0, 0] = 4
    nib.save(nib.Nifti1Image(label, image.affine), str(tmp_path / "segmentation-0.nii"))
    with pytest.raises(DatasetError, match=r"segmentation-0.nii: label values \[4\] outside \[0, 1, 2\] \(lits\)"):
        load_case(discover("lits", tmp_path, "all")[0], lits_config)


def test_check_reports_every_problem_and_fails_once(synthetic_brats_root, tmp_path, capsys):
    root = tmp_path / "root"
    shutil.copytree(synthetic_brats_root, root)
    _nan(root / BRATS_TRAINING / CASE)
    _bad_label(root / BRATS_TRAINING / CASE)
    (root / BRATS_TRAINING / "BraTS20_Training_002" / "BraTS20_Training_002_t1.nii.gz").unlink()
    empty = root / BRATS_TRAINING / "BraTS20_Training_003" / "BraTS20_Training_003_seg.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((60, 60, 38), np.uint8), nib.load(str(empty)).affine), str(empty))
    reports = {r.case_id: r for r in check_dataset(root)}
    assert [reports[c].status for c in sorted(reports)] == ["FAIL", "FAIL", "WARN", "ok"]
    assert len(reports[CASE].errors) == 2
    assert check_main([str(root)]) == 1
    out = capsys.readouterr().out
    assert "NaN or Inf" in out and "label values [3]" in out and "missing t1 file(s)" in out and "empty label" in out
    assert "4 case(s): 1 ok, 1 with warnings, 2 failed" in out


@pytest.mark.parametrize("shape, problem", [
    ((0, 48, 32), r"empty volume, shape \(0, 48, 32\) has a zero-size axis"),
    ((48, 0, 32, 1), r"empty volume, shape \(48, 0, 32\) has a zero-size axis"),  # a trailing singleton is dropped first
    ((1, 1, 1), r"degenerate volume, shape \(1, 1, 1\) has a single voxel along an axis"),
    ((48, 32, 1), r"degenerate volume, shape \(48, 32, 1\)"),
])
def test_empty_and_degenerate_volumes_are_refused_by_every_reader(tmp_path, shape, problem):
    from oss_net.data.nifti import read_header, read_image, read_label

    path = tmp_path / "volume.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros(shape, np.uint8), np.eye(4)), str(path))
    for read in (read_header, read_image, lambda p: read_label(p, "lits")):
        with pytest.raises(DatasetError, match=f"{path}: {problem}"):
            read(path)


def test_constant_image_is_a_warning_not_an_error(case_dir):
    from oss_net.data.nifti import read_image

    _rewrite(case_dir, "t2", np.full((60, 60, 38), 7, np.int16))
    with pytest.warns(RuntimeWarning, match=r"_t2.nii.gz: constant image \(every voxel is 7\)"):
        volume = read_image(_path(case_dir, "t2"))
    assert volume.array.shape == (60, 60, 38)


def test_check_lists_a_constant_image_as_a_warning(synthetic_brats_root, tmp_path, capsys):
    root = tmp_path / "root"
    shutil.copytree(synthetic_brats_root, root)
    _rewrite(root / BRATS_TRAINING / CASE, "t2", np.zeros((60, 60, 38), np.int16))
    reports = {r.case_id: r for r in check_dataset(root)}
    assert reports[CASE].status == "WARN" and not reports[CASE].errors
    assert [w.split(": ", 1)[1] for w in reports[CASE].warnings] == [
        "constant image (every voxel is 0); it carries no information"]
    assert check_main([str(root)]) == 0
    assert "4 case(s): 3 ok, 1 with warnings, 0 failed" in capsys.readouterr().out


def test_unreadable_file_names_the_file_and_the_cause(tmp_path, monkeypatch):
    from oss_net.data.nifti import read_image

    path = tmp_path / "locked" / "t1.nii.gz"
    path.parent.mkdir()
    nib.save(nib.Nifti1Image(np.arange(8, dtype=np.int16).reshape(2, 2, 2), np.eye(4)), str(path))

    def denied(self, *args, **kwargs):  # root reads everything, so the refusal is injected
        raise PermissionError(13, "Permission denied", str(self))

    with pytest.raises(DatasetError, match=f"{path.parent}: a folder, not a NIfTI file"):
        read_image(path.parent)
    monkeypatch.setattr(type(path), "stat", denied)
    with pytest.raises(DatasetError, match=rf"permission denied reading {path} \(check the permissions of the file"):
        read_image(path)


def test_empty_four_d_file_of_several_channels_is_refused(tmp_path):
    from oss_net.data.channels import file_grid, read_file_channels

    path = tmp_path / "case_0000.nii.gz"  # a Decathlon-style file: every channel of the case on the last axis
    nib.save(nib.Nifti1Image(np.zeros((8, 0, 8, 2), np.float32), np.eye(4)), str(path))
    for read in (read_file_channels, file_grid):
        with pytest.raises(DatasetError, match=rf"{path}: empty volume, shape \(8, 0, 8\) has a zero-size axis"):
            read(path, 2)
