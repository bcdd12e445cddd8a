"""Smoke test of `python -m oss_net.demo` with tiny settings: every stage runs and re-running reuses."""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from oss_net.demo import main, report, run_demo
from oss_net.demo_organs import class_disagreement, disagreement_table, organ_table
from oss_net.io import atomic_save_nifti
from oss_net.labels import LabelScheme


@pytest.mark.slow
def test_demo_pipeline_and_rerun(tmp_path, capsys):
    out = tmp_path / "demo"
    tiny = dict(cases=3, epochs=1, max_iterations=1, training_samples=256, mesh=False)
    result = run_demo(out, **tiny)
    rows = result["summary"]
    assert rows[-1]["case"] == "mean" and rows[-1]["cases"] == len(rows) - 1 >= 1
    for row in rows[:-1]:
        assert {"case", "dice", "iou", "hd95_mm", "nsd", "seconds", "points_evaluated", "disagreement"} <= set(row)
        assert row["standard_points_evaluated"] > 0  # mode both: the two refinements ran and were compared
        mask = nib.load(str(out / "inference" / row["case"] / f"{row['case']}_mask.nii.gz"))
        image = nib.load(str(next((out / "data").rglob(f"{row['case']}_flair.nii.gz"))))
        assert mask.shape == image.shape and np.allclose(mask.affine, image.affine)
    model = result["folders"]["model"]
    stamp = model.stat().st_mtime_ns

    # a second run with the same settings reuses the dataset and the trained model
    assert main(["--output_dir", str(out), "--cases", "3", "--epochs", "1", "--max_iterations", "1",
                 "--training_samples", "256", "--no_mesh"]) == 0
    printed = capsys.readouterr().out
    assert model.stat().st_mtime_ns == stamp
    assert "OSS-Net demo: validation cases" in printed and str(out / "inference" / "summary.csv") in printed
    state = json.loads((out / "demo_state.json").read_text())
    assert state["data"] == {"cases": 3, "seed": 0, "shape": [60, 60, 38]}


def test_demo_rejects_too_few_cases(tmp_path, capsys):
    assert main(["--output_dir", str(tmp_path / "demo"), "--cases", "1"]) == 2
    assert "--cases must be at least 2" in capsys.readouterr().err


def test_report_says_what_the_dice_column_scores(tmp_path):
    """Binary: the whole tumour; regions: the mean over the regions (their own table follows)."""
    folders = {"data": tmp_path, "train": tmp_path, "model": tmp_path / "m.pt", "inference": tmp_path}
    binary = [{"case": "c1", "dice": 0.9, "label_mode": "binary", "classes": "foreground"}, {"case": "mean", "dice": 0.9}]
    regions = [{"case": "c1", "dice": 0.6, "label_mode": "regions", "classes": "WT,TC,ET"}, {"case": "mean", "dice": 0.6}]
    assert "validation cases (whole tumour, input grid)" in report({"summary": binary, "folders": folders, "seconds": {}})
    printed = report({"summary": regions, "folders": folders, "seconds": {}})
    assert "validation cases (mean over WT, TC, ET, input grid)" in printed and "0.6000" in printed


def test_organ_tables_and_the_disagreement_of_two_runs(tmp_path):
    """Per organ, the mean metrics of both modes side by side, and where two runs' label maps disagree per organ."""
    scheme = LabelScheme("exclusive", (("liver", (1,)), ("pancreas", (4,))))
    first, second = np.zeros((6, 6, 6), dtype=np.uint8), np.zeros((6, 6, 6), dtype=np.uint8)
    first[:3], second[:3] = 1, 1
    first[5, 5, :2], second[5, 5, :4] = 4, 4  # the runs disagree on 2 pancreas voxels
    for root, labels in (("default", first), ("standard", second)):
        (tmp_path / root / "c1").mkdir(parents=True)
        atomic_save_nifti(labels, np.eye(4), tmp_path / root / "c1" / "c1_mask.nii.gz")
    figures = class_disagreement(scheme, tmp_path / "default", tmp_path / "standard", ["c1"])
    assert figures["liver"] == {"voxels": 0, "of_class": 0.0, "of_foreground": 0.0}
    assert figures["pancreas"] == {"voxels": 2, "of_class": 0.5, "of_foreground": 2 / 112}
    assert disagreement_table(figures, ("default (prior)", "standard")).splitlines()[2].split() == [
        "pancreas", "2", "50.00%", "1.79%"]
    means = {"case": "mean", "dice_liver": 0.91, "hd95_mm_liver": 3.0, "nsd_liver": 0.8, "dice_pancreas": 0.5}
    table = organ_table({"default": [means], "standard": [{**means, "dice_liver": 0.9}]}, ["liver", "pancreas"])
    assert table.splitlines()[1].split() == ["liver", "0.910", "3.000", "0.800", "0.900", "3.000", "0.800"]
    assert table.splitlines()[2].split() == ["pancreas", "0.500", "n/a", "n/a", "0.500", "n/a", "n/a"]


@pytest.mark.slow
def test_organs_demo_prints_organ_disagreement_and_efficiency_tables(tmp_path, capsys):
    out = tmp_path / "organs"
    assert main(["--organs", "--output_dir", str(out), "--cases", "3", "--epochs", "1", "--max_iterations", "1",
                 "--training_samples", "256", "--no_mesh"]) == 0
    printed = capsys.readouterr().out
    table = printed[printed.index("per organ"):].splitlines()
    assert [line.split()[0] for line in table[2:6]] == ["liver", "kidney", "spleen", "pancreas"]
    assert "Dice standard" in table[1] and "where the default mode and standard mode disagree" in printed
    efficiency = printed[printed.index("FLARE-style efficiency"):].splitlines()
    assert efficiency[2].startswith("OSS-Net C (demo)") and efficiency[3].startswith("3D U-Net (demo)")
    assert (out / "inference_standard" / "summary.json").is_file()
    assert json.loads((out / "demo_state.json").read_text())["data"]["organs"] is True
