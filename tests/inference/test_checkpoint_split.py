"""Issue 12: inference's --split scores exactly the cases training held out, whatever seed split them."""
from __future__ import annotations

import pytest
import torch

from oss_net.data import discover
from oss_net.data.splits import default_split
from oss_net.inference import InferenceSettings, run_inference
from oss_net.inference import InferenceError
from oss_net.models import stored_split
from oss_net.training import resolve_settings, train

TINY = {"train": True, "demo": True, "cpu": True, "uniform_sampling": True, "batch_size": 1, "training_samples": 64,
        "val_samples": 128, "dense_validation": False, "max_iterations": 1}


@pytest.mark.slow
def test_inference_scores_the_validation_cases_training_used(synthetic_brats_root, tmp_path):
    ids = [case.case_id for case in discover("brats", synthetic_brats_root, "all")]
    held_out = {seed: sorted(k for k, v in default_split(ids, "brats", seed).items() if v == "val") for seed in (0, 3)}
    assert held_out[0] != held_out[3]  # otherwise the test could not tell the splits apart
    run = train(resolve_settings({**TINY, "seed": 3, "dataset_path": str(synthetic_brats_root),
                                  "output_dir": str(tmp_path / "run")}))
    split = stored_split(run / "final_model.pt")
    assert sorted(split["val"]) == held_out[3] and sorted(split["train"] + split["val"]) == sorted(ids)
    checkpoint = sorted((run / "checkpoints").glob("ckpt_*.pt"))[-1]
    assert stored_split(checkpoint) == split
    out = tmp_path / "inference"
    run_inference(InferenceSettings(load_model=str(run / "final_model.pt"), dataset_path=str(synthetic_brats_root),
                                    output_dir=str(out), split="val", no_mesh=True, cpu=True))
    scored = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert scored == held_out[3]


def test_a_stored_split_naming_a_missing_case_is_a_clear_error(synthetic_brats_root, tmp_path):
    from oss_net.models import build_model, demo_config, save_model

    path = tmp_path / "model.pt"
    save_model(path, build_model(demo_config("C", "brats")), split={"train": [], "val": ["BraTS20_Training_999"]})
    settings = InferenceSettings(load_model=str(path), dataset_path=str(synthetic_brats_root),
                                 output_dir=str(tmp_path / "out"), split="val", no_mesh=True, cpu=True)
    with pytest.raises(InferenceError, match="BraTS20_Training_999"):
        run_inference(settings)


def test_models_saved_without_a_split_have_none(tmp_path):
    from oss_net.models import build_model, demo_config, save_model

    path = tmp_path / "model.pt"
    save_model(path, build_model(demo_config("C", "brats")))
    assert stored_split(path) is None and "split" not in torch.load(path, weights_only=True)
