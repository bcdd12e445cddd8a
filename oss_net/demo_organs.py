"""The tables of `make demo-organs` (`python -m oss_net.demo --organs`): four abdominal organs in CT, FLARE21-style.

- per organ, for the default mode and for standard mode: Dice, HD95 (mm) and NSD at 1 mm on the input grid,
  the mean over the validation cases;
- per organ, where the two modes disagree: voxels, as a share of the organ's predicted voxels and of the
  whole predicted foreground (standard mode's), summed over the cases;
- FLARE's efficiency table (parameters, GFLOPs, seconds and peak memory per case) of the trained OSS-Net C
  and of the 3D U-Net baseline on the same grid, untrained (its cost does not depend on its weights).
"""
from __future__ import annotations

import math
import os
import resource
from pathlib import Path
from typing import Any, Sequence

import nibabel as nib
import numpy as np

from oss_net.inference import make_predictor
from oss_net.inference.efficiency import CaseCost, case_cost, efficiency_table
from oss_net.labels import LabelScheme
from oss_net.models import DEMO_UNET_OVERRIDES, UNetConfig, build_model

ORGAN_METRICS = (("dice", "Dice"), ("hd95_mm", "HD95 mm"), ("nsd", "NSD 1 mm"))


def organ_table(summaries: dict[str, list[dict[str, Any]]], names: Sequence[str]) -> str:
    """Per organ, each metric's mean over the cases for each mode of `summaries` ({mode: summary.json rows})."""
    means = {mode: next((row for row in rows if row.get("case") == "mean"), {}) for mode, rows in summaries.items()}
    header = f"{'organ':<10}" + "".join(f" {label + ' ' + mode:>{len(label) + len(mode) + 2}}"
                                        for mode in summaries for _, label in ORGAN_METRICS)
    lines = [header]
    for name in names:
        cells = [_cell(means[mode].get(f"{key}_{name}"), len(label) + len(mode) + 2)
                 for mode in summaries for key, label in ORGAN_METRICS]
        lines.append(f"{name:<10}" + "".join(f" {cell}" for cell in cells))
    return "\n".join(lines)


def class_disagreement(scheme: LabelScheme, first: Path, second: Path, case_ids: Sequence[str]) -> dict[str, dict[str, float]]:
    """Per class, the voxels where the label maps of two runs (case folders `<id>/<id>_mask.nii.gz` under `first`
    and `second`) disagree, summed over `case_ids`, and their share of the class's and of all foreground voxels
    predicted by `second`."""
    totals = {name: [0, 0] for name in scheme.names}  # name -> [disagreeing voxels, voxels of the class]
    foreground = 0
    for case_id in case_ids:
        masks = [scheme.label_map_masks(np.asarray(nib.load(str(root / case_id / f"{case_id}_mask.nii.gz")).dataobj))
                 for root in (first, second)]  # 2 × [K, *input_shape]
        foreground += int(masks[1].any(axis=0).sum())
        for name, one, other in zip(scheme.names, *masks):
            totals[name][0] += int((one != other).sum())
            totals[name][1] += int(other.sum())
    return {name: {"voxels": voxels, "of_class": voxels / max(size, 1), "of_foreground": voxels / max(foreground, 1)}
            for name, (voxels, size) in totals.items()}


def disagreement_table(disagreement: dict[str, dict[str, float]], modes: tuple[str, str]) -> str:
    """The per-class disagreement of two modes as text."""
    lines = [f"{'organ':<10} {'voxels':>8} {'of organ':>9} {'of foreground':>14}   ({modes[0]} vs {modes[1]})"]
    for name, figures in disagreement.items():
        lines.append(f"{name:<10} {figures['voxels']:>8,} {figures['of_class']:>8.2%} {figures['of_foreground']:>13.2%}")
    return "\n".join(lines)


def efficiency_costs(name: str, model: Any, image: Any, device: str = "cpu") -> list[CaseCost]:
    """The trained OSS-Net `name` in its default mode and the 3D U-Net baselines (the demo's widths and the
    paper's) on the same grid and channels, on one image [C, *volume_shape]."""
    config = model.config
    costs = [case_cost(name, make_predictor(model, device=device), image)]
    for label, widths in (("3D U-Net (demo)", DEMO_UNET_OVERRIDES), ("3D U-Net (paper widths)", {})):
        unet = build_model(UNetConfig(name="unet3d", dataset=config.dataset, in_channels=config.in_channels,
                                      volume_shape=config.volume_shape, **widths))
        costs.append(case_cost(label, make_predictor(unet, device=device), image))
    return costs


def organs_report(result: dict[str, Any]) -> str:
    """Everything the organs demo prints after the per-case table (`run_demo(..., organs=True)`)."""
    summaries = result["summaries"]
    names = next((row["classes"].split(",") for row in result["summary"] if row.get("classes")), [])
    modes = tuple(summaries)
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    lines = ["", "per organ: the mean over the validation cases, input grid", organ_table(summaries, names), "",
             "where the default mode and standard mode disagree", disagreement_table(result["disagreement"], modes), "",
             "FLARE-style efficiency, one validation case on this machine (GFLOPs: convolutions and matrix products)",
             efficiency_table(result["efficiency"]), "",
             f"total {sum(result['seconds'].values()):.0f} s wall, {cpu.ru_utime + cpu.ru_stime:.0f} s CPU, load "
             f"average {load} (1, 5, 15 min) on {os.cpu_count()} cores"]
    return "\n".join(lines)


def _cell(value: Any, width: int) -> str:
    missing = value is None or (isinstance(value, float) and math.isnan(value))
    return f"{'n/a' if missing else f'{value:.3f}':>{width}}"
