"""The training loop: optimiser groups, schedule, outputs, data order and the non-finite loss error."""
from __future__ import annotations

import csv
import json

import pytest
import torch

from oss_net.data import discover, load_case
from oss_net.models import build_model, demo_config, load_model, save_model
from oss_net.training import learning_rate, main, train
from oss_net.training.distributed import ProcessContext
from oss_net.training.loop import TrainingData, TrainingError, Validator, build_run, fit
from oss_net.training.settings import SettingsError
from oss_net.training.validation import dense_validation, sampled_validation
from pade_activation_unit import PAU

CPU = ProcessContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))


def test_pau_group_and_both_groups_follow_the_schedule(tiny_settings):
    """3 iterations per epoch; with 2 epochs both milestones fall on epoch 1, so iteration 4 runs at lr × 0.1²."""
    run = build_run(tiny_settings(epochs=2, max_iterations=4, lr=3e-4, pau_lr=1e-2), CPU)
    groups = {group["name"]: group for group in run.optimizer.param_groups}
    pau_params = {id(p) for m in run.model.modules() if isinstance(m, PAU) for p in m.parameters()}
    assert {id(p) for p in groups["pau"]["params"]} == pau_params
    assert (groups["pau"]["lr"], groups["pau"]["weight_decay"]) == (1e-2, 0.0)
    assert groups["default"]["lr"] == 3e-4
    fit(run)
    run.recorder.close()
    logged = [float(r["value"]) for r in csv.DictReader(open(run.run_dir / "metrics.csv")) if r["name"] == "train/lr"]
    assert logged == [3e-4] * 3 + [learning_rate(3e-4, 1, 2)] and logged[-1] == pytest.approx(3e-6)
    assert groups["pau"]["lr"] == learning_rate(1e-2, 1, 2) == pytest.approx(1e-4)  # both groups decay together


def test_short_run_writes_every_output(tiny_settings, synthetic_brats_root, tmp_path, capsys):
    run_dir = train(tiny_settings(test=True, epochs=1, val_every=1, dense_validation=True, checkpoint_every=2))
    rows = list(csv.DictReader(open(run_dir / "metrics.csv")))
    names = {row["name"] for row in rows}
    assert {"train/loss", "train/aux_loss", "train/lr", "val/sampled_dice", "val/sampled_iou", "val/sampled_loss",
            "pau/numerator_mean_abs", "pau/change_l2", "time/data_wait_fraction"} <= names
    change = [float(r["value"]) for r in rows if r["name"] == "pau/change_l2"]
    assert len(change) == 1 and change[0] > 0  # the PAU coefficients moved over the epoch
    assert "val/dense_dice_model_grid" in names
    assert [int(r["iteration"]) for r in rows if r["name"] == "train/loss"] == [1, 2, 3]
    assert (run_dir / "progress.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert json.loads((run_dir / "hyperparameters.json").read_text())["settings"]["training_samples"] == 64
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["ckpt_000000002.pt", "ckpt_000000003.pt"]
    for name in ("best_model.pt", "final_model.pt"):
        assert load_model(run_dir / name).config == demo_config("C", "brats")

    assert main(["--resume", str(run_dir / "best_model.pt")]) == 2
    assert "best_model.pt: a model file without optimiser state cannot be resumed" in capsys.readouterr().err
    assert main(["--resume", str(run_dir), "--network_config", "A"]) == 2
    assert "cannot resume with different settings (network_config: checkpoint 'full', now 'A')" in capsys.readouterr().err
    evaluation = tmp_path / "evaluation"
    assert main(["--test", "--demo", "--cpu", "--load_model", str(run_dir / "best_model.pt"), "--val_samples", "128",
                 "--dataset_path", str(synthetic_brats_root), "--output_dir", str(evaluation), "--no_dense_validation"]) == 0
    metrics = json.loads((evaluation / "metrics.json").read_text())
    assert set(metrics) == {"val/sampled_dice", "val/sampled_iou", "val/sampled_loss"}
    assert 0.0 <= metrics["val/sampled_dice"] <= 1.0


def test_non_finite_loss_names_iteration_and_cases_and_writes_no_checkpoint(tiny_settings, tmp_path, monkeypatch):
    import oss_net.models.checkpoint
    from oss_net.models import CheckpointError

    model = build_model(demo_config("C", "brats"))
    with torch.no_grad():
        model.decoder.output.weight.fill_(float("nan"))
    save_model(tmp_path / "nan.pt", model)
    settings = tiny_settings(load_model=str(tmp_path / "nan.pt"), checkpoint_every=1)
    with pytest.raises(CheckpointError, match=r"nan.pt: checkpoint holds NaN or Inf weights in decoder.output.weight"):
        train(settings)  # refused at load; let it through to reach the loss check
    monkeypatch.setattr(oss_net.models.checkpoint, "non_finite_tensors", lambda state: [])
    with pytest.raises(TrainingError, match=r"non-finite loss \(nan\) at iteration 1 \(epoch 1, batch 1\); "
                                            r"cases in the batch: BraTS20_Training_00\d"):
        train(settings)
    assert not (tmp_path / "run" / "checkpoints").exists()
    assert not (tmp_path / "run" / "final_model.pt").exists()


def test_usage_errors(tiny_settings):
    with pytest.raises(SettingsError, match="nothing to do"):
        train(tiny_settings(train=False))
    with pytest.raises(TrainingError, match="3 training cases cannot fill one batch of 4"):
        train(tiny_settings(batch_size=4))


def test_validation_leaves_the_model_in_training_mode(synthetic_brats_root):
    """Regression: the Predictor switches to eval mode; training must not continue in it."""
    config = demo_config("C", "brats")
    model = build_model(config).train()
    cases = [load_case(files, config) for files in discover("brats", synthetic_brats_root, "val")]
    metrics = dense_validation(model, cases, "off")
    assert model.training and all(module.training for module in model.modules())
    assert set(metrics) == {"val/dense_dice_model_grid", "val/dense_iou_model_grid"}
    assert 0.0 <= metrics["val/dense_dice_model_grid"] <= 1.0
    sample = {"volume": torch.from_numpy(cases[0].image), "coords": torch.zeros(4, 3), "labels": torch.zeros(4, 1)}
    sampled = sampled_validation(model, [sample], torch.device("cpu"), "off")
    assert model.training and set(sampled) == {"val/sampled_loss", "val/sampled_dice", "val/sampled_iou"}


def test_batches_do_not_depend_on_the_number_of_workers(tiny_settings, tmp_path):
    """Each sample's points come from (seed, epoch, index), so workers change nothing."""
    batches = []
    for workers in (0, 1):  # one run folder each: a run folder holds one run
        run = build_run(tiny_settings(num_workers=workers, training_samples=16, output_dir=str(tmp_path / f"run{workers}")), CPU)
        batches.append([(b["case_id"], b["coords"]) for b in TrainingData(run).batches(1, start_batch=1)])
        run.recorder.close()
    assert len(batches[0]) == 2  # 3 batches per epoch, started at the second
    assert all(a[0] == b[0] and torch.equal(a[1], b[1]) for a, b in zip(*batches))


def test_continuous_sampling_trains_on_points_inside_voxels_and_validates_on_voxel_centres(tiny_settings):
    run = build_run(tiny_settings(continuous_sampling=True, border_balance=0.5, epochs=1, max_iterations=1), CPU)
    data = TrainingData(run)
    batch = next(iter(data.batches(0)))
    coords, labels = batch["coords"], batch["labels"]
    assert not torch.equal(coords, coords.round()) and ((labels > 0) & (labels < 1)).any()  # shares at the boundary
    assert not Validator(run).dataset.continuous
    fit(run)
    run.recorder.close()
    assert json.loads((run.run_dir / "hyperparameters.json").read_text())["settings"]["continuous_sampling"] is True
