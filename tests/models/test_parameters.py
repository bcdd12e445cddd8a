"""Parameter counts equal the exact hand count of docs/reference.md §1.2; PAU sites; optimizer groups."""
from __future__ import annotations

import pytest
import torch

from oss_net.models import build_model, count_parameters, count_pau_modules, demo_config, get_config, parameter_groups
from pade_activation_unit import PAU

# config: (BraTS total, LiTS total, BraTS PAUs, LiTS PAUs), docs/reference.md §1.2.
REFERENCE = {
    "vanilla_o_net": (3_309_313, 4_394_453, 19, 21),
    "O-Net": (6_890_753, 9_057_237, 19, 21),
    "A": (7_245_438, 9_409_177, 21, 23),
    "B": (7_254_358, 9_409_520, 21, 23),
    "C": (8_695_733, 10_866_490, 25, 28),
    "D": (8_704_653, 10_866_833, 25, 28),
}
# Encoder / decoder split of docs/reference.md §1.2 (rounded to 1e3 there).
ENCODER_THOUSANDS = {("brats", "plain"): 907, ("lits", "plain"): 911, ("brats", "skip"): 2358, ("lits", "skip"): 2369}


def _meta_model(name: str, dataset: str) -> torch.nn.Module:
    with torch.device("meta"):
        return build_model(get_config(name, dataset))


@pytest.mark.parametrize("name", REFERENCE)
def test_parameter_and_pau_counts_match_the_reference(name: str) -> None:
    brats_total, lits_total, brats_paus, lits_paus = REFERENCE[name]
    for dataset, total, paus in (("brats", brats_total, brats_paus), ("lits", lits_total, lits_paus)):
        model = _meta_model(name, dataset)
        assert count_parameters(model) == total, (name, dataset)
        assert count_pau_modules(model) == paus, (name, dataset)
        encoder = ENCODER_THOUSANDS[(dataset, model.config.encoder)]
        assert round(count_parameters(model.encoder) / 1000) == encoder


def test_e1_adds_exactly_the_segmentation_head_to_a() -> None:
    # Conv3d 5^3, 128 -> 1, no bias: 16,000 weights; no PAU.
    a, e1 = _meta_model("A", "brats"), _meta_model("E1", "brats")
    assert count_parameters(e1) - count_parameters(a) == 128 * 125
    assert count_pau_modules(e1) == count_pau_modules(a)
    assert e1.encoder.segmentation_head is not None and a.encoder.segmentation_head is None


def test_every_pau_site_is_its_own_instance() -> None:
    model = _meta_model("C", "lits")
    paus = [m for m in model.modules() if isinstance(m, PAU)]
    assert len({id(m.numerator) for m in paus}) == len(paus) == 28


def test_parameter_groups_split_pau_coefficients() -> None:
    model = build_model(demo_config("O-Net"))
    groups = parameter_groups(model, lr=3e-4, weight_decay=0.05)
    assert [g["name"] for g in groups] == ["default", "pau"]
    default, pau = groups
    assert (default["lr"], default["weight_decay"], pau["lr"], pau["weight_decay"]) == (3e-4, 0.05, 1e-2, 0.0)
    assert len(pau["params"]) == 2 * count_pau_modules(model)
    assert sum(p.numel() for g in groups for p in g["params"]) == count_parameters(model)
    optimizer = torch.optim.AdamW(groups)
    assert [g["lr"] for g in optimizer.param_groups] == [3e-4, 1e-2]
