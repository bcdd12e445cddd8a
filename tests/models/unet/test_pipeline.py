"""The U-Net baselines through the OSS-Net training loop and inference runner: same data, same writers."""
from __future__ import annotations

import json
import logging
import math

import nibabel as nib
import numpy as np
import pytest
import torch

from oss_net.data import discover
from oss_net.inference import DensePredictor, InferenceSettings, PredictOptions, Predictor, make_predictor, run_inference
from oss_net.models import DEMO_UNET_OVERRIDES, UNetConfig, build_model, demo_config, load_model, network_config
from oss_net.training import demo_settings, train
from oss_net.training.cli import main as train_main


@pytest.mark.parametrize("name", ["unet3d", "unet2d"])
def test_unet_trains_then_infers_through_the_shared_pipeline(name, synthetic_brats_root, tmp_path, caplog):
    run_dir = train(demo_settings(synthetic_brats_root, tmp_path / "run", network_config=name.upper(), max_iterations=2))

    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["position"]["iteration"] == 2
    validation = summary["position"]["history"][-1]
    # no sampled points for a U-Net
    assert set(validation) == {"epoch", "iteration", "val/dense_dice_model_grid", "val/dense_iou_model_grid"}
    assert 0.0 <= validation["val/dense_dice_model_grid"] <= 1.0
    assert summary["position"]["best_metric"] == pytest.approx(validation["val/dense_dice_model_grid"])
    model = load_model(run_dir / "final_model.pt")
    assert isinstance(model.config, UNetConfig) and model.config.name == name
    assert model.config.volume_shape == demo_config("C", "brats").volume_shape
    assert model.config.channels == DEMO_UNET_OVERRIDES["channels"]
    hyperparameters = json.loads((run_dir / "hyperparameters.json").read_text())
    assert hyperparameters["settings"]["network_config"] == name and hyperparameters["config"]["name"] == name

    out = tmp_path / "out"
    with caplog.at_level(logging.INFO, logger="oss_net.inference"):
        run_inference(InferenceSettings(load_model=str(run_dir / "best_model.pt"), dataset_path=str(synthetic_brats_root),
                                        output_dir=str(out), network_config=name.replace("unet", "UNet-"),
                                        mode="both", chunk_size=7, refine_mesh=True, overlay=False))
    assert "chunk_size, mode" in caplog.text and "mesh refinement needs a point decoder" in caplog.text
    files = discover("brats", synthetic_brats_root, "val")[0]
    folder = out / files.case_id
    flair = nib.load(str(files.images[0]))
    mask = nib.load(str(folder / f"{files.case_id}_mask.nii.gz"))
    assert mask.shape == flair.shape and np.allclose(mask.affine, flair.affine)
    assert set(np.unique(np.asarray(mask.dataobj))) <= {0, 1}
    assert (folder / f"{files.case_id}_prediction.ply").is_file() and (folder / f"{files.case_id}_label.obj").is_file()

    rows = json.loads((out / "summary.json").read_text())
    assert [row["case"] for row in rows] == [files.case_id, "mean"]
    record = rows[0]
    assert {"dice", "iou", "hd95_mm", "nsd", "seconds", "points_evaluated", "mode"} <= set(record)
    assert record["mode"] == "dense" and record["points_evaluated"] == math.prod(model.config.volume_shape)
    assert rows[-1]["cases"] == 1 and rows[-1]["dice"] == pytest.approx(record["dice"])
    assert json.loads((out / "inference_settings.json").read_text())["resolved_mode"] == "dense"


def test_make_predictor_dispatches_on_the_decoder(brats_config):
    unet = build_model(network_config("unet2d", "brats", demo=True))
    dense = make_predictor(unet, PredictOptions(mode="prior", chunk_size=3, amp="off", threshold=0.3))
    assert isinstance(dense, DensePredictor) and dense.threshold == 0.3 and not dense.model.training
    image = torch.randn(4, *brats_config.volume_shape)  # [C, *volume_shape]
    prediction = dense.predict(image)
    assert prediction.occupancy.shape == brats_config.volume_shape and prediction.mode == "dense"
    assert torch.allclose(prediction.occupancy, unet.predict_volume(image[None])[0, 0])
    assert isinstance(make_predictor(build_model(brats_config), PredictOptions(mode="standard")), Predictor)


def test_unet2d_resume_is_bitwise_identical(synthetic_brats_root, tmp_path):
    """The 2D net's random training slices follow (seed, iteration), so a resumed run draws what an uninterrupted one does."""
    options = {"network_config": "unet2d", "test": False}
    reference = train(demo_settings(synthetic_brats_root, tmp_path / "reference", max_iterations=2, **options))
    interrupted = train(demo_settings(synthetic_brats_root, tmp_path / "interrupted", max_iterations=1, **options))
    assert train_main(["--resume", str(interrupted), "--max_iterations", "2"]) == 0
    expected = load_model(reference / "final_model.pt").state_dict()
    resumed = load_model(interrupted / "final_model.pt").state_dict()
    assert expected.keys() == resumed.keys()
    assert [key for key in expected if not torch.equal(expected[key], resumed[key])] == []
