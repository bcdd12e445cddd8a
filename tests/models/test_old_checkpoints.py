"""Checkpoints written before issue 22 (dataset facts moved out of `oss_net.data`) still load, unchanged.

The files in tests/fixtures/checkpoints were written once by that code (`write_checkpoints.py`); each must
load with the same configuration values and give the same outputs on the same inputs.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from oss_net.models import load_model
from tests.fixtures.checkpoints.write_checkpoints import inputs, outputs

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "checkpoints"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_old_checkpoint_loads_with_the_same_config_and_outputs(name):
    model = load_model(FIXTURES / f"{name}.pt").eval()
    assert model.config.to_dict() == EXPECTED[name]["config"]
    found = outputs(model, model.config)
    for key in ("occupancy", "segmentation"):
        torch.testing.assert_close(torch.tensor(found[key]), torch.tensor(EXPECTED[name][key]), rtol=1e-5, atol=1e-6)


def test_old_regions_checkpoint_keeps_its_dataset_facts():
    config = load_model(FIXTURES / "regions_c_nnunet.pt").config
    assert (config.label_mode, config.class_labels) == ("regions", (("tumour", (1, 2)), ("core", (2,))))
    assert config.fingerprint.channel_names == ("CT", "T2") and config.fingerprint.intensities[0].upper == 310.25
    volume, coords, patches = inputs(config)
    assert volume.shape == (1, 2, 32, 32, 32) and patches.shape == (1, 64, 2, 7, 7, 7)
