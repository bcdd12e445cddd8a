"""FLARE-style efficiency figures (`oss_net.inference.efficiency`): the table's ratios and one case's costs."""
from __future__ import annotations

import torch

from oss_net.inference import make_predictor
from oss_net.inference.efficiency import CaseCost, case_cost, count_parameters, efficiency_table
from oss_net.models import DEMO_UNET_OVERRIDES, UNetConfig, build_model


def test_the_table_gives_every_figure_and_its_ratio_to_the_first_model():
    costs = [CaseCost("OSS-Net C", 1000, 2.0, 4.0, 10.0, 500), CaseCost("3D U-Net (paper widths)", 5000, 3.0, 1.0, 40.0, 8000)]
    lines = efficiency_table(costs).splitlines()
    assert lines[1].split()[-5:] == ["1,000", "2.00", "4.00", "10.0", "500"]
    assert lines[3].startswith("  3D U-Net (paper widths) / OSS-Net C") and lines[3].split()[-4:] == [
        "5.00x", "1.50x", "0.25x", "4.00x"]
    assert len(lines[0]) == len(lines[1]) == len(lines[2])  # the columns line up, however long a name


def test_a_dense_model_costs_its_parameters_and_decodes_every_voxel():
    unet = build_model(UNetConfig(name="unet3d", dataset="brats", in_channels=1, volume_shape=(32, 32, 32),
                                  **DEMO_UNET_OVERRIDES))
    cost = case_cost("3D U-Net", make_predictor(unet, device="cpu"), torch.zeros(1, 32, 32, 32), repeats=1)
    assert cost.parameters == count_parameters(unet) == sum(p.numel() for p in unet.parameters())
    assert cost.points_evaluated == 32**3 and cost.gflops > 0 and cost.seconds > 0 and cost.peak_mib > 0
