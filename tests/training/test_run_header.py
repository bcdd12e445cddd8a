"""No silent choices in training: a FLARE21 folder trains its organs as exclusive classes, validates on a seeded
split carved from its labelled cases (ValidationImg has no masks), and the log's first lines say so."""
from __future__ import annotations

import csv
import json
import logging

import pytest
import torch

from oss_net.data.synthetic_layouts import write_flare_dataset
from oss_net.models import load_model
from oss_net.training import main

FLARE_TRAIN = ["--train", "--demo", "--cpu", "--batch_size", "4", "--training_samples", "64", "--val_samples", "64",
               "--epochs", "1", "--volume_shape", "32", "32", "32"]


@pytest.fixture(scope="module")
def flare_root(tmp_path_factory):
    """5 labelled FLARE21 cases (1 held out for validation) and 2 unlabelled ones in ValidationImg."""
    return write_flare_dataset(tmp_path_factory.mktemp("flare"), 5, (24, 24, 12), seed=1, test_cases=2)


def test_a_flare_run_validates_on_a_carved_split_and_says_so_first(flare_root, tmp_path, caplog):
    run = tmp_path / "run"
    with caplog.at_level(logging.INFO, logger="oss_net.training.loop"):
        assert main([*FLARE_TRAIN, "--dataset_path", str(flare_root), "--output_dir", str(run)]) == 0
    header = json.loads((run / "hyperparameters.json").read_text())["run"]
    assert [line.split(":")[0] for line in header] == ["dataset", "fingerprint", "model grid", "label mode", "split",
                                                       "checkpoint rule"]
    logged = [record.getMessage() for record in caplog.records if record.name == "oss_net.training.loop"]
    assert logged[:6] == header
    assert "2 unlabelled in ValidationImg, not used for validation" in header[0]
    assert "fingerprint: 4 cases" in header[1] and header[2].startswith("model grid: 32 x 32 x 32")
    assert header[3] == ("label mode: exclusive (argmax over background + classes), classes liver (1), kidney (2), "
                         "spleen (3), pancreas (4)")
    assert header[4].startswith("split: 4 training / 1 validation cases, seeded (seed 0: 1 in 5")
    assert "best_model.pt = the highest val/dense_dice_model_grid (the mean over its 4 classes)" in header[5]
    names = {row["name"] for row in csv.DictReader(open(run / "metrics.csv"))}
    assert {"val/dense_dice_model_grid_pancreas", "val/sampled_dice_liver"} <= names  # validated without --test
    best = torch.load(run / "best_model.pt", weights_only=True)
    assert len(best["split"]["val"]) == 1 and len(best["split"]["train"]) == 4
    assert load_model(run / "best_model.pt").config.label_mode == "exclusive"


def test_no_validation_is_asked_for_and_contradicts_test(flare_root, tmp_path, capsys):
    run = tmp_path / "run"
    assert main([*FLARE_TRAIN, "--no_validation", "--max_iterations", "1", "--dataset_path", str(flare_root),
                 "--output_dir", str(run)]) == 0
    header = json.loads((run / "hyperparameters.json").read_text())["run"]
    assert header[5].startswith("checkpoint rule: no validation (--no_validation): no val/ metrics and no best_model.pt")
    assert not (run / "best_model.pt").exists()
    with pytest.raises(SystemExit):
        main([*FLARE_TRAIN, "--test", "--no_validation", "--dataset_path", str(flare_root)])
    assert "not allowed with argument --test" in capsys.readouterr().err
