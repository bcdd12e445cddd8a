"""Validation during training: the original's sampled-point Dice/IoU and a dense full-volume Dice.

Sampled (docs/reference.md §5, §9): every validation volume gets a set of points (2^17 uniform for
BraTS, 2^14 with border balance 0.4 for LiTS; fixed, or in paper mode redrawn at every validation); the
prediction is decided by the label mode's rule, the one inference uses (`oss_net.labels.DecisionRule`:
thresholded at 0.5, or in exclusive mode the argmax over background + classes) and Dice/IoU are
computed per volume (with the original's 1e-10 in the
denominators) and averaged over volumes, or in paper mode per batch of volumes first, then over batches.
Dense: the whole volume is predicted through `oss_net.inference.Predictor` and compared with the
label on the model grid, which is what the reported numbers should have been (docs/reference.md §12.12).
The metric names say which (`val/sampled_*`, `val/dense_*_model_grid`; docs/metrics.md "Which grid").
A model of several classes or regions (`oss_net.labels`) is scored per class, `<metric>_<name>`
(e.g. `val/sampled_dice_ET`), and the plain names hold the mean over its classes, as inference's metrics do.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

import torch
from torch import nn

from oss_net.compat import DENSE_DICE, DENSE_IOU, SAMPLED_DICE, SAMPLED_IOU, SAMPLED_LOSS
from oss_net.data import gather_patches
from oss_net.inference import PredictOptions, make_predictor
from oss_net.inference.defaults import THRESHOLD
from oss_net.inference.predictor import class_values, default_chunk_size, model_grid_masks
from oss_net.labels import scheme_of
from oss_net.metrics import dice, iou
from oss_net.precision import autocast
from oss_net.training.loss import clamped_bce

EPSILON = 1e-10  # the original's denominator guard


def point_scores(predicted: torch.Tensor, label: torch.Tensor) -> tuple[float, float]:
    """(Dice, IoU) of one volume's points: decisions `predicted` [N] bool (the label mode's rule), label [N] in {0, 1}."""
    truth = label > 0.5  # labels are 0 or 1
    intersection = (predicted & truth).sum().item()
    union = (predicted | truth).sum().item()
    dice = 2.0 * intersection / (predicted.sum().item() + truth.sum().item() + EPSILON)
    return dice, intersection / (union + EPSILON)


def class_scores(names: Sequence[str], scores: Sequence[Sequence[tuple[float, float]]], dice_key: str,
                 iou_key: str) -> dict[str, float]:
    """Metrics of per-volume (Dice, IoU) pairs `scores[volume][class]`: each class's mean over volumes as
    `<key>_<name>` (only when there are several classes) and the mean over classes under the plain keys."""
    count = max(len(scores), 1)
    dices = [sum(volume[index][0] for volume in scores) / count for index in range(len(names))]  # [K]
    ious = [sum(volume[index][1] for volume in scores) / count for index in range(len(names))]  # [K]
    metrics = {dice_key: sum(dices) / len(names), iou_key: sum(ious) / len(names)}
    if len(names) > 1:
        for name, dice_value, iou_value in zip(names, dices, ious):
            metrics[f"{dice_key}_{name}"] = dice_value
            metrics[f"{iou_key}_{name}"] = iou_value
    return metrics


def batch_means(values: Sequence[Any], batch: int) -> list[Any]:
    """Means over consecutive groups of `batch` volumes' values (each a number, or nested lists/tuples of
    numbers of one shape); the last group may be smaller. batch 1: the values themselves."""
    if batch < 1:
        raise ValueError(f"batch must be at least 1 (got {batch})")
    if batch == 1:
        return list(values)
    return [_mean(values[start:start + batch]) for start in range(0, len(values), batch)]


def _mean(group: Sequence[Any]) -> Any:
    first = group[0]
    if isinstance(first, (list, tuple)):
        return type(first)(_mean([member[i] for member in group]) for i in range(len(first)))
    return sum(group) / len(group)


@torch.no_grad()
def sampled_validation(
    model: nn.Module,
    samples: Iterable[dict],
    device: torch.device,
    amp: str,
    batch: int = 1,
) -> dict[str, float]:
    """Mean BCE, Dice and IoU over validation volumes at their sampled points (model in eval mode), per class
    or region for a model of several (`class_scores`).

    samples: dataset items {"volume" [C, *grid], "coords" [S, 3], "labels" [S, outputs]}; amp: an
    `oss_net.precision.AMP_MODES` mode; batch: volumes averaged together first, in order, before the mean over
    these batches (the original's loader of 2; a last, smaller batch counts as one), 1: the mean over volumes.
    """
    config = model.config
    rule = scheme_of(config).rule(THRESHOLD)
    was_training = model.training
    model.eval()
    losses, scores = [], []
    try:
        for sample in samples:
            volume = sample["volume"].unsqueeze(0).to(device)  # [1, C, D, H, W]
            coords = sample["coords"].unsqueeze(0).to(device)  # [1, S, 3]
            labels = class_values(config, sample["labels"]).to(device)  # [S, K]
            chunks = []
            chunk_size = default_chunk_size(device)  # as many points at a time as inference
            with autocast(amp, device):
                encoding = model.fold(model.encode(volume))  # the decoder folded for this volume, as inference does
                for start in range(0, coords.shape[1], chunk_size):
                    chunk = coords[:, start:start + chunk_size]  # [1, n, 3]
                    patches = gather_patches(volume, chunk, large=config.large_patches) if config.patches else None
                    chunks.append(class_values(config, model.decode(chunk, encoding, patches)[0].float()))
            prediction = torch.cat(chunks)  # [S, K]
            losses.append(clamped_bce(prediction.reshape(-1), labels.reshape(-1)).item())
            decided = rule.decide(prediction.t())  # [K, S]: inference's rule (exclusive: the argmax)
            scores.append([point_scores(decided[k], labels[:, k]) for k in range(labels.shape[1])])
    finally:
        model.train(was_training)
    losses, scores = batch_means(losses, batch), batch_means(scores, batch)
    metrics = {SAMPLED_LOSS: sum(losses) / max(len(losses), 1)}
    metrics.update(class_scores(scheme_of(config).names, scores, SAMPLED_DICE, SAMPLED_IOU))
    return metrics


def dense_validation(model: nn.Module, cases: Iterable, amp: str) -> dict[str, float]:
    """Mean full-volume Dice/IoU over loaded validation cases, predicted by `oss_net.inference.make_predictor`
    (OSS-Net coarse-to-fine in its default mode, a U-Net densely) and compared with the label on the model grid;
    per class or region for a model of several (`class_scores`)."""
    names = scheme_of(model.config).names
    was_training = model.training  # Predictor switches the model to eval mode
    scores = []
    try:
        predictor = make_predictor(model, PredictOptions(amp=amp))
        for case in cases:
            # [*volume_shape] bool foreground, or [K, *volume_shape] per class or region (oss_net.inference.predictor)
            mask, label = model_grid_masks(model.config, predictor.predict_case(case), case)
            if len(names) == 1:
                mask, label = mask[None], label[None]  # [1, *volume_shape]
            scores.append([(dice(mask[k], label[k]), iou(mask[k], label[k])) for k in range(len(names))])
    finally:
        model.train(was_training)
    if not scores:
        return {}
    return class_scores(names, scores, DENSE_DICE, DENSE_IOU)
