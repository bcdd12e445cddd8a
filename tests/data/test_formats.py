"""NRRD, MetaImage and DICOM through SimpleITK on the one reading path: voxels and geometry as SimpleITK reads them,
outputs that SimpleITK reads back with the input's geometry bit for bit, and the header checks of every format."""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from oss_net.data import nifti
from oss_net.data.formats import geometry_of_affine, itk_affine, output_suffix, save_image
from oss_net.data.nifti import read_header, read_image, read_label_map
from oss_net.datasets import DatasetError
from tests.data.image_helpers import geometry, oblique_image, series_reading, write_dicom_series

ITK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")


@pytest.mark.parametrize("suffix", ITK_SUFFIXES + (".nii.gz",))
def test_outputs_carry_the_inputs_exact_geometry_as_simpleitk_reads_it(tmp_path, suffix):
    """Read (nibabel's order, RAS affine) and written back: SimpleITK reads the output with the input's geometry,
    bit for bit, on oblique grids (SimpleITK's own NRRD and NIfTI round trips miss the last digit there)."""
    rng = np.random.default_rng(1)
    for seed in range(6):
        array = rng.random((5, 6, 7)).astype(np.float32)
        source = tmp_path / f"in{seed}{suffix}"
        sitk.WriteImage(oblique_image(array, seed), str(source), True)
        volume = read_image(source)
        assert np.array_equal(volume.array, array)
        reference = sitk.ReadImage(str(source))
        np.testing.assert_allclose(volume.affine, itk_affine(reference.GetSpacing(), reference.GetOrigin(),
                                                             reference.GetDirection()), atol=1e-5)
        target = tmp_path / "out" / f"labels{seed}{suffix}"
        target.parent.mkdir(exist_ok=True)
        save_image((array > 0.5).astype(np.uint8), volume.affine, target, volume.header)
        written = sitk.ReadImage(str(target))
        assert geometry(written) == geometry(reference)
        assert np.array_equal(sitk.GetArrayFromImage(written), (array > 0.5).astype(np.uint8).transpose(2, 1, 0))
    assert not list((tmp_path / "out").glob(".*"))  # no staging folder or temporary file left


def test_formats_agree_on_the_affine_and_a_ras_nrrd_reads_as_simpleitk_says(tmp_path):
    array = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    image = oblique_image(array, seed=3)
    for suffix in (".mha", ".nii.gz"):
        sitk.WriteImage(image, str(tmp_path / f"a{suffix}"))
    np.testing.assert_allclose(read_image(tmp_path / "a.mha").affine, read_image(tmp_path / "a.nii.gz").affine, atol=1e-4)
    assert np.array_equal(read_image(tmp_path / "a.mha").array, np.asarray(nib.load(str(tmp_path / "a.nii.gz")).dataobj))
    ras = tmp_path / "ras.nhdr"  # a header in RAS space, as 3D Slicer can write: SimpleITK turns it to LPS
    sitk.WriteImage(image, str(ras))
    text = ras.read_text().replace("left-posterior-superior", "right-anterior-superior")
    ras.write_text(text)
    reference = sitk.ReadImage(str(ras))
    volume = read_image(ras)
    np.testing.assert_allclose(volume.affine, itk_affine(reference.GetSpacing(), reference.GetOrigin(),
                                                         reference.GetDirection()), atol=1e-9)
    save_image(volume.array.astype(np.uint8), volume.affine, tmp_path / "out.nhdr", volume.header)
    assert geometry(sitk.ReadImage(str(tmp_path / "out.nhdr"))) == geometry(reference)
    spacing, origin, direction = geometry_of_affine(volume.affine)
    np.testing.assert_allclose(spacing, reference.GetSpacing(), rtol=1e-12)
    np.testing.assert_allclose(origin, reference.GetOrigin(), atol=1e-9)
    np.testing.assert_allclose(direction, reference.GetDirection(), atol=1e-12)


def test_a_multi_component_image_is_a_four_d_file_of_channels(tmp_path):
    vector = sitk.Compose([sitk.GetImageFromArray(np.full((6, 5, 4), c, np.float32)) for c in range(3)])
    sitk.WriteImage(vector, str(tmp_path / "v.mha"))
    from oss_net.data.channels import read_file_channels

    channels = read_file_channels(tmp_path / "v.mha", 3)
    assert [float(v.array.mean()) for v in channels] == [0.0, 1.0, 2.0] and channels[0].array.shape == (4, 5, 6)
    with pytest.raises(DatasetError, match=r"expected a 3D volume, got shape \(4, 5, 6, 3\)"):
        read_image(tmp_path / "v.mha")


def test_header_checks_hold_for_every_format(tmp_path, monkeypatch):
    """Truncated data, a tiny file declaring a huge volume and the memory budget are refused from the header."""
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((6, 5, 4), np.int16)), str(tmp_path / "raw.mha"))
    data = (tmp_path / "raw.mha").read_bytes()
    (tmp_path / "cut.mha").write_bytes(data[:-20])
    with pytest.raises(DatasetError, match=r"cut.mha: truncated or corrupt voxel data: the header declares 4×5×6 int16"):
        read_header(tmp_path / "cut.mha")
    bomb = tmp_path / "bomb.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 4, 4), np.uint8)), str(bomb), True)
    bomb.write_bytes(bomb.read_bytes().replace(b"sizes: 4 4 4", b"sizes: 20000 20000 20000"))
    with pytest.raises(DatasetError, match=r"bomb.nrrd: truncated or corrupt voxel data: the header declares "
                                           r"20000×20000×20000 uint8 \(8.0 TB\).*inflates to at most"):
        read_image(bomb)
    monkeypatch.setattr(nifti, "memory_budget", lambda: 100)
    with pytest.raises(DatasetError, match=r"raw.mha: the header declares 4×5×6 int16 .* more than the 100 B available"):
        read_image(tmp_path / "raw.mha")
    (tmp_path / "raw.mhd").write_text((tmp_path / "raw.mha").read_text(errors="ignore").split("ElementDataFile")[0]
                                      + "ElementDataFile = missing.raw\n")
    with pytest.raises(DatasetError, match=r"raw.mhd: its data file .*missing.raw is missing"):
        read_header(tmp_path / "raw.mhd")


@pytest.mark.parametrize("direction, problem", [("(0,0,0)", "affine holds NaN or Inf"),
                                                  ("(1,0,0)", "affine is degenerate")])
def test_a_bad_direction_is_refused_like_a_nifti_affine(tmp_path, direction, problem):
    """The geometry of every format passes the one affine check (`oss_net.geometry.header_affine`)."""
    path = tmp_path / "bad.nhdr"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 4, 4), np.uint8)), str(path))
    path.write_text(path.read_text().replace("(0,0,1)", direction))
    with pytest.raises(DatasetError, match=rf"bad.nhdr: {problem}"):
        read_header(path)


def test_a_dicom_series_reads_as_simpleitk_reads_it(tmp_path):
    volume = (np.random.default_rng(0).random((20, 16, 6)) * 1000).astype(np.int16)
    write_dicom_series(tmp_path / "ct", volume, "1.2.826.0.1.3680043.2.1125.1.1", "axial")
    reference = series_reading(tmp_path / "ct")
    read = read_image(tmp_path / "ct")  # the folder of one series
    assert np.array_equal(read.array, volume)
    assert np.array_equal(read.affine, itk_affine(reference.GetSpacing(), reference.GetOrigin(), reference.GetDirection()))
    from_file = read_image(sorted((tmp_path / "ct").iterdir())[3])  # a file stands for its series
    assert np.array_equal(from_file.array, volume)
    save_image((volume > 500).astype(np.uint8), read.affine, tmp_path / "labels.mha", read.header)
    assert geometry(sitk.ReadImage(str(tmp_path / "labels.mha"))) == geometry(reference)
    assert output_suffix(tmp_path / "ct") == ".mha" and output_suffix(tmp_path / "x.nii") == ".nii.gz"
    assert output_suffix(tmp_path / "x.nrrd", "nii") == ".nii"


def test_a_folder_of_several_series_names_them_and_none_is_guessed(tmp_path):
    volume = np.zeros((8, 8, 3), np.int16)
    write_dicom_series(tmp_path / "mixed", volume, "1.2.3.4.1", "first series")
    write_dicom_series(tmp_path / "mixed", volume, "1.2.3.4.2", "second series")
    with pytest.raises(DatasetError, match=r"mixed: holds 2 DICOM series; choose one with --series_uid UID: "
                                           r"1\.2\.3\.4\.1 \(3 slice\(s\), 'first series'\); 1\.2\.3\.4\.2"):
        read_header(tmp_path / "mixed")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="empty: a folder, not a NIfTI file or a DICOM series"):
        read_image(tmp_path / "empty")


def test_nnunet_datasets_in_every_format(tmp_path):
    """A dataset.json's file_ending may name any format read here; a detached header's data files are no strays."""
    from oss_net.data import discover
    from oss_net.data.synthetic_layouts import write_nnunet_dataset

    root = write_nnunet_dataset(tmp_path / "nifti", cases=2, shape=(12, 12, 10), seed=0, test_cases=1)
    for suffix in (".mhd", ".nrrd"):
        converted = write_nnunet_dataset(tmp_path / suffix.lstrip("."), 2, (12, 12, 10), seed=0, test_cases=1,
                                         file_ending=suffix)
        cases = discover("nnunet", converted, "all")
        assert [c.case_id for c in cases] == [c.case_id for c in discover("nnunet", root, "all")]
        original, other = discover("nnunet", root, "all")[0], cases[0]
        assert other.images[1].name == f"{other.case_id}_0001{suffix}"
        assert np.array_equal(read_label_map(other.label).array, read_label_map(original.label).array)
        np.testing.assert_allclose(read_image(other.images[1]).affine, read_image(original.images[1]).affine, atol=1e-4)
    record = json.loads((root / "dataset.json").read_text())
    (root / "dataset.json").write_text(json.dumps({**record, "file_ending": ".png"}))
    with pytest.raises(DatasetError, match=r"file_ending '\.png' is not a 3-D image format read here"):
        discover("nnunet", root, "all")
