"""oss-net-predict: every input kind gives flat label maps on the input's grid; bad input fails before writing."""
from __future__ import annotations

import json
import os
import shlex
import shutil
import tomllib
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from oss_net.data import dataset_info, discover, discover_case_folder
from oss_net.data.fingerprint import compute_fingerprint
from oss_net.data.synthetic_layouts import write_msd_dataset, write_nnunet_dataset
from oss_net.evaluate import evaluate_folders
from oss_net.inference import InferenceSettings, predict_files, run_inference
from oss_net.models import network_config, save_model
from oss_net.predict import main

from .conftest import IntensityModel

ROOT = Path(__file__).resolve().parents[2]


def brats_case_files(root: Path):
    return discover("brats", root, "val")[0]


def assert_on_input_grid(output: Path, source: Path) -> np.ndarray:
    """The label map has the source's shape, affine and units, uint8 labels; returns its voxels."""
    written, image = nib.load(str(output)), nib.load(str(source))
    assert written.shape == image.shape[:3]
    np.testing.assert_allclose(written.affine, image.affine, atol=1e-6)
    assert written.header.get_xyzt_units() == image.header.get_xyzt_units()
    assert written.get_data_dtype() == np.uint8
    return np.asarray(written.dataobj)


def runner_mask(checkpoint: Path, case_path: Path, out: Path, case_id: str) -> np.ndarray:
    """The mask `oss-net-infer` writes for the same case (the one pipeline both commands share)."""
    run_inference(InferenceSettings(load_model=str(checkpoint), dataset_path=str(case_path), output_dir=str(out),
                                    no_mesh=True, overlay=False))
    return np.asarray(nib.load(str(out / case_id / f"{case_id}_mask.nii.gz")).dataobj)


@pytest.fixture(scope="module")
def nnunet_root(tmp_path_factory) -> Path:
    """An nnU-Net dataset (3 MRI channels, oblique anisotropic affines) with 2 imagesTs cases."""
    return write_nnunet_dataset(tmp_path_factory.mktemp("nnunet"), cases=4, shape=(32, 28, 20), seed=1, test_cases=2)


@pytest.fixture(scope="module")
def nnunet_checkpoint(nnunet_root, tmp_path_factory) -> Path:
    """The intensity model for the nnU-Net dataset, with the dataset's fingerprint (and channel names)."""
    fingerprint = compute_fingerprint(discover("nnunet", nnunet_root, "train"), dataset_info("nnunet", nnunet_root))
    config = network_config("C", "nnunet", demo=True, fingerprint=fingerprint, volume_shape=(32, 32, 32))
    path = tmp_path_factory.mktemp("nnunet_model") / "model.pt"
    save_model(path, IntensityModel(config))
    return path


def test_brats_case_folder_gives_the_runners_mask(brats_checkpoint, synthetic_brats_root, tmp_path):
    files = brats_case_files(synthetic_brats_root)
    folder = files.images[0].parent
    written = predict_files([folder], tmp_path / "out", brats_checkpoint, cpu=True)
    assert written == [tmp_path / "out" / f"{folder.name}.nii.gz"]
    labels = assert_on_input_grid(written[0], files.images[0])
    np.testing.assert_array_equal(labels, runner_mask(brats_checkpoint, folder, tmp_path / "infer", files.case_id))
    # flat files pair with the labels by case id (as nnU-Net's evaluation does), and the model really segments
    scores = evaluate_folders(tmp_path / "out", folder.parent, tmp_path / "scores", foreground=True)  # whole tumour
    assert [row["case"] for row in scores["per_case"]] == [files.case_id]
    assert scores["per_case"][0]["dice"] > 0.9


def test_channel_files_are_one_case_named_after_the_first(brats_checkpoint, synthetic_brats_root, tmp_path):
    files = brats_case_files(synthetic_brats_root)
    by_folder = predict_files([files.images[0].parent], tmp_path / "folder", brats_checkpoint, cpu=True)[0]
    written = predict_files(list(files.images), tmp_path / "files", brats_checkpoint, cpu=True)
    assert [p.name for p in written] == [f"{files.case_id}_flair.nii.gz"]
    np.testing.assert_array_equal(assert_on_input_grid(written[0], files.images[0]), np.asarray(nib.load(str(by_folder)).dataobj))


def test_single_file_with_probabilities_and_mesh(lits_checkpoint, synthetic_lits_root, tmp_path):
    case = discover_case_folder(synthetic_lits_root / "volume-0.nii", "lits")
    out = tmp_path / "out"
    written = predict_files([case.images[0]], out, lits_checkpoint, cpu=True, save_probabilities=True, mesh=True)
    assert written == [out / "volume-0.nii.gz"]  # NIfTI, compressed
    labels = assert_on_input_grid(written[0], case.images[0])
    probabilities = nib.load(str(out / "probabilities" / "volume-0.nii.gz"))  # in a subfolder: nnU-Net's tools take
    # every file of the folder with the labels' ending for a case
    assert probabilities.shape == labels.shape and probabilities.get_data_dtype() == np.float32
    np.testing.assert_allclose(probabilities.affine, nib.load(str(case.images[0])).affine, atol=1e-6)
    # resampled grid: the labels are the probabilities resampled back (trilinear) above the threshold, voxel for voxel
    assert labels.any() and np.array_equal(np.asarray(probabilities.dataobj) > 0.5, labels > 0)
    assert {p.name for p in out.iterdir()} >= {"volume-0_prediction.obj", "volume-0_prediction.ply"}


def test_imagests_folder_of_brats_channels(brats_checkpoint, synthetic_brats_root, tmp_path):
    """nnU-Net naming: channels grouped by case id and ordered by XXXX, whatever the listing order."""
    folder = tmp_path / "imagesTs"
    folder.mkdir()
    cases = discover("brats", synthetic_brats_root, "all")[:2]
    for number, case in enumerate(cases):
        for channel, path in enumerate(case.images):
            shutil.copy(path, folder / f"scan{number}_{channel:04d}.nii.gz")
    written = predict_files([folder], tmp_path / "out", brats_checkpoint, cpu=True)
    assert [p.name for p in written] == ["scan0.nii.gz", "scan1.nii.gz"]
    for path, case in zip(written, cases):
        by_folder = predict_files([case.images[0].parent], tmp_path / case.case_id, brats_checkpoint, cpu=True)[0]
        np.testing.assert_array_equal(assert_on_input_grid(path, case.images[0]), np.asarray(nib.load(str(by_folder)).dataobj))


def test_nnunet_imagests_on_oblique_grids(nnunet_checkpoint, nnunet_root, tmp_path):
    images = nnunet_root / "imagesTs"
    case_ids = sorted({p.name.rsplit("_", 1)[0] for p in images.iterdir()})
    assert len(case_ids) == 2
    written = predict_files([images], tmp_path / "out", nnunet_checkpoint, cpu=True)
    assert [p.name for p in written] == [f"{case_id}.nii.gz" for case_id in case_ids]
    for path, case_id in zip(written, case_ids):
        source = images / f"{case_id}_0000.nii.gz"
        assert not np.allclose(nib.load(str(source)).affine[:3, :3], np.diag(np.diag(nib.load(str(source)).affine[:3, :3])))
        assert_on_input_grid(path, source)


def test_decathlon_4d_files_are_one_case_each(tmp_path):
    """A Decathlon imagesTs folder: each 4-D file is a case whose last axis holds its channels."""
    root = write_msd_dataset(tmp_path / "msd", cases=4, shape=(28, 28, 20), seed=0, test_cases=2)
    fingerprint = compute_fingerprint(discover("msd", root, "train"), dataset_info("msd", root))
    checkpoint = tmp_path / "msd.pt"
    save_model(checkpoint, IntensityModel(network_config("C", "msd", demo=True, fingerprint=fingerprint,
                                                         volume_shape=(32, 32, 32))))
    written = predict_files([root / "imagesTs"], tmp_path / "out", checkpoint, cpu=True)
    assert [p.name for p in written] == ["tumour_004.nii.gz", "tumour_005.nii.gz"]
    for path in written:
        source = root / "imagesTs" / path.name
        assert len(nib.load(str(source)).shape) == 4
        assert_on_input_grid(path, source)  # a 3-D label map on the 4-D image's grid


def test_wrong_channel_count_is_one_line_naming_the_file(brats_checkpoint, synthetic_lits_root, tmp_path, capsys):
    volume = synthetic_lits_root / "volume-0.nii"
    out = tmp_path / "out"
    status = main(["-i", str(volume), "-o", str(out), "-m", str(brats_checkpoint), "--cpu"])
    error = capsys.readouterr().err.strip()
    assert status == 2
    assert len(error.splitlines()) == 1
    assert str(volume) in error and "expects 4 channel(s) (flair, t1, t1ce, t2)" in error
    assert not out.exists()  # nothing written before the check


def test_every_problem_is_listed_at_once(nnunet_checkpoint, nnunet_root, tmp_path, capsys):
    folder = tmp_path / "imagesTs"
    shutil.copytree(nnunet_root / "imagesTs", folder)
    first, second = sorted({p.name.rsplit("_", 1)[0] for p in folder.iterdir()})
    (folder / f"{first}_0001.nii.gz").unlink()  # a gap in the channels
    shutil.copy(folder / f"{second}_0000.nii.gz", folder / f"{second}_0003.nii.gz")  # one channel too many
    missing = tmp_path / "absent.nii.gz"
    status = main(["-i", str(folder), str(missing), "-o", str(tmp_path / "out"), "-m", str(nnunet_checkpoint)])
    error = capsys.readouterr().err.strip()
    assert status == 2 and len(error.splitlines()) == 1
    assert "3 problem(s)" in error
    assert f"{first}_0001" in error and f"{second}_0003.nii.gz" in error and str(missing) in error


def test_channels_given_out_of_order_are_named(brats_checkpoint, synthetic_brats_root, tmp_path):
    from oss_net.inference import InferenceError

    flair, t1, t1ce, t2 = brats_case_files(synthetic_brats_root).images
    with pytest.raises(InferenceError, match=rf"{t1.name}: looks like channel t1 but is given as channel 1 \(flair\)"):
        predict_files([t1, flair, t1ce, t2], tmp_path / "out", brats_checkpoint)


def test_output_never_overwrites_an_input(lits_checkpoint, synthetic_lits_root, tmp_path, capsys):
    folder = tmp_path / "scans"
    folder.mkdir()
    scan = folder / "liver.nii.gz"
    nib.save(nib.load(str(synthetic_lits_root / "volume-0.nii")), str(scan))
    before = scan.read_bytes()
    assert main(["-i", str(scan), "-o", str(folder), "-m", str(lits_checkpoint)]) == 2
    assert f"{folder}: the output folder is the input folder" in capsys.readouterr().err
    assert scan.read_bytes() == before


def test_a_file_it_did_not_write_is_replaced_only_with_overwrite(lits_checkpoint, synthetic_lits_root, tmp_path, capsys):
    """The user's liver.nii.gz in the output folder stays until --overwrite; afterwards the file is ours (recorded),
    so a second run replaces it without the flag, and predictions.json holds the case's entry."""
    scan, out = synthetic_lits_root / "volume-0.nii", tmp_path / "out"
    out.mkdir()
    theirs = out / "volume-0.nii.gz"
    theirs.write_bytes(b"the user's own label map")
    assert main(["-i", str(scan), "-o", str(out), "-m", str(lits_checkpoint), "--cpu"]) == 2
    assert (f"{theirs}: already exists and was not written by this tool; it is never replaced: choose another output "
            "folder, or pass --overwrite to replace it") in capsys.readouterr().err
    assert theirs.read_bytes() == b"the user's own label map" and sorted(p.name for p in out.iterdir()) == [theirs.name]
    assert main(["-i", str(scan), "-o", str(out), "-m", str(lits_checkpoint), "--cpu", "--overwrite"]) == 0
    assert nib.load(str(theirs)).shape == nib.load(str(scan)).shape
    assert main(["-i", str(scan), "-o", str(out), "-m", str(lits_checkpoint), "--cpu"]) == 0
    (entry,) = json.loads((out / "predictions.json").read_text())["cases"]
    assert entry["case"] == "volume-0" and entry["label_map"] == theirs.name and entry["input_warnings"] == []


def test_continue_skips_finished_cases_and_redoes_half_done_ones(brats_checkpoint, synthetic_brats_root, tmp_path):
    folder = tmp_path / "imagesTs"
    folder.mkdir()
    for number, case in enumerate(discover("brats", synthetic_brats_root, "all")[:2]):
        for channel, path in enumerate(case.images):
            os.symlink(path, folder / f"scan{number}_{channel:04d}.nii.gz")
    out = tmp_path / "out"
    finished, half_done = predict_files([folder], out, brats_checkpoint, cpu=True, save_probabilities=True)
    stamp = finished.stat().st_mtime_ns
    expected = half_done.read_bytes()
    half_done.unlink()  # killed after the probabilities, before the label map (written last)
    assert main(["-i", str(folder), "-o", str(out), "-m", str(brats_checkpoint), "--cpu", "--save_probabilities",
                 "--continue"]) == 0
    assert finished.stat().st_mtime_ns == stamp
    assert half_done.read_bytes() == expected


def test_console_script_is_declared():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["oss-net-predict"] == "oss_net.predict:main"


def test_ctrl_c_prints_the_command_that_goes_on_and_it_does(brats_checkpoint, synthetic_brats_root, tmp_path, capsys,
                                                            monkeypatch):
    from oss_net.inference.segmenter import Segmenter

    folder = tmp_path / "imagesTs"
    folder.mkdir()
    for number, case in enumerate(discover("brats", synthetic_brats_root, "all")[:2]):
        for channel, path in enumerate(case.images):
            os.symlink(path, folder / f"scan{number}_{channel:04d}.nii.gz")
    predicted = []
    predict = Segmenter.predict

    def ctrl_c_on_the_second_case(self, case):
        predicted.append(case.case_id)
        if len(predicted) == 2:
            raise KeyboardInterrupt
        return predict(self, case)

    monkeypatch.setattr(Segmenter, "predict", ctrl_c_on_the_second_case)
    arguments = ["-i", str(folder), "-o", str(tmp_path / "out"), "-m", str(brats_checkpoint), "--cpu"]
    assert main(arguments) == 130
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert ": interrupted; to go on where it stopped: " in line and len(capsys.readouterr().err) == 0
    command = shlex.split(line.split("to go on where it stopped: ", 1)[1])
    assert command[-len(arguments) - 1:] == [*arguments, "--continue"]
    first = tmp_path / "out" / "scan0.nii.gz"
    stamp = first.stat().st_mtime_ns
    monkeypatch.setattr(Segmenter, "predict", predict)
    assert main(command[-len(arguments) - 1:]) == 0
    assert first.stat().st_mtime_ns == stamp and (tmp_path / "out" / "scan1.nii.gz").is_file()


def test_prediction_flags_reach_the_predictor_and_bad_values_are_refused(brats_checkpoint, synthetic_brats_root,
                                                                          tmp_path, capsys, caplog):
    """--mode, --refinement, --threshold and --min_component_voxels as oss-net-infer has them; `--mode standard` is
    the mode, never an abbreviated `--model`."""
    folder = brats_case_files(synthetic_brats_root).images[0].parent
    out = tmp_path / "out"
    with caplog.at_level("INFO", logger="oss_net.inference.predictor"):
        assert main(["-i", str(folder), "-o", str(out), "-m", str(brats_checkpoint), "--cpu", "--mode", "standard",
                     "--refinement", "original", "--threshold", "0.3", "--mesh", "--min_component_voxels", "0"]) == 0
    assert any(m.startswith("standard inference (original refinement)") for m in caplog.messages)
    lower = np.asarray(nib.load(str(out / f"{folder.name}.nii.gz")).dataobj)
    assert (out / f"{folder.name}_prediction.obj").is_file()
    default = predict_files([folder], tmp_path / "default", brats_checkpoint, cpu=True)[0]
    assert lower.sum() >= np.asarray(nib.load(str(default)).dataobj).sum()  # a lower threshold keeps more
    for flags, message in ((["--threshold", "1.5"], "threshold must lie in (0, 1), got 1.5"),
                           (["--min_component_voxels", "-1"], "min_component_voxels must be >= 0, got -1")):
        assert main(["-i", str(folder), "-o", str(tmp_path / "bad"), "-m", str(brats_checkpoint), *flags]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
