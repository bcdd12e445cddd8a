"""`python -m oss_net.results`: Table-1 rows, mean ± std over runs of each run's best validation score."""
from __future__ import annotations

import csv
import json
import math

import pytest

from oss_net.results import ResultsError, aggregate, main, markdown_table, mean_std, read_run, results, table1_row
from oss_net.training import train
from oss_net.training.settings import resolve_settings


def write_run(folder, network_config, dataset, compat, validations):
    """A run folder as training writes it: hyperparameters.json and metrics.csv with `validations`
    ({name: value} per validation, iteration 10, 20, ...), plus training rows that must be ignored."""
    folder.mkdir(parents=True)
    settings = {"network_config": network_config, "dataset": dataset, "compat": compat}
    (folder / "hyperparameters.json").write_text(json.dumps({"settings": settings, "config": {}}))
    with open(folder / "metrics.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(("iteration", "epoch", "name", "value"))
        for index, metrics in enumerate(validations, start=1):
            writer.writerow((10 * index, index, "train/loss", 5.0))
            for name, value in metrics.items():
                writer.writerow((10 * index, index, name, value))
    return folder


def test_mean_and_std_over_runs_of_each_runs_best_epoch(tmp_path):
    first = write_run(tmp_path / "a", "full", "brats", "paper", [
        {"val/sampled_dice": 0.5, "val/sampled_iou": 0.6, "val/sampled_loss": 0.1},
        {"val/sampled_dice": 0.7, "val/sampled_iou": 0.4, "val/sampled_loss": 0.9},
    ])
    second = write_run(tmp_path / "b", "full", "brats", "paper", [
        {"val/sampled_dice": 0.8, "val/sampled_iou": 0.5},
        {"val/sampled_dice": 0.6, "val/sampled_iou": 0.7},
    ])
    run = read_run(first)
    assert run["best"] == {"val/sampled_dice": 0.7, "val/sampled_iou": 0.6}  # each its own maximum; no losses
    assert run["best_iteration"] == {"val/sampled_dice": 20, "val/sampled_iou": 10}
    assert (run["network_config"], run["dataset"], run["compat"], run["validations"]) == ("full", "brats", "paper", 2)
    (row,) = aggregate([run, read_run(second)])
    assert row["row"] == "C" and row["runs"] == [str(first), str(second)]
    # best Dice 0.7 and 0.8: mean 0.75, std 0.05; best IoU 0.6 and 0.7: mean 0.65, std 0.05
    assert row["scores"]["val/sampled_dice"] == pytest.approx({"mean": 0.75, "std": 0.05, "runs": 2})
    assert row["scores"]["val/sampled_iou"] == pytest.approx({"mean": 0.65, "std": 0.05, "runs": 2})
    assert mean_std([1.0, 2.0, 3.0, 4.0]) == pytest.approx({"mean": 2.5, "std": math.sqrt(1.25), "runs": 4})
    table = markdown_table([row])
    assert table.splitlines()[0] == "| Model | mode | BraTS Dice | BraTS IoU |"
    assert table.splitlines()[2] == "| C | paper | 0.7500 ± 0.0500 (2) | 0.6500 ± 0.0500 (2) |"


def test_rows_follow_table1_and_keep_modes_and_datasets_apart(tmp_path):
    runs = [read_run(write_run(tmp_path / name, config, dataset, compat, [{"val/sampled_dice": value,
                                                                             "val/sampled_iou": value / 2}]))
            for name, config, dataset, compat, value in (
                ("d", "full2", "brats", "paper", 0.9), ("o", "vanilla_o_net_wide", "lits", "paper", 0.3),
                ("a", "A", "brats", "paper", 0.8), ("a_ours", "A", "brats", "ours", 0.85),
                ("o_brats", "vanilla_o_net_wide", "brats", "paper", 0.6))]
    rows = aggregate(runs)
    assert [(row["row"], row["dataset"], row["compat"]) for row in rows] == [
        ("O-Net", "brats", "paper"), ("O-Net", "lits", "paper"), ("A", "brats", "ours"), ("A", "brats", "paper"),
        ("D", "brats", "paper")]
    lines = markdown_table(rows).splitlines()
    assert lines[0] == "| Model | mode | BraTS Dice | BraTS IoU | LiTS Dice | LiTS IoU |"
    assert lines[2] == "| O-Net | paper | 0.6000 ± 0.0000 (1) | 0.3000 ± 0.0000 (1) | 0.3000 ± 0.0000 (1) | 0.1500 ± 0.0000 (1) |"
    assert lines[3].endswith("| – | – |")  # A was trained on BraTS only
    assert table1_row("full") == "C" and table1_row("C1") == "C1"


def test_bad_run_folders_are_named(tmp_path, capsys):
    with pytest.raises(ResultsError, match=r"hyperparameters\.json: not found; is .* a training run folder"):
        read_run(tmp_path)
    empty = write_run(tmp_path / "untested", "A", "brats", "ours", [])
    with pytest.raises(ResultsError, match=r"metrics\.csv: no validation scores .* trained with --test"):
        read_run(empty)
    assert main([str(empty)]) == 2 and "error:" in capsys.readouterr().err
    with pytest.raises(ResultsError, match="no run folders given"):
        results([])


def test_two_tiny_training_runs_give_a_table(synthetic_brats_root, tmp_path, capsys):
    base = {"train": True, "test": True, "demo": True, "cpu": True, "uniform_sampling": True, "batch_size": 1,
            "training_samples": 64, "val_samples": 128, "dense_validation": False, "compat": "paper", "epochs": 2,
            "val_every": 1, "dataset_path": str(synthetic_brats_root)}
    run_dirs = [train(resolve_settings({**base, "seed": seed, "output_dir": str(tmp_path / f"run{seed}")}))
                for seed in (0, 1)]
    out = tmp_path / "table"
    assert main([*map(str, run_dirs), "--json", str(out / "t.json")]) == 2  # the folder must exist, as for every output
    assert "output folder does not exist" in capsys.readouterr().err
    out.mkdir()
    assert main([*map(str, run_dirs), "--json", str(out / "t.json"), "--markdown", str(out / "t.md")]) == 0
    printed = capsys.readouterr().out
    written = json.loads((out / "t.json").read_text())
    assert printed == (out / "t.md").read_text() and printed.startswith("| Model | mode | BraTS Dice | BraTS IoU |")
    best = []
    for run_dir in run_dirs:  # each run's best sampled IoU is the maximum of its validation history
        history = json.loads((run_dir / "summary.json").read_text())["position"]["history"]
        best.append(max(entry["val/sampled_iou"] for entry in history))
    (row,) = written["table"]
    assert (row["row"], row["compat"], row["dataset"]) == ("C", "paper", "brats")
    assert row["scores"]["val/sampled_iou"] == pytest.approx(mean_std(best))
    assert [run["best"]["val/sampled_iou"] for run in written["runs"]] == pytest.approx(best)
