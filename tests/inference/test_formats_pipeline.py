"""predict → evaluate on folders of NRRD and MetaImage files and on a DICOM series: outputs in the input's format
whose geometry SimpleITK reads exactly as the input's, and the same predictions and scores as from NIfTI."""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from oss_net.data import dataset_info, discover
from oss_net.data.fingerprint import compute_fingerprint
from oss_net.data.synthetic_layouts import write_nnunet_dataset
from oss_net.evaluate import evaluate_folders
from oss_net.inference import predict_files
from oss_net.metrics import dice
from oss_net.models import network_config, save_model
from oss_net.predict import main
from tests.data.image_helpers import geometry, series_reading, write_dicom_series

from .conftest import IntensityModel

SHAPE = (24, 22, 16)


def nnunet_model(root: Path, path: Path) -> Path:
    """The intensity model with the fingerprint of the dataset at `root` (read in whatever format it has)."""
    fingerprint = compute_fingerprint(discover("nnunet", root, "train"), dataset_info("nnunet", root))
    save_model(path, IntensityModel(network_config("C", "nnunet", demo=True, fingerprint=fingerprint,
                                                   volume_shape=(32, 32, 32))))
    return path


@pytest.fixture(scope="module")
def nifti_run(tmp_path_factory):
    """The NIfTI dataset, its model, and the label maps and scores predicted from it (the reference)."""
    base = tmp_path_factory.mktemp("nifti")
    root = write_nnunet_dataset(base, cases=2, shape=SHAPE, seed=3, test_cases=0)
    checkpoint = nnunet_model(root, base / "model.pt")
    written = predict_files([root / "imagesTr"], base / "out", checkpoint, cpu=True)
    return checkpoint, written, evaluate_folders(base / "out", root / "labelsTr", base / "scores")


@pytest.mark.parametrize("suffix", [".nrrd", ".mha"])
def test_predict_and_evaluate_a_folder_in_format(nifti_run, tmp_path, suffix):
    checkpoint, reference, reference_scores = nifti_run
    root = write_nnunet_dataset(tmp_path, cases=2, shape=SHAPE, seed=3, test_cases=0, file_ending=suffix)
    assert nnunet_model(root, tmp_path / "model.pt").exists()  # the fingerprint reads the format too
    out = tmp_path / "out"
    written = predict_files([root / "imagesTr"], out, checkpoint, cpu=True, save_probabilities=True)
    assert [p.name for p in written] == [f"case_000{suffix}", f"case_001{suffix}"]
    for path, nifti in zip(written, reference):
        source = root / "imagesTr" / path.name.replace(suffix, f"_0000{suffix}")
        assert geometry(sitk.ReadImage(str(path))) == geometry(sitk.ReadImage(str(source)))  # exact
        assert geometry(sitk.ReadImage(str(out / "probabilities" / path.name)))[1:] == geometry(
            sitk.ReadImage(str(source)))[1:]
        labels = sitk.GetArrayFromImage(sitk.ReadImage(str(path))).transpose(2, 1, 0)
        assert np.array_equal(labels, np.asarray(nib.load(str(nifti)).dataobj))  # as from the NIfTI files
    scores = evaluate_folders(out, root / "labelsTr", tmp_path / "scores")
    assert list(dict.fromkeys(row["case"] for row in scores["per_case"])) == ["case_000", "case_001"]  # every label
    assert [row["dice"] for row in scores["per_case"]] == pytest.approx(
        [row["dice"] for row in reference_scores["per_case"]], abs=1e-12)
    converted = predict_files([root / "imagesTr"], tmp_path / "nii", checkpoint, cpu=True, output_format="nii.gz")
    assert [p.name for p in converted] == ["case_000.nii.gz", "case_001.nii.gz"]


def test_predict_and_evaluate_a_dicom_series(lits_checkpoint, synthetic_lits_root, tmp_path, capsys):
    """A DICOM series written by SimpleITK from a synthetic volume: label map as .mha on SimpleITK's reading of the
    series, exactly; the same labels as from the NIfTI volume; scored against a label on that grid."""
    volume = nib.load(str(synthetic_lits_root / "volume-0.nii"))
    series = write_dicom_series(tmp_path / "scans" / "liver_ct", np.asarray(volume.dataobj), "1.2.826.0.1.1.7",
                                "portal venous")
    label = sitk.GetImageFromArray(np.asarray(nib.load(str(synthetic_lits_root / "segmentation-0.nii")).dataobj)
                                   .astype(np.uint8).transpose(2, 1, 0))
    label.CopyInformation(series)
    (tmp_path / "labels").mkdir()
    sitk.WriteImage(label, str(tmp_path / "labels" / "liver_ct.mha"))
    written = predict_files([tmp_path / "scans" / "liver_ct"], tmp_path / "out", lits_checkpoint, cpu=True)
    assert written == [tmp_path / "out" / "liver_ct.mha"]
    assert geometry(sitk.ReadImage(str(written[0]))) == geometry(series_reading(tmp_path / "scans" / "liver_ct"))
    from_nifti = predict_files([synthetic_lits_root / "volume-0.nii"], tmp_path / "nifti", lits_checkpoint, cpu=True)
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(written[0]))).transpose(2, 1, 0)
    assert labels.any() and np.array_equal(labels, np.asarray(nib.load(str(from_nifti[0])).dataobj))
    scores = evaluate_folders(tmp_path / "out", tmp_path / "labels", tmp_path / "scores")
    truth = sitk.GetArrayFromImage(label).transpose(2, 1, 0) > 0
    assert scores["cases"] == 1 and scores["per_case"][0]["dice"] == pytest.approx(dice(labels > 0, truth))
    # a second series in the folder: listed, and --series_uid picks one
    write_dicom_series(tmp_path / "scans" / "liver_ct", np.asarray(volume.dataobj) // 2, "1.2.826.0.1.1.8", "late")
    out = tmp_path / "two"
    assert main(["-i", str(tmp_path / "scans" / "liver_ct"), "-o", str(out), "-m", str(lits_checkpoint), "--cpu"]) == 2
    error = capsys.readouterr().err
    assert "2 DICOM series (choose one with --series_uid UID)" in error and "1.2.826.0.1.1.8" in error
    assert "'portal venous'" in error and not out.exists()
    assert main(["-i", str(tmp_path / "scans" / "liver_ct"), "-o", str(out), "-m", str(lits_checkpoint), "--cpu",
                 "--series_uid", "1.2.826.0.1.1.7", "--output_format", "nrrd"]) == 0
    chosen = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "liver_ct.nrrd"))).transpose(2, 1, 0)
    assert np.array_equal(chosen, labels)


def test_check_training_and_prediction_on_an_nnunet_dataset_of_detached_headers(tmp_path, capsys):
    """Every command on an nnU-Net dataset whose file_ending is .nhdr (a header and a data file per image)."""
    from oss_net.data.check import main as check_main
    from oss_net.training import demo_settings, train

    root = write_nnunet_dataset(tmp_path, cases=3, shape=(16, 16, 12), seed=0, test_cases=1, file_ending=".nhdr")
    assert check_main([str(root)]) == 0
    assert "4 case(s): 4 ok" in capsys.readouterr().out
    run = train(demo_settings(str(root), str(tmp_path / "run"), max_iterations=2, volume_shape=(32, 32, 32),
                              test=False))
    assert (run / "final_model.pt").is_file()
    out = tmp_path / "out"
    written = predict_files([root / "imagesTs"], out, run / "final_model.pt", cpu=True)
    assert [p.name for p in written] == ["case_003.nhdr"] and (out / "case_003.raw.gz").is_file()
    assert geometry(sitk.ReadImage(str(written[0]))) == geometry(sitk.ReadImage(str(root / "imagesTs" / "case_003_0000.nhdr")))
