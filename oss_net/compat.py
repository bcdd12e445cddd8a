"""Paper mode: the one place where every behaviour that differs from the original is switched.

`compat` is "ours" (the default: the original's bugs and inconsistencies fixed) or "paper" (every
behaviour of the original code that the paper's Table 1 was measured with, docs/reference.md §12).
Code never tests `compat == "paper"` itself; it asks `behaviour(compat)` for the flag it needs:

| flag | ours | paper | docs/reference.md |
|---|---|---|---|
| raw_coordinates | False: points mapped to [-1, 1] | True: raw voxel indices | §12.13 |
| include_last_index | True | False: floor(U·(dim−1)) never reaches dim−1 | §6.4, §12.18 |
| large_patch_pooling | "avg" (as in training) | "max" at inference | §8.1, §12.11 |
| best_metrics | dense Dice on the model grid (sampled Dice without it) | sampled IoU (dense IoU for a U-Net, which has no sampled points) | §5, §9 |
| augmentation | "ours": uniform flip subsets, on the model grid | "original": flip subsets 1/4, 1/4, 1/2; brightness and noise at native resolution | §6.3 |
| global_batch | False: --batch_size per process | True: --batch_size over all processes | §5, §1.3 |
| refinement | "ours": decode where coarse labels disagree, inherit elsewhere | "original": decode every voxel next to a positive (3^s window) | §8.1, §12.16 |
| seed_align_corners | False: each coarse value at the centre of the voxels its cell pooled | True: the original's align_corners=True upsampling of the prior seed | §8.2, §12.28 |
| lattice_last_index | True: each inference lattice adds the last index of an axis | False: arange(0, size, stride) only, so the prior seed lands on R/stride exactly | §8.1, §8.2 |
| optimizer | "ours": torch's RAdam, every group at its own lr (PAUs at --pau_lr) | "original": torch-optimizer 0.1.0's RAdam, one step-size cache for all groups (PAUs at the ordinary lr) | §5.1 |
| replica_batch_norm | False: batch norm over the process's batch (SyncBatchNorm on GPUs under torchrun) | True: over each of --paper_replicas virtual replicas, running statistics from the first | §5, §12.22 |
| validation | "ours": one fixed set of points, mean over volumes | "original": points redrawn at every validation, mean over batches of --paper_replicas volumes | §5, §9 |
| label_resampling | "nearest-exact": centre-aligned nearest for resampled labels and border maps | "nearest": torch's "nearest", half a voxel off | §6.2 |
| zscore | "ours": population std + 1e-6 | "original": unbiased std, no epsilon (a constant image is an error) | §6.1, §6.2 |

The BraTS split is not switched: the original's fixed 324/45 list (`oss_net.data.splits`) is the
BraTS default in both modes whenever every case it names is present.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from oss_net.io import OSSNetError

COMPAT_MODES: tuple[str, ...] = ("ours", "paper")
DEFAULT_COMPAT = "ours"
# The names of training's validation metrics (oss_net.training.validation; docs/metrics.md "Metric names"):
# each says its grid. Kept here because the best model is chosen on one of them, by mode.
SAMPLED_LOSS = "val/sampled_loss"
SAMPLED_DICE = "val/sampled_dice"
SAMPLED_IOU = "val/sampled_iou"
DENSE_DICE = "val/dense_dice_model_grid"
DENSE_IOU = "val/dense_iou_model_grid"
VALIDATION_SCORES = (SAMPLED_DICE, SAMPLED_IOU, DENSE_DICE, DENSE_IOU)  # higher is better


class CompatError(OSSNetError, ValueError):
    """An unknown compatibility mode, or a batch that paper mode cannot split over the processes."""


@dataclass(frozen=True)
class Behaviour:
    """Every switch that paper mode turns, with its value in one mode (see the module table)."""

    compat: str
    raw_coordinates: bool
    include_last_index: bool
    large_patch_pooling: str
    best_metrics: tuple[str, ...]  # the first of these present in a validation's metrics decides "best"
    augmentation: str
    global_batch: bool
    refinement: str  # inference's candidate rule (oss_net.inference.lattice.REFINEMENTS)
    seed_align_corners: bool  # how the prior seed is upsampled (oss_net.inference.lattice.seed_from_segmentation)
    lattice_last_index: bool  # whether inference lattices add each axis's last index (oss_net.inference.lattice)
    optimizer: str  # "ours" | "original": the RAdam of oss_net.training.lookahead.build_optimizer
    replica_batch_norm: bool  # batch norm per virtual replica (oss_net.training.distributed.wrap_model)
    validation: str  # "ours" | "original": fixed points and per-volume means, or redrawn points and batch means
    label_resampling: str  # torch's mode for resampled labels and border maps (oss_net.data.grid)
    zscore: str  # "ours" | "original" (oss_net.data.cases.zscore)


_BEHAVIOURS = {
    "ours": Behaviour("ours", raw_coordinates=False, include_last_index=True, large_patch_pooling="avg",
                      best_metrics=(DENSE_DICE, SAMPLED_DICE), augmentation="ours", global_batch=False,
                      refinement="ours", seed_align_corners=False, lattice_last_index=True, optimizer="ours",
                      replica_batch_norm=False, validation="ours", label_resampling="nearest-exact", zscore="ours"),
    "paper": Behaviour("paper", raw_coordinates=True, include_last_index=False, large_patch_pooling="max",
                       best_metrics=(SAMPLED_IOU, DENSE_IOU), augmentation="original", global_batch=True,
                       refinement="original", seed_align_corners=True, lattice_last_index=False,
                       optimizer="original", replica_batch_norm=True, validation="original", label_resampling="nearest",
                       zscore="original"),
}


def check_compat(compat: str) -> str:
    """`compat` itself when it is one of COMPAT_MODES; CompatError naming the valid modes otherwise."""
    if compat not in COMPAT_MODES:
        raise CompatError(f"unknown compat mode {compat!r}; valid modes: {', '.join(COMPAT_MODES)}")
    return compat


def behaviour(compat: str) -> Behaviour:
    """The switches of mode `compat` ("ours" or "paper")."""
    return _BEHAVIOURS[check_compat(compat)]


def model_fields(compat: str) -> dict[str, Any]:
    """The model-configuration fields mode `compat` sets (`OSSNetConfig` overrides)."""
    flags = behaviour(compat)
    return {"compat": flags.compat, "raw_coordinates": flags.raw_coordinates,
            "large_patch_pooling": flags.large_patch_pooling}


def apply_compat(config: Any, compat: str) -> Any:
    """`config` with the fields of mode `compat`; a configuration without them (a U-Net) is returned as is."""
    fields = {f.name for f in dataclasses.fields(config)}
    changes = {name: value for name, value in model_fields(compat).items() if name in fields}
    return dataclasses.replace(config, **changes) if changes else config


def best_score(metrics: dict[str, float], compat: str) -> float:
    """The validation score a run keeps its best model on: the first of the mode's `best_metrics` in `metrics`."""
    for name in behaviour(compat).best_metrics:
        if name in metrics:
            return metrics[name]
    raise CompatError(f"validation gave {sorted(metrics)}, none of {list(behaviour(compat).best_metrics)} "
                      f"that compat {compat!r} selects the best model on")


def per_rank_batch(batch_size: int, world_size: int, compat: str) -> int:
    """Volumes per process and step: `batch_size` itself, or in paper mode its share of the global batch.

    The original's batch (BraTS 8, LiTS 4) was split over two GPUs by DataParallel; paper mode does the
    same over torchrun's processes, so it must divide evenly.
    """
    if not behaviour(compat).global_batch:
        return batch_size
    if batch_size % world_size:
        raise CompatError(f"compat {compat!r}: --batch_size {batch_size} is the global batch and must be a "
                          f"multiple of the {world_size} processes")
    return batch_size // world_size


ORIGINAL_REPLICAS = 2  # the original's scripts trained under nn.DataParallel on two GPUs (docs/reference.md §5)


def replicas_per_process(replicas: int, world_size: int, compat: str) -> int | None:
    """Virtual replicas each process splits its batch into for batch norm: None in our mode (batch norm over the
    process's batch); in paper mode the original's `replicas` GPUs shared out over the processes, each of which
    must hold whole replicas (`oss_net.training.distributed.wrap_model`)."""
    if not behaviour(compat).replica_batch_norm:
        return None
    if replicas < 1 or replicas % world_size:
        raise CompatError(f"compat {compat!r}: --paper_replicas {replicas} must be a positive multiple of the "
                          f"{world_size} processes (each process normalises whole replicas)")
    return replicas // world_size


def validation_batch(replicas: int, compat: str) -> int:
    """Volumes per validation batch that the sampled scores are averaged over first: 1 in our mode (a mean over
    volumes); in paper mode one per replica, as the original's loader of batch size = number of GPUs."""
    return replicas if behaviour(compat).validation == "original" else 1
