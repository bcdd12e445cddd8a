"""`train_step` and its forward half `step_losses`: both model kinds, one exact optimiser step, AMP, a non-finite loss."""
from __future__ import annotations

import copy

import pytest
import torch

from oss_net.data import gather_patches, segmentation_target
from oss_net.models import CONFIG_NAMES, build_model, demo_config, get_unet_config, segmentation_loss
from oss_net.training.loss import training_loss
from oss_net.training.step import NonFiniteLossError, StepLosses, step_losses, train_step


def _small_config(name: str):
    return demo_config(name, "brats", volume_shape=(16, 16, 16), encoder_channels=((4, 8), (8, 16)), decoder_width=16)


def _tiny_batch(config, points: int = 16) -> dict:
    generator = torch.Generator().manual_seed(0)
    label = (torch.rand(1, *config.volume_shape, generator=generator) > 0.7).to(torch.uint8)
    coords = torch.randint(0, min(config.volume_shape), (1, points, 3), generator=generator).float()
    return {"volume": torch.randn(1, config.in_channels, *config.volume_shape, generator=generator), "label": label,
            "coords": coords, "labels": torch.rand(1, points, 1, generator=generator).round(), "case_id": ["x"]}


def _sgd(model: torch.nn.Module) -> torch.optim.SGD:
    return torch.optim.SGD(model.parameters(), lr=0.1)


@pytest.mark.parametrize("name", CONFIG_NAMES)
def test_aux_loss_exactly_for_configs_with_the_head(name):
    config = _small_config(name)
    model = build_model(config)
    forward = step_losses(copy.deepcopy(model), _tiny_batch(config), segmentation_loss_factor=0.1)
    losses = train_step(model, _tiny_batch(config), _sgd(model), segmentation_loss_factor=0.1)
    assert forward.total.requires_grad and torch.equal(forward.total.detach(), losses.total)  # the forward half
    assert (losses.segmentation is not None) == config.segmentation_head
    expected = losses.occupancy + 0.1 * losses.segmentation if losses.segmentation is not None else losses.occupancy
    assert torch.equal(losses.total, expected)
    assert all(p.grad is not None for p in model.parameters())  # every parameter the loss reaches got a gradient


def test_one_step_equals_the_loss_and_update_written_out():
    """The losses are those of the weights before the step; the update is one SGD step on their sum."""
    config = _small_config("full")
    model = build_model(config)
    by_hand = copy.deepcopy(model)
    batch = _tiny_batch(config)
    losses = train_step(model, batch, _sgd(model), segmentation_loss_factor=0.25)

    patches = gather_patches(batch["volume"], batch["coords"], large=config.large_patches)
    occupancy, segmentation = by_hand(batch["volume"], batch["coords"], patches)
    target = segmentation_target(batch["label"], config.encoder_output_shape)
    total, point_loss, auxiliary = training_loss(occupancy, batch["labels"], segmentation, target, 0.25)
    optimizer = _sgd(by_hand)
    optimizer.zero_grad()
    total.backward()
    optimizer.step()
    assert isinstance(losses, StepLosses) and not losses.total.requires_grad
    assert torch.equal(losses.total, total) and torch.equal(losses.occupancy, point_loss)
    assert torch.equal(losses.segmentation, auxiliary)
    after, expected = model.state_dict(), by_hand.state_dict()
    assert [key for key in expected if not torch.equal(after[key], expected[key])] == []


@pytest.mark.parametrize("name", ["unet3d", "unet2d"])
def test_unet_step_is_its_dense_segmentation_loss(name):
    config = get_unet_config(name, "brats", volume_shape=(16, 16, 8), channels=(4, 8), strides=(2,))
    model = build_model(config)
    by_hand = copy.deepcopy(model)
    batch = _tiny_batch(config)
    losses = train_step(model, batch, _sgd(model), generator=torch.Generator().manual_seed(3))
    inputs, target = by_hand.training_pair(batch["volume"], batch["label"], torch.Generator().manual_seed(3))
    expected = segmentation_loss(by_hand(inputs), target, config.dice_weight)
    assert losses.segmentation is None and torch.equal(losses.total, losses.occupancy)
    assert torch.equal(losses.total, expected.detach())


def test_bf16_autocast_changes_the_loss_only_by_rounding():
    config = _small_config("full")
    model = build_model(config)
    fp32 = train_step(copy.deepcopy(model), _tiny_batch(config), _sgd(model), amp="off")
    bf16_model = copy.deepcopy(model)
    bf16 = train_step(bf16_model, _tiny_batch(config), _sgd(bf16_model), amp="bf16")
    assert bf16.total.dtype == torch.float32  # the loss itself is always computed in float32
    assert not torch.equal(bf16.total, fp32.total)  # autocast took effect
    assert bf16.total.item() == pytest.approx(fp32.total.item(), rel=0.05)


def test_non_finite_loss_raises_before_any_update():
    config = _small_config("full")
    model = build_model(config)
    with torch.no_grad():
        model.decoder.output.weight.fill_(float("nan"))
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss \(nan\)"):
        train_step(model, _tiny_batch(config), optimizer)
    assert all(p.grad is None for p in model.parameters()) and optimizer.state_dict()["state"] == {}
    after = {name: p.detach() for name, p in model.named_parameters()}  # (BatchNorm statistics move in any forward)
    torch.testing.assert_close(after, before, rtol=0, atol=0, equal_nan=True)


def test_unknown_amp_mode_is_refused():
    config = _small_config("full")
    model = build_model(config)
    with pytest.raises(ValueError, match="unknown amp mode 'fp8'"):
        train_step(model, _tiny_batch(config), _sgd(model), amp="fp8")
