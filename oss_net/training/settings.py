"""`TrainSettings`: every knob of a training run in one frozen dataclass, saved with the run as JSON.

The command line and the library build the same object, so `train(settings)` is what the CLI runs.
Fields that depend on the dataset or on the `--demo` preset are resolved once, by `resolve_settings`,
so the JSON written next to the run holds the values that were really used.
"""
from __future__ import annotations

import dataclasses
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from oss_net.compat import COMPAT_MODES, DEFAULT_COMPAT, ORIGINAL_REPLICAS
from oss_net.data.layouts import dataset_info, detect_dataset
from oss_net.datasets import DATASETS, PAPER_DATASETS, DatasetError, canonical_dataset
from oss_net.geometry import AFFINE_SOURCES
from oss_net.io import OSSNetError
from oss_net.labels import DEFAULT_LABEL_MODE, LABEL_MODES, dataset_label_mode
from oss_net.models import canonical_network_name
from oss_net.precision import AMP_MODES
from oss_net.training.loss import SEGMENTATION_LOSS_FACTOR

# Size presets. "paper" is docs/reference.md §1.3/§5 (BraTS batch 8, LiTS batch 4, 2^14 points, 50 epochs,
# lr 3e-4, validation every 5 epochs on 2^17 uniform (BraTS) or 2^14 border-weighted (LiTS) points).
# "demo" is sized for `make demo`: the 64×64×40 demo configuration on ~18 synthetic training cases
# reaches a sampled validation Dice of ~0.95 in 10 epochs (90 steps, about a minute on 2 idle cores).
# It needs a larger lr (2e-3) and border-weighted points: with uniform points the ~2.5% foreground
# is learnt far more slowly (Dice 0.46 after 10 epochs with the same lr).
_PAPER = {"epochs": 50, "training_samples": 2**14, "val_every": 5, "lr": 3e-4}
_DEMO = {"epochs": 10, "batch_size": 2, "training_samples": 2**10, "val_every": 2, "lr": 2e-3}
# Datasets without a paper configuration (nnunet, msd, flare) take LiTS's sizes: one set for any scan.
PAPER_PRESET = {
    "brats": {**_PAPER, "batch_size": 8, "val_samples": 2**17, "val_border_balance": 0.0},
    **{name: {**_PAPER, "batch_size": 4, "val_samples": 2**14, "val_border_balance": 0.4}
       for name in ("lits", "nnunet", "msd", "flare")},
}
DEMO_PRESET = {
    "brats": {**_DEMO, "val_samples": 2**13, "val_border_balance": 0.0},
    **{name: {**_DEMO, "val_samples": 2**12, "val_border_balance": 0.4} for name in ("lits", "nnunet", "msd", "flare")},
}
# The demo of several classes or regions (`make demo-regions`, BraTS WT/TC/ET) on top of DEMO_PRESET. The
# smaller regions are learnt after the whole tumour, so it trains longer (270 steps; 5 minutes on 2 busy cores,
# about 3 idle), and draws more of its points from the regions' border band (`oss_net.data.class_targets.CLASS_BAND_MARGIN`).
# Validation Dice WT 0.96, TC 0.94, ET 0.74 (input grid); 20 epochs left ET at 0.21.
DEMO_CLASSES_PRESET = {"epochs": 30, "border_balance": 0.8}
# Fields that define what is trained; a resumed run must agree with its checkpoint on all of them.
RUN_DEFINING_FIELDS = (
    "network_config", "dataset", "demo", "seed", "batch_size", "training_samples", "border_balance",
    "lr", "pau_lr", "amp", "segmentation_loss_factor", "augment", "epochs", "compat", "label_mode", "paper_replicas",
    "continuous_sampling",
    "prefer",
)


class SettingsError(OSSNetError):
    """An inconsistent or invalid combination of training settings."""


@dataclass(frozen=True)
class TrainSettings:
    """One training (and/or validation) run. Defaults are the paper's BraTS setting."""

    train: bool = False  # run the training loop (original flag)
    test: bool = False  # validate every `val_every` epochs; alone: evaluate `load_model` once (original flag)
    cuda_devices: str | None = None  # sets CUDA_VISIBLE_DEVICES before CUDA starts, e.g. "0,1"
    cpu: bool = False  # train on the CPU even when a GPU is there
    epochs: int = 50
    batch_size: int = 8  # per process (global over torchrun's processes with compat "paper")
    training_samples: int = 2**14  # points sampled per volume and iteration
    load_model: str | None = None  # initial weights (a model file or a training checkpoint)
    segmentation_loss_factor: float = SEGMENTATION_LOSS_FACTOR  # weight of the low-res segmentation BCE
    network_config: str = "full"  # Table-1 name (O-Net, A, B, C, D) or an original config name
    dataset: str = "brats"  # one of oss_net.datasets.DATASETS: brats, lits, nnunet, msd, flare
    dataset_path: str | None = None
    uniform_sampling: bool = False  # original flag: border_balance 0 instead of 0.5
    border_balance: float = 0.0  # fraction of training points drawn from the border band (resolved)
    output_dir: str | None = None  # default runs/<timestamp>_<config>_<dataset>
    resume: str | None = None  # a run folder or a checkpoint file
    seed: int = 0
    amp: str = "off"  # "off" | "bf16" | "fp16" (fp16 adds a GradScaler)
    num_workers: int = 0  # DataLoader workers; 0 keeps CPU runs bitwise reproducible and cheap
    val_every: int = 5  # epochs between validations (with --test)
    val_samples: int = 2**17  # points per validation volume for the sampled Dice/IoU
    val_border_balance: float = 0.0  # 0 for BraTS (uniform), 0.4 for LiTS as the original
    dense_validation: bool = True  # also compute full-volume Dice through oss_net.inference
    lr: float = 3e-4
    pau_lr: float = 1e-2  # PAU coefficients, no weight decay; unused by paper mode's optimiser (docs/reference.md §5.1)
    demo: bool = False  # small CPU preset: demo model config and small sample counts
    augment: bool = True  # flips, brightness and noise as the original
    max_iterations: int | None = None  # stop after this many optimiser steps in total (smoke runs)
    checkpoint_every: int = 50  # iterations between checkpoints (plus one at every epoch end)
    keep_last: int = 3  # periodic checkpoints kept on disk
    cache_dir: str | None = None  # cache of pre-processed cases (oss_net.data.load_case)
    compat: str = DEFAULT_COMPAT  # "ours" | "paper" (`--paper`): every original behaviour, see oss_net.compat
    paper_replicas: int = ORIGINAL_REPLICAS  # paper mode: the original's GPUs (batch-norm replicas, validation batch)
    volume_shape: tuple[int, int, int] | None = None  # model grid of nnunet/msd/flare (default: from the fingerprint)
    label_mode: str = DEFAULT_LABEL_MODE  # binary | regions | exclusive (oss_net.labels)
    # training points jittered inside their voxels, targets the label interpolated there (oss_net.data.sampling);
    # not the original's sampling, so never in paper mode
    continuous_sampling: bool = False
    prefer: str | None = None  # sform | qform: the affine of a file whose two disagree (None: refuse it)
    overwrite: bool = False  # start a new run in a non-empty run folder (its earlier run's files are moved aside)
    checkpoint_activations: bool = False  # recompute the residual blocks in backward: less memory, more time

    def __post_init__(self) -> None:
        problems = []
        if self.volume_shape is not None:
            object.__setattr__(self, "volume_shape", tuple(int(s) for s in self.volume_shape))
            if len(self.volume_shape) != 3 or min(self.volume_shape) < 2:
                problems.append(f"volume_shape must be 3 sizes >= 2 (got {self.volume_shape})")
            if self.dataset in PAPER_DATASETS:
                problems.append(f"volume_shape is for datasets without a paper configuration, not {self.dataset}")
        if self.dataset not in DATASETS:
            problems.append(f"dataset {self.dataset!r} is not one of {', '.join(DATASETS)}")
        if self.compat not in COMPAT_MODES:
            problems.append(f"compat {self.compat!r} is not one of {', '.join(COMPAT_MODES)}")
        if self.continuous_sampling and self.compat == "paper":
            problems.append("continuous_sampling is not the original's sampling: paper mode trains on voxel centres "
                            "(drop --continuous_sampling or --paper)")
        if self.label_mode not in LABEL_MODES:
            problems.append(f"label_mode {self.label_mode!r} is not one of {', '.join(LABEL_MODES)}")
        if self.prefer is not None and self.prefer not in AFFINE_SOURCES:
            problems.append(f"prefer {self.prefer!r} is not one of {', '.join(AFFINE_SOURCES)}")
        if self.overwrite and self.resume is not None:
            problems.append("--overwrite starts a new run and --resume continues one: pass only one of them")
        if self.amp not in AMP_MODES:
            problems.append(f"amp {self.amp!r} is not one of {', '.join(AMP_MODES)}")
        for name in ("epochs", "batch_size", "training_samples", "val_every", "val_samples", "checkpoint_every", "keep_last",
                     "paper_replicas"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be at least 1 (got {getattr(self, name)})")
        if self.num_workers < 0:
            problems.append(f"num_workers must be >= 0 (got {self.num_workers})")
        if self.max_iterations is not None and self.max_iterations < 1:
            problems.append(f"max_iterations must be at least 1 (got {self.max_iterations})")
        for name in ("border_balance", "val_border_balance"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                problems.append(f"{name} must lie in [0, 1] (got {getattr(self, name)})")
        if not (math.isfinite(self.lr) and self.lr > 0 and math.isfinite(self.pau_lr) and self.pau_lr > 0):
            problems.append(f"lr and pau_lr must be positive (got {self.lr}, {self.pau_lr})")
        if self.segmentation_loss_factor < 0:
            problems.append(f"segmentation_loss_factor must be >= 0 (got {self.segmentation_loss_factor})")
        if problems:
            raise SettingsError("invalid training settings: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainSettings:
        """Rebuild from `to_dict()` output; unknown keys are an error so stale JSON is noticed."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise SettingsError(f"unknown training settings: {', '.join(unknown)}")
        return cls(**dict(values))

    def replace(self, **changes: Any) -> TrainSettings:
        return dataclasses.replace(self, **changes)


def detected_dataset(dataset_path: str | None) -> str:
    """The dataset whose layout `dataset_path` has (`--dataset` omitted); BraTS, the original's default, when unclear."""
    if dataset_path is None:
        return "brats"
    try:
        return detect_dataset(dataset_path)
    except DatasetError:
        return "brats"  # discovery then reports what is wrong with the folder


def detected_label_mode(dataset: str, dataset_path: str | None) -> str:
    """The label mode of a dataset (`--label_mode` omitted), from its labels (`oss_net.labels.dataset_label_mode`):
    regions for a dataset.json listing regions, exclusive for several foreground labels (FLARE21's four organs,
    a dataset.json naming several classes), binary for one. BraTS and LiTS keep the paper's binary model."""
    if dataset in PAPER_DATASETS or dataset_path is None:
        return DEFAULT_LABEL_MODE
    try:
        info = dataset_info(dataset, Path(dataset_path))
    except DatasetError:
        return DEFAULT_LABEL_MODE  # discovery then reports what is wrong with the dataset
    return dataset_label_mode(dict(info.labels))


def resolve_settings(values: Mapping[str, Any]) -> TrainSettings:
    """Fill the preset-dependent fields left as None and build `TrainSettings`.

    `values` holds TrainSettings fields; a None means "take the preset's value" for the size fields
    and the documented default for the rest. Without `label_mode` the dataset's own labels decide
    (`detected_label_mode`); the demo preset of a non-binary label mode adds DEMO_CLASSES_PRESET.
    `--uniform_sampling` gives border_balance 0, otherwise the preset's (0.5 as the original), unless
    `border_balance` is given explicitly. Table-1 names become the original configuration names
    (C → full), so a run and its resumption compare equal.
    """
    values = {key: value for key, value in values.items() if value is not None}
    dataset = canonical_dataset(values["dataset"]) if "dataset" in values else detected_dataset(values.get("dataset_path"))
    if "network_config" in values:
        values["network_config"] = canonical_network_name(values["network_config"])  # "C" and "full" are one run
    label_mode = values.get("label_mode") or detected_label_mode(dataset, values.get("dataset_path"))
    preset = (DEMO_PRESET if values.get("demo", False) else PAPER_PRESET)[dataset]
    if values.get("demo", False) and label_mode != DEFAULT_LABEL_MODE:
        preset = {**preset, **DEMO_CLASSES_PRESET}
    resolved = {**preset, **values, "dataset": dataset, "label_mode": label_mode}
    if "border_balance" not in values:
        resolved["border_balance"] = 0.0 if values.get("uniform_sampling", False) else preset.get("border_balance", 0.5)
    if values.get("cuda_devices") is not None:
        resolved["cuda_devices"] = ",".join(part.strip() for part in str(values["cuda_devices"]).split(",") if part.strip())
    return TrainSettings.from_dict(resolved)


LR_DECAY = 0.1  # the learning rate's factor at each milestone (docs/reference.md §5)


def lr_milestones(epochs: int) -> list[int]:
    """The epochs from which the learning rate decays: 40% and 60% of the run ([20, 30] for 50), rounded half up."""
    return [max(1, math.floor(fraction * epochs + 0.5)) for fraction in (0.4, 0.6)]


def learning_rate(base_lr: float, epoch: int, epochs: int) -> float:
    """The learning rate of a group during (0-based) `epoch` of an `epochs`-long run: a pure step decay.

    base_lr until the first milestone, then ×0.1, and ×0.1 again from the second. The factors are applied
    milestone by milestone (coinciding ones at once, as 0.1**count), so the values equal those of
    torch's MultiStepLR(gamma=0.1) stepped once per epoch, which earlier versions of the loop used.
    """
    lr = base_lr
    for milestone, count in sorted(Counter(lr_milestones(epochs)).items()):
        if epoch >= milestone:
            lr = lr * LR_DECAY**count
    return lr


def check_resume_compatible(current: TrainSettings, saved: Mapping[str, Any], source: str) -> None:
    """Raise when a resumed run would change what is trained (the checkpoint fixes those fields)."""
    differences = [
        f"{name}: checkpoint {saved[name]!r}, now {getattr(current, name)!r}"
        for name in RUN_DEFINING_FIELDS
        if name in saved and saved[name] != getattr(current, name)
    ]
    if differences:
        raise SettingsError(f"{source}: cannot resume with different settings ({'; '.join(differences)})")
