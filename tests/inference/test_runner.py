"""run_inference and the command line: the files of a case, --continue, and bad inputs."""
from __future__ import annotations

import csv
import json
import logging
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest
import trimesh

from oss_net.data import DATASETS, discover, discover_case_folder, load_case
from oss_net.inference import InferenceSettings, run_inference
from oss_net.evaluate import evaluate_folders
from oss_net.inference.cli import build_parser, main
from oss_net.inference.run_summary import summary_table
from oss_net.inference.writers import model_grid_affine
from oss_net.io import OUTPUT_MANIFEST
from oss_net.metrics import dice
from oss_net.models import demo_config

from .conftest import intensity_model


def settings(checkpoint: Path, root: Path, out: Path, **options) -> InferenceSettings:
    return InferenceSettings(load_model=str(checkpoint), dataset_path=str(root), output_dir=str(out), **options)


def test_brats_case_files_on_the_input_grid(brats_checkpoint, synthetic_brats_root, tmp_path):
    out = tmp_path / "out"
    run_inference(settings(brats_checkpoint, synthetic_brats_root, out, save_probabilities=True, mode="both"))
    files = discover("brats", synthetic_brats_root, "val")[0]
    folder = out / files.case_id
    flair = nib.load(str(files.images[0]))
    mask = nib.load(str(folder / f"{files.case_id}_mask.nii.gz"))
    probability = nib.load(str(folder / f"{files.case_id}_probability.nii.gz"))
    for image, dtype in ((mask, np.uint8), (probability, np.float32)):
        assert image.shape == flair.shape
        assert np.allclose(image.affine, flair.affine)
        assert image.get_data_dtype() == dtype
        assert image.header.get_xyzt_units() == flair.header.get_xyzt_units()
    label = np.asarray(nib.load(str(files.label)).dataobj) > 0
    predicted = np.asarray(mask.dataobj) > 0
    assert np.array_equal(predicted, np.asarray(probability.dataobj) > 0.5)

    # the occupancy grid stays on the model grid; the mask is that grid with the padding undone
    occupancy_image = nib.load(str(folder / f"{files.case_id}_occupancy.nii.gz"))
    occupancy = np.asarray(occupancy_image.dataobj)
    case = load_case(files, demo_config("C"), with_border=False)
    assert tuple(occupancy.shape) == case.meta.volume_shape and occupancy.dtype == np.float32
    assert np.array_equal(case.meta.to_input_grid(occupancy > 0.5, order=0), predicted)
    # ... and it opens aligned: its own affine takes each of its voxels to the input voxel it came from
    np.testing.assert_allclose(occupancy_image.affine, model_grid_affine(case.meta), atol=1e-4)
    input_voxels = np.argwhere(predicted)
    model_voxels = trimesh.transform_points(input_voxels, np.linalg.inv(occupancy_image.affine) @ flair.affine)
    assert np.abs(model_voxels - np.rint(model_voxels)).max() < 1e-3
    assert (occupancy[tuple(np.rint(model_voxels).astype(int).T)] > 0.5).all()

    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["dice"] == pytest.approx(dice(predicted, label)) and metrics["dice"] > 0.99
    assert metrics["disagreement"] == 0 and metrics["mode"] == "prior"
    assert metrics["prior_points_evaluated"] < metrics["standard_points_evaluated"]
    assert (folder / f"{files.case_id}_overlay.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # meshes in scanner mm, LPS by default: the prediction surface maps back inside the model grid, and lies on the label's
    prediction = trimesh.load(folder / f"{files.case_id}_prediction.ply")
    label_mesh = trimesh.load(folder / f"{files.case_id}_label.obj")
    assert (folder / f"{files.case_id}_label.obj").read_text().startswith("# SPACE=LPS\n")
    assert b"comment SPACE=LPS" in (folder / f"{files.case_id}_prediction.ply").read_bytes()[:200]
    assert prediction.is_watertight and len(prediction.faces) <= 10_000 and prediction.volume > 0
    lps_to_ras = np.diag([-1.0, -1.0, 1.0, 1.0])
    voxels = trimesh.transform_points(prediction.vertices, np.linalg.inv(model_grid_affine(case.meta)) @ lps_to_ras)
    assert (voxels > -1).all() and (voxels < np.array(case.meta.volume_shape)).all()
    assert np.allclose(prediction.bounds, label_mesh.bounds, atol=1.0 * max(case.meta.spacing))

    summary = json.loads((out / "summary.json").read_text())
    assert [row["case"] for row in summary] == [files.case_id, "mean"]
    assert summary[-1]["dice"] == pytest.approx(metrics["dice"]) and summary[-1]["cases"] == 1
    with open(out / "summary.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0])[:7] == ["case", "dice", "iou", "hd95_mm", "nsd", "seconds", "points_evaluated"]
    assert [row["case"] for row in rows] == [files.case_id, "mean"]
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == [OUTPUT_MANIFEST]  # no staging folder left


def test_lits_single_case_file_resampled_back(lits_checkpoint, synthetic_lits_root, tmp_path):
    volume = sorted(synthetic_lits_root.glob("volume-*.nii*"))[0]
    out = tmp_path / "out"
    run_inference(settings(lits_checkpoint, volume, out, no_mesh=True, mesh_format=("obj",), save_probabilities=True))
    case_id = discover_case_folder(volume, "lits").case_id
    source = nib.load(str(volume))
    mask = nib.load(str(out / case_id / f"{case_id}_mask.nii.gz"))
    assert mask.shape == source.shape and np.allclose(mask.affine, source.affine) and mask.get_data_dtype() == np.uint8
    assert not list((out / case_id).glob("*.obj"))
    # LiTS is resampled to the 32³ model grid: the mask is the occupancy resampled back (trilinear), then thresholded,
    # so it is exactly the written input-grid probability above the threshold
    occupancy_image = nib.load(str(out / case_id / f"{case_id}_occupancy.nii.gz"))
    occupancy = np.asarray(occupancy_image.dataobj)
    case = load_case(discover_case_folder(volume, "lits"), demo_config("C", "lits", volume_shape=(32, 32, 32)), with_border=False)
    assert tuple(occupancy.shape) == (32, 32, 32) and case.meta.mode == "resample"
    predicted = np.asarray(mask.dataobj) > 0
    assert np.array_equal(predicted, case.meta.to_input_grid(occupancy, order=1) > 0.5)
    probability = np.asarray(nib.load(str(out / case_id / f"{case_id}_probability.nii.gz")).dataobj)
    assert np.array_equal(predicted, probability > 0.5)
    # the resampled cube spans the same field of view: its corners' outer faces are the input's
    np.testing.assert_allclose(occupancy_image.affine, model_grid_affine(case.meta), atol=1e-4)
    corners = [trimesh.transform_points(np.array([[-0.5] * 3, np.asarray(shape) - 0.5]), image.affine)
               for shape, image in ((occupancy.shape, occupancy_image), (source.shape, source))]
    np.testing.assert_allclose(corners[0], corners[1], atol=1e-3)
    assert 0.0 <= json.loads((out / case_id / "metrics.json").read_text())["dice"] <= 1.0


def test_lits_class_label_map_resampled_back_from_the_probabilities(synthetic_lits_root, tmp_path):
    """An exclusive liver / tumour model on the resampled LiTS grid writes one label map of the dataset's values,
    the label of the probabilities resampled back (not nearest neighbour), scored per class on the input grid."""
    import torch

    from oss_net.data.dataset_info import LITS_INFO
    from oss_net.inference.predictor import Prediction
    from oss_net.inference.writers import CaseWriter, input_grid_labels
    from oss_net.labels import config_with_label_mode, scheme_of

    config = config_with_label_mode(demo_config("C", "lits", volume_shape=(32, 32, 32)), "exclusive", LITS_INFO.labels)
    files = discover("lits", synthetic_lits_root, "val")[0]
    case = load_case(files, config, with_border=False)
    scheme = scheme_of(config)
    occupancy = scheme.targets(torch.from_numpy(np.asarray(case.raw_label).astype(np.int64)))  # [3, 32, 32, 32] one-hot
    prediction = Prediction(occupancy=occupancy, mode="standard", seconds=0.1, points_evaluated=7)
    options = settings(Path("unused.pt"), synthetic_lits_root, tmp_path, no_mesh=True, overlay=False)
    record = CaseWriter(SimpleNamespace(config=config), options.write_options()).write(tmp_path, files, case, prediction)
    written = nib.load(str(tmp_path / f"{files.case_id}_mask.nii.gz"))
    labels = np.asarray(written.dataobj)
    truth = np.asarray(nib.load(str(files.label)).dataobj)
    assert case.meta.mode == "resample" and labels.shape == truth.shape and written.get_data_dtype() == np.uint8
    assert set(np.unique(labels)) == {0, 1, 2}
    assert np.array_equal(labels, input_grid_labels(occupancy.numpy(), case.meta, 0.5, config))
    assert record["dice_liver"] == pytest.approx(dice(labels == 1, truth == 1)) and record["dice_liver"] > 0.8


def test_continue_skips_finished_cases_and_rerun_overwrites(brats_checkpoint, synthetic_brats_root, tmp_path, caplog):
    out = tmp_path / "out"
    options = {"no_mesh": True, "overlay": False}
    run_inference(settings(brats_checkpoint, synthetic_brats_root, out, **options))
    case_id = discover("brats", synthetic_brats_root, "val")[0].case_id
    metrics = out / case_id / "metrics.json"
    os.utime(metrics, (0, 0))
    with caplog.at_level(logging.INFO, logger="oss_net.inference"):
        run_inference(settings(brats_checkpoint, synthetic_brats_root, out, resume=True, **options))
    assert "finished before, skipped (--continue)" in caplog.text
    assert metrics.stat().st_mtime == 0
    assert json.loads((out / "summary.json").read_text())[0]["case"] == case_id
    run_inference(settings(brats_checkpoint, synthetic_brats_root, out, **options))
    assert metrics.stat().st_mtime > 0
    assert sorted(p.name for p in out.iterdir()) == [OUTPUT_MANIFEST, case_id, "inference_settings.json", "summary.csv",
                                                    "summary.json"]


def test_a_failure_while_writing_leaves_no_case_folder(brats_checkpoint, synthetic_brats_root, tmp_path, monkeypatch):
    from oss_net.inference import writers

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(writers, "save_mesh", broken)
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="disk on fire"):
        run_inference(settings(brats_checkpoint, synthetic_brats_root, out, overlay=False))
    assert sorted(p.name for p in out.iterdir()) == [OUTPUT_MANIFEST, "inference_settings.json"]


def _cli(checkpoint: Path, root: Path, out: Path, *extra: str) -> list[str]:
    return ["--load_model", str(checkpoint), "--dataset_path", str(root), "--output_dir", str(out), *extra]


def test_cli_runs_and_checks_the_configuration(brats_checkpoint, synthetic_brats_root, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(_cli(brats_checkpoint, synthetic_brats_root, out, "--network_config", "A", "--dataset", "brats"))
    assert code == 2
    assert "checkpoint holds configuration 'full' (brats), but --network_config 'A'" in capsys.readouterr().err
    assert not out.exists()
    code = main(_cli(brats_checkpoint, synthetic_brats_root, out, "--network_config", "C", "--mode", "prior",
                     "--stages", "8,4,2,1", "--no_mesh", "--no_overlay", "--chunk_size", "333"))
    assert code == 0 and "summary.csv" in capsys.readouterr().out
    saved = json.loads((out / "inference_settings.json").read_text())
    assert saved["stages"] == [8, 4, 2, 1] and saved["chunk_size"] == saved["resolved_chunk_size"] == 333
    assert saved["resolved_mode"] == "prior"


def test_corrupt_checkpoint_is_a_clear_error(synthetic_brats_root, tmp_path, capsys):
    checkpoint = tmp_path / "broken.pt"
    checkpoint.write_bytes(b"PK\x03\x04 this is not a checkpoint")
    out = tmp_path / "out"
    assert main(_cli(checkpoint, synthetic_brats_root, out)) == 2
    assert f"{checkpoint}: not a model checkpoint" in capsys.readouterr().err
    assert not out.exists()


def test_missing_case_files_are_a_clear_error(brats_checkpoint, synthetic_brats_root, tmp_path, capsys):
    case = discover("brats", synthetic_brats_root, "val")[0]
    folder = shutil.copytree(case.images[0].parent, tmp_path / case.case_id)
    next(folder.glob("*_t1ce.nii*")).unlink()
    out = tmp_path / "out"
    assert main(_cli(brats_checkpoint, folder, out)) == 2
    assert "missing t1ce file(s)" in capsys.readouterr().err
    assert not out.exists()


def test_output_folder_that_cannot_be_created(brats_checkpoint, synthetic_brats_root, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    assert main(_cli(brats_checkpoint, synthetic_brats_root, blocker / "out")) == 2
    assert f"{blocker / 'out'}: output folder is not a folder, its parent {blocker} is a file" in capsys.readouterr().err
    assert main(_cli(brats_checkpoint, synthetic_brats_root, blocker)) == 2
    assert f"{blocker}: output folder is not a folder, it is a file (choose another path)" in capsys.readouterr().err


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root can write to read-only folders")
def test_read_only_output_folder(brats_checkpoint, synthetic_brats_root, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o500)
    try:
        assert main(_cli(brats_checkpoint, synthetic_brats_root, out)) == 2
        assert f"{out}: output folder is not writable" in capsys.readouterr().err
        assert not list(out.iterdir())
    finally:
        out.chmod(0o700)


def test_prior_on_a_model_without_segmentation_head(synthetic_brats_root, tmp_path, capsys):
    from oss_net.models import save_model

    checkpoint = tmp_path / "model_A.pt"
    save_model(checkpoint, intensity_model("A"))
    out = tmp_path / "out"
    assert main(_cli(checkpoint, synthetic_brats_root, out, "--mode", "prior")) == 2
    assert "mode 'prior' needs the encoder's segmentation head" in capsys.readouterr().err
    assert not out.exists()


def test_cli_flags_flat_masks_and_oss_net_evaluate_agree(brats_checkpoint, synthetic_brats_root, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(_cli(brats_checkpoint, synthetic_brats_root, out, "--flat", "--threshold", "0.4", "--tolerance_mm", "2",
                     "--min_component_voxels", "1", "--mesh_space", "RAS", "--mesh_format", "stl", "--mesh_edge_mm", "3",
                     "--no_overlay"))
    assert code == 0
    case_id = discover("brats", synthetic_brats_root, "val")[0].case_id
    printed = capsys.readouterr().out
    assert printed.splitlines()[0].split() == ["case", "dice", "iou", "hd95_mm", "nsd", "seconds"]
    assert any(line.startswith(case_id) for line in printed.splitlines())
    saved = json.loads((out / "inference_settings.json").read_text())
    assert (saved["threshold"], saved["tolerance_mm"], saved["min_component_voxels"]) == (0.4, 2.0, 1)
    assert (saved["mesh_space"], saved["mesh_edge_mm"], saved["flat"]) == ("RAS", 3.0, True)
    assert (out / case_id / f"{case_id}_prediction.stl").read_bytes().startswith(b"SPACE=RAS")
    flat = out / f"{case_id}.nii.gz"
    assert flat.read_bytes() == (out / case_id / f"{case_id}_mask.nii.gz").read_bytes()

    # the flat masks go straight into oss-net-evaluate, which scores them as the run did
    scores = evaluate_folders(out, synthetic_brats_root / "MICCAI_BraTS2020_TrainingData", tmp_path / "scores",
                              tolerance_mm=2.0, foreground=True)  # the binary model's whole tumour
    summary = {row["case"]: row for row in json.loads((out / "summary.json").read_text())}
    assert [row["case"] for row in scores["per_case"]] == [case_id]
    for key in ("dice", "iou", "hd95_mm", "nsd"):
        assert scores["per_case"][0][key] == pytest.approx(summary[case_id][key], rel=1e-9)
    assert len(scores["missing_predictions"]) == 3  # the training cases, listed


def test_help_lists_required_flags_first_and_dataset_choices(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # one line per flag, whatever the terminal
    usage = build_parser().format_usage()
    assert usage.split()[2:6] == ["--load_model", "LOAD_MODEL", "--dataset_path", "DATASET_PATH"]
    help_text = build_parser().format_help()
    assert help_text.index("required:") < help_text.index("original flags:")
    assert f"--dataset {{{','.join(DATASETS)}}}" in help_text and "--mesh_space {LPS,RAS}" in help_text
    assert build_parser().parse_args(["--load_model", "m", "--dataset_path", "d", "--dataset", "BraTS"]).dataset == "brats"


def test_summary_table_shows_no_metrics_for_unlabelled_cases():
    rows = [{"case": "labelled", "dice": 0.91234, "iou": 0.8, "hd95_mm": float("nan"), "nsd": 0.7, "seconds": 1.5},
            {"case": "unlabelled", "seconds": 2.0, "mode": "prior"}]
    lines = summary_table(rows).splitlines()
    assert lines[1].split() == ["labelled", "0.9123", "0.8", "-", "0.7", "1.5"]
    assert lines[2].split() == ["unlabelled", "-", "-", "-", "-", "2"]
    assert "nan" not in summary_table(rows)


# ------------------------------------------------------------------ bad cases, --continue manifests, the folder lock


def _copy_root(root: Path, target: Path) -> Path:
    return shutil.copytree(root, target)


def _case_folders(root: Path) -> list[Path]:
    return sorted(p for p in (root / "MICCAI_BraTS2020_TrainingData").iterdir() if p.is_dir())


def _put_nan(flair: Path) -> None:
    image = nib.load(str(flair))
    array = np.asarray(image.dataobj).astype(np.float32)
    array[2, 3, 4] = np.nan
    nib.save(nib.Nifti1Image(array, image.affine), str(flair))


def _shrink(path: Path) -> None:
    image = nib.load(str(path))
    nib.save(nib.Nifti1Image(np.asarray(image.dataobj)[:-2], image.affine), str(path))


def test_every_bad_header_is_listed_before_anything_is_written(brats_checkpoint, synthetic_brats_root, tmp_path, capsys):
    root = _copy_root(synthetic_brats_root, tmp_path / "root")
    first, second = _case_folders(root)[:2]
    _shrink(next(first.glob("*_t1.nii.gz")))
    (next(second.glob("*_t2.nii.gz"))).write_bytes(b"not a nifti")
    out = tmp_path / "out"
    assert main(_cli(brats_checkpoint, root, out, "--split", "all", "--no_mesh")) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if ": error: " in line]
    assert len(lines) == 1 and "2 bad case(s), nothing written" in lines[0] and "--skip_bad_cases" in lines[0]
    assert f"{next(first.glob('*_t1.nii.gz'))}: shape" in lines[0] and f"{next(second.glob('*_t2.nii.gz'))}: not a readable" in lines[0]
    assert not out.exists()


def test_a_case_with_bad_values_does_not_stop_the_others(brats_checkpoint, synthetic_brats_root, tmp_path, capsys):
    root = _copy_root(synthetic_brats_root, tmp_path / "root")
    bad = _case_folders(root)[1]
    flair = next(bad.glob("*_flair.nii.gz"))
    _put_nan(flair)
    out = tmp_path / "out"
    assert main(_cli(brats_checkpoint, root, out, "--split", "all", "--no_mesh", "--no_overlay")) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if ": error: " in line]
    assert len(lines) == 1 and f"{flair}: image contains 1 NaN or Inf voxel(s)" in lines[0] and "--continue" in lines[0]
    good = [p.name for p in _case_folders(root) if p != bad]
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == good  # the other three are done
    assert [row["case"] for row in json.loads((out / "summary.json").read_text())] == [*good, bad.name, "mean"]


def test_skip_bad_cases_records_each_reason_in_the_summary(brats_checkpoint, synthetic_brats_root, tmp_path, capsys):
    root = _copy_root(synthetic_brats_root, tmp_path / "root")
    folders = _case_folders(root)
    _shrink(next(folders[0].glob("*_t1.nii.gz")))  # found by the header check, before any write
    _put_nan(next(folders[2].glob("*_flair.nii.gz")))  # found when the case is read
    out = tmp_path / "out"
    assert main(_cli(brats_checkpoint, root, out, "--split", "all", "--no_mesh", "--no_overlay", "--skip_bad_cases")) == 0
    printed = capsys.readouterr().out
    assert f"skipped 2 bad case(s): {folders[0].name} (" in printed and f"; {folders[2].name} (" in printed
    rows = json.loads((out / "summary.json").read_text())
    skipped = {row["case"]: row["skipped"] for row in rows if "skipped" in row}
    assert sorted(skipped) == [folders[0].name, folders[2].name]
    assert "shape" in skipped[folders[0].name] and "NaN or Inf" in skipped[folders[2].name]
    assert rows[-1]["skipped_cases"] == 2 and rows[-1]["cases"] == 2
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == [folders[1].name, folders[3].name]
    with open(out / "summary.csv") as handle:
        assert sum(bool(row["skipped"]) for row in csv.DictReader(handle)) == 2


def test_continue_redoes_a_case_of_other_settings_or_without_manifest(brats_checkpoint, synthetic_brats_root, tmp_path, caplog):
    out = tmp_path / "out"
    options = {"no_mesh": True, "overlay": False}
    run_inference(settings(brats_checkpoint, synthetic_brats_root, out, **options))
    case_id = discover("brats", synthetic_brats_root, "val")[0].case_id
    metrics = out / case_id / "metrics.json"
    manifest = json.loads((out / case_id / "manifest.json").read_text())
    assert manifest["settings_hash"] == json.loads((out / "inference_settings.json").read_text())["settings_hash"]
    assert sorted(manifest["files"]) == sorted(p.name for p in (out / case_id).iterdir() if p.name != "manifest.json")
    os.utime(metrics, (0, 0))
    with caplog.at_level(logging.INFO, logger="oss_net.inference"):
        run_inference(settings(brats_checkpoint, synthetic_brats_root, out, resume=True, cpu=True, **options))
    assert metrics.stat().st_mtime == 0  # device and run-control flags are not settings of the files
    with caplog.at_level(logging.INFO, logger="oss_net.inference"):
        run_inference(settings(brats_checkpoint, synthetic_brats_root, out, resume=True, threshold=0.4, **options))
    assert "redone (written with other settings or another checkpoint)" in caplog.text
    assert metrics.stat().st_mtime > 0 and json.loads((out / "inference_settings.json").read_text())["threshold"] == 0.4
    (out / case_id / "manifest.json").unlink()  # e.g. a folder of an older version, or files copied in by hand
    os.utime(metrics, (0, 0))
    with caplog.at_level(logging.INFO, logger="oss_net.inference"):
        run_inference(settings(brats_checkpoint, synthetic_brats_root, out, resume=True, threshold=0.4, **options))
    assert "redone (no manifest" in caplog.text and metrics.stat().st_mtime > 0
    assert (out / case_id / "manifest.json").is_file()


def test_a_second_run_on_a_held_folder_refuses_and_writes_nothing(brats_checkpoint, synthetic_brats_root, tmp_path, capsys):
    from oss_net.inference import outputs

    out = tmp_path / "out"
    out.mkdir()
    with outputs.output_folder_lock(out):
        before = sorted(p.name for p in out.iterdir())
        assert main(_cli(brats_checkpoint, synthetic_brats_root, out, "--no_mesh")) == 2
        assert sorted(p.name for p in out.iterdir()) == before == [outputs.LOCK_FILE]
    err = capsys.readouterr().err
    assert f"{out}: output folder is in use by another inference run (pid {os.getpid()})" in err


def test_lits_root_with_every_file_in_it_and_a_brats_file_instead_of_its_folder(
        lits_checkpoint, brats_checkpoint, synthetic_lits_root, synthetic_brats_root, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(_cli(lits_checkpoint, synthetic_lits_root, out, "--split", "all", "--no_mesh", "--no_overlay")) == 0
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["lits-0", "lits-1", "lits-2"]
    flair = next(_case_folders(synthetic_brats_root)[0].glob("*_flair.nii.gz"))
    assert main(_cli(brats_checkpoint, flair, tmp_path / "out2")) == 2
    assert f"{flair}: BraTS takes a case folder, not one file (give its folder {flair.parent})" in capsys.readouterr().err


def test_a_model_that_predicts_nothing_anywhere_warns(synthetic_brats_root, tmp_path, caplog):
    import torch

    from oss_net.models import save_model

    model = intensity_model("C")
    with torch.no_grad():
        model.threshold.fill_(1e3)  # no z-scored FLAIR voxel comes near: an empty mask everywhere
    checkpoint = tmp_path / "blind.pt"
    save_model(checkpoint, model)
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING, logger="oss_net.inference"):
        run_inference(settings(checkpoint, synthetic_brats_root, out, no_mesh=True, overlay=False, mode="standard"))
    assert "the model predicted no foreground in any of the 1 case(s)" in caplog.text
    case_id = discover("brats", synthetic_brats_root, "val")[0].case_id
    assert json.loads((out / case_id / "metrics.json").read_text())["foreground_voxels"] == 0
