"""The files and metrics of a case predicted by a model of several classes or regions.

`oss_net.labels` says what the outputs mean; here they become, in the case folder:
- `<case>_mask.nii.gz`: ONE label map on the input grid with the dataset's own values (BraTS regions
  back to 0/1/2/4), as the binary mask is for one class;
- `<case>_occupancy_<name>.nii.gz` (model grid) and, with `save_probabilities`,
  `<case>_probability_<name>.nii.gz` (input grid): one probability map per class or region;
- `<case>_<name>_prediction.<format>` / `<case>_<name>_label.<format>`: one mesh per class or region;
- metrics per class or region (`dice_<name>`, `iou_<name>`, `hd95_mm_<name>`, `nsd_<name>`) and their
  mean over classes under the plain names, so `summary.csv/json` and the closing table read as before.
"""
from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from oss_net.labels import LabelScheme, scheme_of

from . import outputs

logger = logging.getLogger(__name__)


def has_classes(config: Any) -> bool:
    """Whether a model's outputs are classes or regions of a label mode (not the paper's binary occupancy)."""
    return scheme_of(config).mode != "binary"


def write_class_case(folder: Path, files: Any, case: Any, prediction: Any, predictor: Any, settings: Any) -> dict[str, Any]:
    """Every output file of one case of a class model into `folder`; returns its metrics record."""
    from .runner import write_meshes, write_overlay

    scheme = scheme_of(predictor.config)
    case_id, meta = files.case_id, case.meta
    occupancy = prediction.occupancy.numpy().reshape(scheme.outputs, *case.image.shape[1:])  # [outputs, *S], model grid
    probabilities = scheme.class_probabilities(occupancy)  # [K, *volume_shape]
    label_model = scheme.label_map(occupancy, settings.threshold)  # [*volume_shape] uint8, dataset values
    label_input = outputs.input_grid_labels(occupancy, meta, settings.threshold, predictor.config)  # [*input_shape]
    outputs.save_input_grid_nifti(label_input, meta, folder / f"{case_id}_mask.nii.gz")
    truth_model = None if case.raw_label is None else scheme.label_map_masks(np.asarray(case.raw_label))  # [K, *S]
    mesh_settings = dataclasses.replace(settings, refine_mesh=False)
    if settings.refine_mesh:
        logger.info("%s: mesh refinement follows one decoder output; the class meshes are kept as extracted", case_id)
    for index, name in enumerate(scheme.names):
        outputs.save_model_grid_nifti(probabilities[index].astype(np.float32), meta, folder / f"{case_id}_occupancy_{name}.nii.gz")
        if settings.save_probabilities:
            probability = np.asarray(meta.to_input_grid(probabilities[index], order=1), dtype=np.float32)
            outputs.save_input_grid_nifti(probability, meta, folder / f"{case_id}_probability_{name}.nii.gz")
        if not settings.no_mesh:
            truth = None if truth_model is None else truth_model[index]
            write_meshes(folder, f"{case_id}_{name}", probabilities[index], truth, meta, case, predictor, mesh_settings)
    if settings.overlay:
        predicted = dict(zip(scheme.names, scheme.label_map_masks(label_model)))  # name -> [*S], one outline each
        truth = None if truth_model is None else dict(zip(scheme.names, truth_model))
        write_overlay(folder / f"{case_id}_overlay.png", case, predicted, truth, meta)
    record: dict[str, Any] = {"case": case_id}
    record.update(class_metrics(scheme, files, label_input, meta, settings.tolerance_mm))
    record.update({
        "seconds": prediction.seconds, "points_evaluated": prediction.points_evaluated,
        "voxels": int(label_model.size), "foreground_voxels": int((label_input > 0).sum()),
        "mode": prediction.mode, "disagreement": prediction.disagreement, "resampled_to_fit": meta.resampled_to_fit,
        "label_mode": scheme.mode, "classes": ",".join(scheme.names),
    })
    for mode, run in prediction.runs.items():
        record[f"{mode}_seconds"] = run["seconds"]
        record[f"{mode}_points_evaluated"] = run["points_evaluated"]
    return record


def class_metrics(scheme: LabelScheme, files: Any, label_map: np.ndarray, meta: Any, tolerance_mm: float) -> dict[str, float]:
    """Per class or region `<metric>_<name>` on the input grid against the label file, plus each metric's
    mean over classes under its plain name (NaNs left out); empty without a label file."""
    import nibabel as nib

    from oss_net.metrics import METRIC_KEYS, evaluate_case, spacing_from_affine

    if files.label is None:
        return {}
    raw = np.asarray(nib.load(str(files.label)).dataobj).reshape(label_map.shape)
    scheme.check_values(np.rint(raw), files.label)
    truth = scheme.label_map_masks(np.rint(raw))  # [K, *input_shape]
    predicted = scheme.label_map_masks(label_map)
    spacing = spacing_from_affine(meta.affine)
    record: dict[str, float] = {}
    for index, name in enumerate(scheme.names):
        scores = evaluate_case(predicted[index], truth[index], spacing, tolerance_mm=tolerance_mm)
        record.update({f"{key}_{name}": value for key, value in scores.items()})
    for key in METRIC_KEYS:
        values = [record[f"{key}_{name}"] for name in scheme.names if not math.isnan(record[f"{key}_{name}"])]
        record[key] = sum(values) / len(values) if values else math.nan
    return record


def model_grid_masks(config: Any, prediction: Any, case: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(predicted, true) bool masks on the model grid for dense validation: [*S] foreground for a binary
    model (as the paper), [K, *S] per class or region otherwise (the dataset's values mapped by the scheme)."""
    scheme = scheme_of(config)
    if scheme.mode == "binary":
        return prediction.mask_model_grid, torch.from_numpy(case.label > 0)
    occupancy = prediction.occupancy.numpy().reshape(scheme.outputs, *case.image.shape[1:])  # [outputs, *S]
    label_map = scheme.label_map(occupancy, prediction.threshold)
    predicted = scheme.label_map_masks(label_map)
    return torch.from_numpy(predicted), torch.from_numpy(scheme.label_map_masks(np.asarray(case.raw_label)))


def class_report(summary: list[dict[str, Any]]) -> str:
    """Per class or region (in the model's order, the cases' "classes"), the mean Dice, IoU and HD95 over the
    cases of `summary.json` (its "mean" row)."""
    mean = next((row for row in summary if row.get("case") == "mean"), {})
    names = next((row["classes"].split(",") for row in summary if row.get("classes")), [])

    def cell(value: Any) -> str:
        return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"

    lines = ["", "per class / region (mean over validation cases, input grid)",
             f"{'region':<12} {'dice':>7} {'iou':>7} {'hd95 mm':>8}"]
    lines += [f"{name:<12} {cell(mean.get(f'dice_{name}')):>7} {cell(mean.get(f'iou_{name}')):>7} "
              f"{cell(mean.get(f'hd95_mm_{name}')):>8}" for name in names]
    return "\n".join(lines)


# The refinement lattice holds the K class probabilities. In exclusive mode the decoder's background output
# is left out there (1 − the classes' sum, exact for a softmax), so the prior mode's "unseeded = 0" holds
# for every channel the lattice refines.


def lattice_classes(config: Any) -> int:
    """Channels of the refinement lattice: the decoder's outputs, without the background of exclusive mode."""
    return config.number_of_classes - (1 if scheme_of(config).mode == "exclusive" else 0)


def class_values(config: Any, outputs: torch.Tensor) -> torch.Tensor:
    """Decoder outputs [N, outputs] -> the class / region probabilities [N, lattice_classes] (the background of
    exclusive mode left out): what the lattice refines and sampled validation scores."""
    return outputs[:, 1:] if scheme_of(config).mode == "exclusive" else outputs


def decoder_outputs(config: Any, grid: torch.Tensor) -> torch.Tensor:
    """The refined lattice [lattice_classes, *S] -> decoder outputs [outputs, *S] (the background put back first)."""
    if scheme_of(config).mode != "exclusive":
        return grid
    return torch.cat([(1.0 - grid.sum(dim=0, keepdim=True)).clamp(min=0.0), grid])
