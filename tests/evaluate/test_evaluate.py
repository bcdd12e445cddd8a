"""oss-net-evaluate: pairing by name, per-structure scores equal to oss_net.metrics, summaries, errors."""
from __future__ import annotations

import csv
import json
import math
import shutil
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from oss_net.evaluate import EvaluationError, build_parser, evaluate_folders, main
from oss_net.metrics import UndefinedMetricWarning, brats_regions, evaluate_case, volumes_ml

SPACING = (1.2, 0.9, 2.0)
SHAPE = (20, 18, 10)


def affine() -> np.ndarray:
    matrix = np.diag([*SPACING, 1.0])
    matrix[:3, 3] = (-10.0, 20.0, 5.0)
    return matrix


def label_map(seed: int) -> np.ndarray:
    """A BraTS-like label map: oedema 2 around a core 1 holding an enhancing 4, shifted by the seed."""
    values = np.zeros(SHAPE, dtype=np.uint8)
    lo = 3 + seed
    values[lo : lo + 10, 4:14, 2:8] = 2
    values[lo + 2 : lo + 8, 6:12, 3:7] = 1
    values[lo + 3 : lo + 6, 7:10, 4:6] = 4
    return values


def save(array: np.ndarray, path: Path, matrix: np.ndarray | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, affine() if matrix is None else matrix), str(path))
    return path


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    """Flat labels for cases a, b, c, d; predictions for a, b, c (c empty) and an unlabelled z."""
    preds, labels = tmp_path / "preds", tmp_path / "labels"
    for index, case in enumerate("abcd"):
        save(label_map(index), labels / f"{case}.nii.gz")
    save(label_map(1), preds / "a.nii.gz")  # one voxel off along axis 0
    save(label_map(1), preds / "b.nii.gz")  # exact
    save(np.zeros(SHAPE, dtype=np.uint8), preds / "c.nii.gz")  # nothing predicted: HD95 undefined
    save(label_map(0), preds / "z.nii.gz")
    return preds, labels


def test_foreground_scores_match_the_metrics_and_summaries(folders, tmp_path: Path) -> None:
    preds, labels = folders
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        summary = evaluate_folders(preds, labels, tmp_path / "out", foreground=True)
        expected = evaluate_case(label_map(1) > 0, label_map(0) > 0, SPACING)
    rows = {row["case"]: row for row in summary["per_case"]}
    assert sorted(rows) == ["a", "b", "c"] and {r["structure"] for r in rows.values()} == {"foreground"}
    assert summary["missing_predictions"] == ["d"] and summary["unlabelled_predictions"] == ["z"]
    for key, value in expected.items():
        assert rows["a"][key] == pytest.approx(value)
    assert rows["a"]["volume_difference_ml"] == pytest.approx(
        volumes_ml(label_map(1) > 0, label_map(0) > 0, SPACING)["volume_difference_ml"])
    assert rows["b"]["dice"] == 1.0 and rows["c"]["dice"] == 0.0 and math.isnan(rows["c"]["hd95_mm"])
    hd95 = summary["statistics"]["foreground"]["hd95_mm"]
    assert hd95["undefined"] == 1 and hd95["mean"] == pytest.approx((rows["a"]["hd95_mm"] + 0.0) / 2)
    dice = summary["statistics"]["foreground"]["dice"]
    assert dice["median"] == pytest.approx(rows["a"]["dice"]) and dice["undefined"] == 0

    written = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert [r["hd95_mm"] for r in written["per_case"]][2] is None  # NaN stored as null
    with open(tmp_path / "out" / "summary.csv") as handle:
        table = list(csv.DictReader(handle))
    assert [r["case"] for r in table] == ["a", "b", "c", "mean", "median", "undefined"]
    assert float(table[0]["dice"]) == pytest.approx(rows["a"]["dice"], rel=1e-5)
    assert table[5]["hd95_mm"] == "1"
    for key in ("dice", "iou", "hd95_mm", "nsd", "volume_difference_ml"):
        assert (tmp_path / "out" / f"{key}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_label_is_scored_by_default_and_named_by_the_dataset(folders, tmp_path: Path, capsys) -> None:
    """Without --labels every value in the label files is a structure; a dataset.json beside the labels names them
    (nnU-Net's labelsTr in a dataset folder), its regions scored as regions; --labels narrows, keeping the names."""
    preds, labels = folders
    (preds / "c.nii.gz").unlink()
    found = evaluate_folders(preds, labels, tmp_path / "found")
    assert list(found["statistics"]) == ["label_1", "label_2", "label_4"]
    row = next(r for r in found["per_case"] if r["case"] == "a" and r["structure"] == "label_2")
    assert row["dice"] == pytest.approx(evaluate_case(label_map(1) == 2, label_map(0) == 2, SPACING)["dice"])
    dataset = tmp_path / "Dataset009_Tumour"
    labels.rename(dataset / "labelsTr") if dataset.mkdir() is None else None
    record = {"channel_names": {"0": "FLAIR"}, "numTraining": 4, "file_ending": ".nii.gz",
              "labels": {"background": 0, "core": 1, "oedema": 2, "enhancing": 4}}
    (dataset / "dataset.json").write_text(json.dumps(record))
    named = evaluate_folders(preds, dataset / "labelsTr", tmp_path / "named")
    assert list(named["statistics"]) == ["core", "oedema", "enhancing"]
    assert named["statistics"]["oedema"]["dice"]["mean"] == found["statistics"]["label_2"]["dice"]["mean"]
    narrowed = evaluate_folders(preds, dataset / "labelsTr", tmp_path / "narrowed", labels=[4, 3])
    assert list(narrowed["statistics"]) == ["label_3", "enhancing"]
    record["labels"] = {"background": 0, "whole tumour": [1, 2, 4], "core": [1, 4]}
    (dataset / "dataset.json").write_text(json.dumps(record))
    assert main([str(preds), str(dataset / "labelsTr"), "-o", str(tmp_path / "regions")]) == 0
    printed = capsys.readouterr().out
    assert "whole tumour" in printed and "core" in printed
    summary = json.loads((tmp_path / "regions" / "summary.json").read_text())
    assert summary["settings"]["structures"] == {"whole tumour": [1, 2, 4], "core": [1, 4]}
    whole = next(r for r in summary["per_case"] if r["case"] == "a" and r["structure"] == "whole tumour")
    assert whole["dice"] == pytest.approx(evaluate_case(label_map(1) > 0, label_map(0) > 0, SPACING)["dice"])


def test_labels_and_regions(folders, tmp_path: Path) -> None:
    preds, labels = folders
    (preds / "c.nii.gz").unlink()
    by_label = evaluate_folders(preds, labels, tmp_path / "labels_out", labels=[1, 4])
    row = next(r for r in by_label["per_case"] if r["case"] == "a" and r["structure"] == "label_4")
    assert row["dice"] == pytest.approx(evaluate_case(label_map(1) == 4, label_map(0) == 4, SPACING)["dice"])
    by_region = evaluate_folders(preds, labels, tmp_path / "regions_out", regions=["WT", "TC", "ET"], nsd_definition="surfel")
    assert {r["structure"] for r in by_region["per_case"]} == {"WT", "TC", "ET"}
    tc = next(r for r in by_region["per_case"] if r["case"] == "a" and r["structure"] == "TC")
    expected = evaluate_case(brats_regions(label_map(1))["TC"], brats_regions(label_map(0))["TC"], SPACING,
                             nsd_definition="surfel")
    assert tc == pytest.approx({"case": "a", "structure": "TC", **expected, **volumes_ml(
        brats_regions(label_map(1))["TC"], brats_regions(label_map(0))["TC"], SPACING)})

    save((label_map(1) > 0).astype(np.uint8), preds / "a.nii.gz")  # a binary prediction: WT only
    assert len(evaluate_folders(preds, labels, tmp_path / "wt", regions=["WT"])["per_case"]) == 2
    with pytest.raises(EvaluationError, match=r"a\.nii\.gz: a binary prediction .* regions TC need a BraTS label map"):
        evaluate_folders(preds, labels, tmp_path / "tc", regions=["WT", "TC"])


def test_per_case_folders_are_paired_too(tmp_path: Path) -> None:
    preds, labels = tmp_path / "inference", tmp_path / "MICCAI_BraTS2020_TrainingData"
    save(label_map(0), labels / "BraTS20_Training_001" / "BraTS20_Training_001_seg.nii.gz")
    save(label_map(0), labels / "BraTS20_Training_001" / "BraTS20_Training_001_flair.nii.gz")
    save((label_map(0) > 0).astype(np.uint8), preds / "BraTS20_Training_001" / "BraTS20_Training_001_mask.nii.gz")
    (preds / "summary.json").write_text("[]")
    summary = evaluate_folders(preds, labels, tmp_path / "out", foreground=True)  # a binary whole-tumour mask
    assert summary["cases"] == 1 and summary["per_case"][0]["dice"] == 1.0
    by_name = evaluate_folders(preds, labels, tmp_path / "named")  # BraTS's labels, by their names
    assert list(by_name["statistics"]) == ["necrotic core", "oedema", "enhancing tumour"]


def test_grid_mismatch_names_both_files(tmp_path: Path) -> None:
    preds, labels = tmp_path / "p", tmp_path / "l"
    label = save(label_map(0), labels / "a.nii.gz")
    pred = save(label_map(0)[:, :, :8], preds / "a.nii.gz")
    with pytest.raises(EvaluationError, match=rf"{pred} \(shape \(20, 18, 8\), .*\) and its label {label} \(shape "
                                              rf"\(20, 18, 10\), .*\) lie on different grids"):
        evaluate_folders(preds, labels, tmp_path / "out")
    moved = affine()
    moved[0, 3] += 1.0
    save(label_map(0), pred, moved)
    with pytest.raises(EvaluationError, match=rf"{pred} .* and its label {label} .* lie on different grids"):
        evaluate_folders(preds, labels, tmp_path / "out")
    with pytest.raises(EvaluationError, match="no prediction in .* matches a label"):
        evaluate_folders(labels, Path(shutil.copytree(preds, tmp_path / "renamed", ignore=lambda *_: ["a.nii.gz"])),
                         tmp_path / "out")


@pytest.mark.filterwarnings("ignore::oss_net.metrics.UndefinedMetricWarning")
def test_command_line(folders, tmp_path: Path, capsys) -> None:
    preds, labels = folders
    assert main([str(preds), str(labels), "-o", str(tmp_path / "cli"), "--nsd", "surfel", "--tolerance_mm", "2"]) == 0
    printed = capsys.readouterr().out
    assert "3 cases scored; 1 label(s) without a prediction: d" in printed
    assert json.loads((tmp_path / "cli" / "summary.json").read_text())["settings"]["nsd"] == "surfel"
    assert main([str(tmp_path / "nowhere"), str(labels)]) == 2
    assert "nowhere: not a folder" in capsys.readouterr().err
    usage = build_parser().format_usage()
    assert usage.startswith("usage: oss-net-evaluate ") and "PRED_DIR LABEL_DIR" in usage


def test_box_plot_titles_count_cases_times_structures():
    from oss_net.evaluate import boxplot_title

    rows = [{"case": f"c{c}", "structure": f"label_{s}", "dice": 0.5 if (c, s) != (1, 4) else float("nan")}
            for c in (1, 2) for s in (1, 2, 3, 4)]
    assert boxplot_title(rows, "dice", 4) == "dice per case and label (2 cases × 4 labels, 1 undefined left out)"
    regions = [{"case": "c1", "structure": name, "hd95_mm": 1.0} for name in ("WT", "TC", "ET")]
    assert boxplot_title(regions, "hd95_mm", 3) == "hd95_mm per case and region (1 case × 3 regions)"
    single = [{"case": f"c{c}", "structure": "foreground", "nsd": 1.0} for c in range(3)]
    assert boxplot_title(single, "nsd", 1) == "nsd per case and structure (3 cases × 1 structure)"


def test_a_prediction_at_another_spacing_is_refused_with_the_command_that_resamples_its_label(tmp_path: Path) -> None:
    """A label map at --output_spacing (a finer grid of the label's box): refused, naming both grids and the command;
    the command run as printed puts the label on the prediction's grid, where the two score."""
    import shlex

    from oss_net.data.grid import nearest_label
    from oss_net.geometry import grid_at_spacing
    from oss_net.resample_label import main as resample_main

    preds, labels = tmp_path / "p", tmp_path / "l"
    label = save(label_map(0), labels / "a.nii.gz")
    fine = grid_at_spacing(affine(), label_map(0).shape, 0.5)  # 48 × 32 × 40 voxels, 0.5 × 0.5063 × 0.5 mm
    pred = save(nearest_label(label_map(0), affine(), fine.shape, fine.affine), preds / "a.nii.gz", fine.affine)
    with pytest.raises(EvaluationError, match=r"\(shape \(48, 32, 40\), spacing \(0\.5, 0\.5063, 0\.5\) mm\) and its "
                                              r"label .* \(shape \(20, 18, 10\), spacing \(1\.2, 0\.9, 2\) mm\)") as refused:
        evaluate_folders(preds, labels, tmp_path / "out")
    command = str(refused.value).split("its values kept): ")[1].split(", then")[0]
    assert command.startswith(f"python -m oss_net.resample_label {label} {pred} labels_resampled/a.nii.gz")
    arguments = shlex.split(command)[3:]
    assert resample_main([arguments[0], arguments[1], str(tmp_path / arguments[2])]) == 0
    summary = evaluate_folders(preds, tmp_path / "labels_resampled", tmp_path / "out")
    assert summary["per_case"][0]["dice"] == 1.0
