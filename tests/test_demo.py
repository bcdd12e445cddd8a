"""Smoke test of `python -m oss_net.demo` with tiny settings: every stage runs and re-running reuses."""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from oss_net.demo import main, run_demo


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
    from oss_net.demo import report

    folders = {"data": tmp_path, "train": tmp_path, "model": tmp_path / "m.pt", "inference": tmp_path}
    binary = [{"case": "c1", "dice": 0.9, "label_mode": "binary", "classes": "foreground"}, {"case": "mean", "dice": 0.9}]
    regions = [{"case": "c1", "dice": 0.6, "label_mode": "regions", "classes": "WT,TC,ET"}, {"case": "mean", "dice": 0.6}]
    assert "validation cases (whole tumour, input grid)" in report({"summary": binary, "folders": folders, "seconds": {}})
    printed = report({"summary": regions, "folders": folders, "seconds": {}})
    assert "validation cases (mean over WT, TC, ET, input grid)" in printed and "0.6000" in printed
