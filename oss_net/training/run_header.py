"""The first lines of a training log: what is trained on what, split how, and which checkpoint is kept.

    dataset: flare layout at /data/FLARE21 (36 labelled cases; 5 unlabelled in ValidationImg, not used: no labels)
    fingerprint: 36 cases, median spacing 0.80 x 0.80 x 2.50 mm, median shape 512 x 512 x 96, channels CT
    model grid: 64 x 64 x 40 (configuration full)
    label mode: exclusive, classes liver (1), kidney (2), spleen (3), pancreas (4), background the rest
    split: 29 training / 7 validation cases, seeded (seed 0: 1 in 5 of the labelled cases held out); ids in every checkpoint
    checkpoint rule: best_model.pt = highest val/dense_dice_model_grid (...), validated every 5 epochs; final_model.pt at the end

Nothing is chosen silently: every default that decides what a run does is named here. `run_header` gives
the lines; the loop logs them and saves them in hyperparameters.json.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from oss_net.compat import behaviour
from oss_net.data.layouts import EXTERNAL_DATASETS, scan_layout
from oss_net.data.splits import VALIDATION_FRACTION, find_splits_final, original_split
from oss_net.datasets import DatasetError
from oss_net.labels import scheme_of


def run_header(settings: Any, config: Any, split: dict[str, list[str]]) -> list[str]:
    """The log's first lines for a run of `settings` training `config` on the case ids of `split`."""
    return [dataset_line(settings, split), fingerprint_line(config),
            f"model grid: {' x '.join(str(s) for s in config.volume_shape)} (configuration {config.name})",
            label_line(config), split_line(settings, split), checkpoint_line(settings, config)]


def dataset_line(settings: Any, split: dict[str, list[str]]) -> str:
    """The layout, where, and the labelled and unlabelled case counts (an unlabelled set never validates)."""
    labelled = len(split.get("train", [])) + len(split.get("val", []))
    line = f"dataset: {settings.dataset} layout at {settings.dataset_path} ({labelled} labelled cases"
    if settings.dataset in EXTERNAL_DATASETS:
        try:
            unlabelled = scan_layout(settings.dataset, settings.dataset_path, check_grids=False).test
        except DatasetError:
            unlabelled = ()
        if unlabelled:
            folder = Path(unlabelled[0].images[0]).parent.name
            line += f"; {len(unlabelled)} unlabelled in {folder}, not used for validation: they have no labels"
    return line + ")"


def fingerprint_line(config: Any) -> str:
    """The dataset fingerprint the model grid and normalisation come from, or the paper's fixed grid."""
    fingerprint = getattr(config, "fingerprint", None)
    if fingerprint is None:
        return f"fingerprint: none ({config.dataset}: the paper's fixed grid and normalisation)"
    spacing = " x ".join(f"{s:.2f}" for s in fingerprint.spacing)
    shape = " x ".join(str(s) for s in fingerprint.shape)
    return (f"fingerprint: {fingerprint.cases} cases, median spacing {spacing} mm, median shape {shape}, "
            f"channels {', '.join(fingerprint.channel_names)}")


def label_line(config: Any) -> str:
    """The label mode with its class names and the label values each covers."""
    scheme = scheme_of(config)
    if scheme.mode == "binary":
        return "label mode: binary, foreground = every non-zero label value"
    classes = ", ".join(f"{name} ({'/'.join(str(v) for v in values)})" for name, values in scheme.class_labels)
    if scheme.mode == "exclusive":
        return f"label mode: exclusive (argmax over background + classes), classes {classes}"
    return f"label mode: regions (a sigmoid per region at the threshold), regions {classes}"


def split_line(settings: Any, split: dict[str, list[str]]) -> str:
    """The split's sizes and where it comes from."""
    train, val = len(split.get("train", [])), len(split.get("val", []))
    return f"split: {train} training / {val} validation cases, {split_origin(settings, split)}; ids in every checkpoint"


def split_origin(settings: Any, split: dict[str, list[str]]) -> str:
    """Which rule made the split: nnU-Net's splits_final.json, the original's list, or the seeded default."""
    seeded = (f"seeded (seed {settings.seed}: {_fraction(VALIDATION_FRACTION[settings.dataset])} of the labelled "
              "cases held out)")
    if settings.dataset in EXTERNAL_DATASETS:
        splits_final = find_splits_final(Path(settings.dataset_path))
        return f"fold 0 of {splits_final}" if splits_final is not None else seeded
    if original_split(settings.dataset, [*split.get("train", []), *split.get("val", [])]) is not None:
        return "the original's list"
    return f"the layout's training/validation folders when it has them, else {seeded}"


def checkpoint_line(settings: Any, config: Any) -> str:
    """Which model file the run keeps, on which validation score, and how often it looks."""
    if not settings.test:
        return "checkpoint rule: no validation (--no_validation): no val/ metrics and no best_model.pt; final_model.pt at the end"
    metrics = [name for name in behaviour(settings.compat).best_metrics
               if settings.dense_validation or "dense" not in name or not hasattr(config, "label_mode")]
    classes = scheme_of(config).classes_count
    over = f" (the mean over its {classes} classes)" if classes > 1 else ""
    return (f"checkpoint rule: best_model.pt = the highest {metrics[0]}{over}, validated every {settings.val_every} "
            f"epoch(s) and after the last; final_model.pt at the end")


def _fraction(value: float) -> str:
    """0.2 as "1 in 5", 45/369 as "45/369"-like: the held-out share in words."""
    inverse = 1 / value
    return f"1 in {round(inverse)}" if abs(inverse - round(inverse)) < 1e-9 else f"{value:.1%}"

