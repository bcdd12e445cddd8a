"""Training with --checkpoint_activations: stored in the run's settings, and a resumed run stays bit-identical."""
from __future__ import annotations

import json

import torch

from oss_net.training import main, train


def _weights(path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def test_a_recomputed_run_resumed_midway_ends_with_the_uninterrupted_weights(tiny_settings, tmp_path):
    """3 training cases, batch 1: the interrupted run stops after 2 steps (mid-epoch), resumes to 4 (past an epoch end)."""
    reference = train(tiny_settings(checkpoint_activations=True, epochs=3, checkpoint_every=1, max_iterations=4,
                                    output_dir=str(tmp_path / "reference")))
    interrupted = train(tiny_settings(checkpoint_activations=True, epochs=3, checkpoint_every=1, max_iterations=2,
                                      output_dir=str(tmp_path / "interrupted")))
    assert json.loads((interrupted / "hyperparameters.json").read_text())["settings"]["checkpoint_activations"] is True
    assert main(["--resume", str(interrupted), "--max_iterations", "4"]) == 0
    expected, resumed = _weights(reference / "final_model.pt"), _weights(interrupted / "final_model.pt")
    assert expected.keys() == resumed.keys()
    assert [key for key in expected if not torch.equal(expected[key], resumed[key])] == []
