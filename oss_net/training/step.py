"""`train_step`: one optimiser step of OSS-Net or of a U-Net baseline.

The one training step of the project: the loop, the benchmarks, the DDP test and the unit tests all
call it, so what is measured and tested is what trains. OSS-Net is trained on sampled points
(occupancy BCE plus the weighted low-resolution segmentation BCE, docs/reference.md §5); a U-Net
baseline on whole volumes with its dense segmentation loss.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from oss_net.data import gather_patches
from oss_net.data.class_targets import class_segmentation_target
from oss_net.io import OSSNetError
from oss_net.models import is_dense, segmentation_loss
from oss_net.precision import autocast
from oss_net.training.distributed import ProcessContext, all_ranks_true, bare_model
from oss_net.training.loss import SEGMENTATION_LOSS_FACTOR, training_loss


@dataclass(frozen=True)
class StepLosses:
    """The losses of one step, each a detached 0-dim float tensor.

    total: what was back-propagated. occupancy: OSS-Net's point BCE, or a U-Net's dense segmentation
    loss (then equal to total). segmentation: the auxiliary low-resolution BCE, None without that head.
    """

    total: torch.Tensor
    occupancy: torch.Tensor
    segmentation: torch.Tensor | None


class NonFiniteLossError(OSSNetError):
    """A NaN or infinite loss (on this or another rank): the step was not applied."""

    def __init__(self, loss: float) -> None:
        super().__init__(f"non-finite loss ({loss})")
        self.loss = loss


def train_step(
    model: nn.Module,
    batch: dict,
    optimizer: torch.optim.Optimizer,
    *,
    amp: str = "off",
    scaler: torch.amp.GradScaler | None = None,
    segmentation_loss_factor: float = SEGMENTATION_LOSS_FACTOR,
    generator: torch.Generator | None = None,
    context: ProcessContext | None = None,
) -> StepLosses:
    """Forward, loss, backward and optimiser step on `batch`; returns the losses.

    model: an OSS-Net or a U-Net baseline on its device, bare or as `wrap_model` wraps it; the batch is moved there.
    batch: `oss_net.data.collate_samples` output ("volume" [B, C, D, H, W], "label" [B, D, H, W],
    "coords" [B, S, 3], "labels" [B, S, 1]). amp: an `oss_net.precision.AMP_MODES` mode for the forward
    pass; scaler: the GradScaler of an fp16 run (None: a plain backward). generator: draws a 2D U-Net's
    training slices (the loop seeds it per iteration, so a resumed run draws the same ones).
    context: the process under DDP, where every rank must see a finite loss so that all stop together.
    A non-finite loss raises NonFiniteLossError before the optimiser or the scaler is touched.
    """
    losses = step_losses(model, batch, amp=amp, segmentation_loss_factor=segmentation_loss_factor, generator=generator)
    finite = bool(torch.isfinite(losses.total).item())
    if not (all_ranks_true(finite, context) if context is not None else finite):
        raise NonFiniteLossError(losses.total.item())
    optimizer.zero_grad(set_to_none=True)
    if scaler is None:
        losses.total.backward()
        optimizer.step()
    else:
        scaler.scale(losses.total).backward()
        scaler.step(optimizer)
        scaler.update()
    segmentation = None if losses.segmentation is None else losses.segmentation.detach()
    return StepLosses(losses.total.detach(), losses.occupancy.detach(), segmentation)


def step_losses(model: nn.Module, batch: dict, *, amp: str = "off",
                segmentation_loss_factor: float = SEGMENTATION_LOSS_FACTOR, generator: torch.Generator | None = None) -> StepLosses:
    """The forward half of `train_step`: the (not yet detached) losses of `batch` for either kind of model.

    Public so the memory benchmark counts what this step saves for backward on the meta device, where
    `train_step`'s finite check and optimiser cannot run.
    """
    bare = bare_model(model)
    if is_dense(bare):
        return _dense_losses(model, bare, batch, amp, generator)
    return _point_losses(model, bare.config, batch, amp, segmentation_loss_factor)


def _point_losses(network: nn.Module, config, batch: dict, amp: str, segmentation_loss_factor: float) -> StepLosses:
    """OSS-Net: occupancy BCE at the sampled points (+ factor × the auxiliary BCE when the model has that head)."""
    device = next(network.parameters()).device
    volume = batch["volume"].to(device, non_blocking=True)  # [B, C, D, H, W]
    coords = batch["coords"].to(device, non_blocking=True)  # [B, S, 3]
    labels = batch["labels"].to(device, non_blocking=True)  # [B, S, 1]
    patches = gather_patches(volume, coords, large=config.large_patches) if config.patches else None  # [B, S, Cp, 7, 7, 7]
    with autocast(amp, device):
        occupancy, segmentation = network(volume, coords, patches)  # [B, S, 1], [B, 1, *out] or None
    target = None
    if segmentation is not None:
        label = batch["label"].to(device, non_blocking=True)  # [B, D, H, W]
        target = class_segmentation_target(config, label)  # [B, K_seg, *out]
    return StepLosses(*training_loss(occupancy, labels, segmentation, target, segmentation_loss_factor,
                                     exclusive=config.label_mode == "exclusive"))


def _dense_losses(network: nn.Module, bare: nn.Module, batch: dict, amp: str,
                  generator: torch.Generator | None) -> StepLosses:
    """A U-Net: its dense segmentation loss on the whole volumes (a 2D net: on random slices drawn by `generator`)."""
    device = next(network.parameters()).device
    volume = batch["volume"].to(device, non_blocking=True)  # [B, C, D, H, W]
    label = batch["label"].to(device, non_blocking=True)  # [B, D, H, W]
    inputs, target = bare.training_pair(volume, label, generator)  # [B, C, *S], [B, 1, *S]
    with autocast(amp, device):
        logits = network(inputs)  # [B, 1, *S]
    loss = segmentation_loss(logits.float(), target, bare.config.dice_weight)
    return StepLosses(loss, loss, None)
