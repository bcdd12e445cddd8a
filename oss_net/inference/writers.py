"""`CaseWriter`: every output file of one predicted case, and the case's record, for both commands.

    writer = CaseWriter(predictor, WriteOptions(probabilities=True))
    record = writer.write(folder, files, case, prediction)    # files: CaseFiles, case: its loaded Case

A model predicts K classes or regions (`oss_net.labels`); the paper's binary model is the
K = 1 case, its one class "foreground", whose files carry no class name. Per class the writer has its
probability on the model grid, its predicted mask (from the case's label map) and, with a label, its
true mask (`ClassMaps`); every file below is made from those.

Files of a case `<id>`, layout "case_folder" (`oss-net-infer`: into the case's staging folder, which
`outputs` publishes as `<output_dir>/<id>/`; a class model's files carry `_<name>` where `[_<name>]` is):

| file                                   | grid / frame                                                        |
|----------------------------------------|---------------------------------------------------------------------|
| `<id>_occupancy[_<name>].nii.gz`       | float32 probability on the model grid, with the model grid's own affine |
| `<id>_mask.nii.gz`                     | uint8 label map on the input grid (the dataset's values: binary 0/1, BraTS regions 0/1/2/4), input affine and header |
| `<id>_probability[_<name>].nii.gz`     | float32 probability on the input grid (`probabilities`)             |
| `<id>[_<name>]_prediction.{obj,ply,stl}` | prediction mesh in scanner mm, LPS (or RAS), `SPACE=` in the header; voxel indices with `voxel_coordinates` |
| `<id>[_<name>]_label.{obj,ply,stl}`    | label mesh, same frame                                              |
| `<id>_overlay.png`                     | mid-slices of the image, label and prediction outlined (one outline per class) |
| `metrics.json`, `manifest.json`        | the record and the manifest, written by the runner (`outputs`)      |

Layout "flat" (`oss-net-predict`, nnU-Net's naming, in the output folder): `<id>_probabilities.nii.gz`
(every decoder output, channels last) with `probabilities`, `<id>_prediction.<format>` (the
foreground, `foreground_probability`) with `meshes`, and `<id>.nii.gz`, the label map, written last
(it marks the case finished).

The record (`case_record`, the same fields for every model): the metrics against the label file
(`label_metrics`: per class `<metric>_<name>` for K > 1, and the plain `dice`, `iou`, `hd95_mm`,
`nsd`, their mean over the classes), timings and points of the prediction, the grid facts and the
label mode with its classes.

The occupancy grid (BraTS: the padded grid; LiTS: the resampled cube) opens aligned with the image in
any NIfTI viewer: its affine is `model_grid_affine`, the input affine with the pad offset or the
resampling folded in. The label map goes back to the input grid by `input_grid_labels`: on a padded
grid it is labelled on the model grid and un-padded (exact); on a resampled grid the probabilities are
resampled (trilinear) and labelled there, so a coarse model grid leaves no staircase on the scan's
finer axes (nnU-Net's order too).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import nibabel as nib
import numpy as np
import trimesh

from oss_net.data import CaseFiles, spacing_from_affine
from oss_net.io import atomic_save_nifti
from oss_net.labels import LabelScheme, scheme_of
from oss_net.meshing import extract_mesh, overlay_png, refine_vertices, save_mesh
from oss_net.metrics import METRIC_KEYS, evaluate_case

from .options import WriteOptions
from .outputs import flat_mask_path
from .predictor import DensePredictor, Prediction, Predictor

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClassMaps:
    """One case's prediction per class on the model grid: the K = 1 "foreground" class of a binary model,
    or the classes / regions of its label mode.

    tags: the file-name part of each class ("" for binary, "_<name>" otherwise).
    probabilities: K arrays [*S] float32; predicted: K bool masks [*S] from the case's label map;
    truth: K bool masks [*S] of the case's label, or None without one.
    """

    names: tuple[str, ...]
    tags: tuple[str, ...]
    probabilities: list[np.ndarray]
    predicted: np.ndarray
    truth: np.ndarray | None

    @classmethod
    def of(cls, config: Any, occupancy: np.ndarray, threshold: float, raw_label: np.ndarray | None) -> "ClassMaps":
        """From a model's decoder outputs `occupancy` [*S] or [outputs, *S] and the case's label [*S] (or None)."""
        scheme = scheme_of(config)
        binary = scheme.mode == "binary"
        labels = label_map(occupancy, threshold, config)  # [*S] uint8, the dataset's values
        probabilities = ([foreground_probability(occupancy, config)] if binary
                         else list(scheme.class_probabilities(occupancy.reshape(scheme.outputs, *labels.shape))))
        truth = None if raw_label is None else scheme.label_map_masks(np.asarray(raw_label))  # [K, *S]
        return cls(names=scheme.names, tags=("",) if binary else tuple(f"_{name}" for name in scheme.names),
                   probabilities=probabilities, predicted=scheme.label_map_masks(labels), truth=truth)


class CaseWriter:
    """The files of one predicted case in the layout of `options`, and its record (module docstring).

    Args:
        predictor: what predicted the cases (its `config`; `point_decoder` and `device` for `refine_mesh`).
        options: which files, and the mesh and metric options.
    """

    def __init__(self, predictor: Predictor | DensePredictor | Any, options: WriteOptions) -> None:
        self.predictor = predictor
        self.config = predictor.config
        self.scheme = scheme_of(self.config)
        self.options = options

    def write(self, folder: Path, files: CaseFiles, case: Any, prediction: Prediction) -> dict[str, Any]:
        """Every file of `case` (loaded from `files`, predicted as `prediction`) into `folder`; returns its record."""
        occupancy = prediction.occupancy.numpy()  # [*S] or [outputs, *S] float32, model grid
        if self.options.layout == "flat":
            labels = self.write_flat(folder, files.case_id, case, occupancy, prediction.threshold)
        else:
            labels = self.write_case_folder(folder, files.case_id, case, occupancy, prediction.threshold)
        metrics = label_metrics(self.scheme, files.label, labels, case.meta, self.options.tolerance_mm)
        return case_record(files.case_id, prediction, case.meta, self.scheme, metrics, labels)

    def write_case_folder(self, folder: Path, case_id: str, case: Any, occupancy: np.ndarray,
                          threshold: float) -> np.ndarray:
        """The case folder's files (module docstring); returns the label map [*input_shape] uint8."""
        meta, options = case.meta, self.options
        maps = ClassMaps.of(self.config, occupancy, threshold, case.raw_label)
        saved = []  # per class [*input_shape] float32, with `probabilities`
        for tag, probability in zip(maps.tags, maps.probabilities):
            save_model_grid_nifti(probability.astype(np.float32), meta, folder / f"{case_id}_occupancy{tag}.nii.gz")
            if options.probabilities:
                saved.append(np.asarray(meta.to_input_grid(probability, order=1), dtype=np.float32))
                save_input_grid_nifti(saved[-1], meta, folder / f"{case_id}_probability{tag}.nii.gz")
        reuse = saved[0] if saved and occupancy.ndim == 3 and maps.tags == ("",) else None  # the one output, resampled
        if self.scheme.mode != "binary":
            occupancy = occupancy.reshape(self.scheme.outputs, *case.image.shape[1:])
        labels = input_grid_labels(occupancy, meta, threshold, self.config, reuse)  # [*input_shape] uint8
        save_input_grid_nifti(labels, meta, folder / f"{case_id}_mask.nii.gz")
        if options.meshes:
            self.write_class_meshes(folder, case_id, case, maps, threshold)
        if options.overlay:
            if maps.tags == ("",):  # binary: the prediction and the label outlined
                predicted, truth = maps.predicted[0], None if maps.truth is None else maps.truth[0]
            else:  # one outline per class
                predicted = dict(zip(maps.names, maps.predicted))
                truth = None if maps.truth is None else dict(zip(maps.names, maps.truth))
            write_overlay(folder / f"{case_id}_overlay.png", case, predicted, truth, meta)
        return labels

    def write_class_meshes(self, folder: Path, case_id: str, case: Any, maps: ClassMaps, threshold: float) -> None:
        """Prediction and label meshes per class; only the binary prediction mesh can be refined."""
        refine = self.options.refine_mesh
        if refine and maps.tags != ("",):
            logger.info("%s: mesh refinement follows one decoder output; the class meshes are kept as extracted", case_id)
            refine = False
        for index, (tag, probability) in enumerate(zip(maps.tags, maps.probabilities)):
            truth = None if maps.truth is None else maps.truth[index]
            self.write_meshes(folder, f"{case_id}{tag}", probability, truth, case, threshold, refine)

    def write_flat(self, folder: Path, case_id: str, case: Any, occupancy: np.ndarray, threshold: float) -> np.ndarray:
        """oss-net-predict's files, the label map last (module docstring); returns it [*input_shape] uint8."""
        meta = case.meta
        probabilities = None
        if self.options.probabilities:
            probabilities = np.asarray(meta.to_input_grid(occupancy, order=1), dtype=np.float32)  # [outputs?, *input_shape]
            channels_last = probabilities if probabilities.ndim == 3 else np.moveaxis(probabilities, 0, -1)
            save_input_grid_nifti(channels_last, meta, flat_probabilities_path(folder, case_id))
        if self.options.meshes:
            self.write_meshes(folder, case_id, foreground_probability(occupancy, self.config), None, case, threshold,
                              refine=False)
        labels = input_grid_labels(occupancy, meta, threshold, self.config, probabilities)  # [*input_shape] uint8
        save_input_grid_nifti(labels, meta, flat_mask_path(folder, case_id))
        return labels

    def write_meshes(self, folder: Path, stem: str, probability: np.ndarray, truth: np.ndarray | None, case: Any,
                     threshold: float, refine: bool) -> None:
        """`<stem>_prediction` (and `<stem>_label` for a true mask) meshes, extracted on the model grid from
        probability [*S] (truth [*S] bool), vertices in scanner mm (or model-grid voxel indices)."""
        options = self.options
        affine = None if options.voxel_coordinates else model_grid_affine(case.meta)
        extract = {"face_budget": options.face_budget, "edge_mm": options.mesh_edge_mm}
        meshes = {"prediction": extract_mesh(probability, affine, level=threshold,
                                             min_component_voxels=options.min_component_voxels, **extract)}
        if refine and isinstance(self.predictor, DensePredictor):
            logger.info("%s: mesh refinement needs a point decoder; the U-Net mesh is kept as extracted", stem)
        elif refine and len(meshes["prediction"].faces):
            meshes["prediction"] = refine_prediction_mesh(meshes["prediction"], affine, case, self.predictor)
        if truth is not None:  # the label mesh keeps every component, as the original's
            meshes["label"] = extract_mesh(truth.astype(np.float32), affine, level=0.5, min_component_voxels=0, **extract)
        space = None if options.voxel_coordinates else options.mesh_space
        for name, mesh in meshes.items():
            for file_type in options.mesh_format:
                save_mesh(mesh, folder / f"{stem}_{name}.{file_type}", space=space)


def foreground_probability(occupancy: np.ndarray, config: Any) -> np.ndarray:
    """[*S] probability of foreground from decoder outputs [*S] or [outputs, *S]: the occupancy, the first
    (largest) region of a regions model (e.g. BraTS WT), else 1 − p(background) (output 0)."""
    if occupancy.ndim == 3 or scheme_of(config).mode == "regions":
        return occupancy.reshape(-1, *occupancy.shape[-3:])[0]
    return 1.0 - occupancy[0]


def refine_prediction_mesh(mesh: trimesh.Trimesh, affine: np.ndarray | None, case: Any, predictor: Predictor) -> trimesh.Trimesh:
    """Move the vertices onto the decoder's level set (docs/reference.md §8.3); the decoder works in model-grid voxels."""
    voxels = mesh.copy()
    if affine is not None:
        voxels.apply_transform(np.linalg.inv(affine))
    refined = refine_vertices(voxels, predictor.point_decoder(case.image), device=predictor.device)
    if affine is not None:
        refined.apply_transform(affine)
    return refined


def write_overlay(path: Path, case: Any, predicted: np.ndarray | Mapping[str, np.ndarray],
                  truth: np.ndarray | Mapping[str, np.ndarray] | None, meta: Any) -> None:
    """Mid-slices of the first channel with label and prediction outlined, on the model grid; masks given as
    {class name: mask} are outlined per class (`oss_net.meshing.overlay_png`)."""
    image = np.asarray(case.image)[0]  # [*volume_shape]
    spacing = np.linalg.norm(model_grid_affine(meta)[:3, :3], axis=0)
    overlay_png(image, truth, predicted, path, spacing=tuple(float(s) for s in spacing))


def label_metrics(scheme: LabelScheme, label_file: Path | None, labels: np.ndarray, meta: Any,
                  tolerance_mm: float) -> dict[str, float]:
    """Dice, IoU, HD95 (mm) and NSD of the label map `labels` [*input_shape] against the label file, on the input grid:
    per class `<metric>_<name>` when there are several, and each metric's mean over the classes (NaNs left
    out) under its plain name; empty without a label file."""
    if label_file is None:
        return {}
    raw = np.asarray(nib.load(str(label_file)).dataobj).reshape(labels.shape)
    if scheme.mode == "binary":
        truth = (raw > 0)[None]  # [1, *input_shape]: every non-zero value is foreground
    else:
        scheme.check_values(np.rint(raw), label_file)
        truth = scheme.label_map_masks(np.rint(raw))  # [K, *input_shape]
    predicted = scheme.label_map_masks(labels)
    spacing = spacing_from_affine(meta.affine)
    scores = [evaluate_case(p, t, spacing, tolerance_mm=tolerance_mm) for p, t in zip(predicted, truth)]
    record: dict[str, float] = {}
    if scheme.mode != "binary":
        for name, score in zip(scheme.names, scores):
            record.update({f"{key}_{name}": value for key, value in score.items()})
    for key in METRIC_KEYS:
        values = [score[key] for score in scores if not math.isnan(score[key])]
        record[key] = sum(values) / len(values) if values else math.nan
    return record


def case_record(case_id: str, prediction: Prediction, meta: Any, scheme: LabelScheme, metrics: dict[str, float],
                labels: np.ndarray) -> dict[str, Any]:
    """The one record of a predicted case (metrics.json, a row of summary.json), the same fields for every model."""
    record: dict[str, Any] = {"case": case_id, **metrics}
    record.update({
        "seconds": prediction.seconds,
        "points_evaluated": prediction.points_evaluated,
        "voxels": int(np.prod(meta.volume_shape)),  # of the model grid
        "foreground_voxels": int((labels > 0).sum()),  # on the input grid, as in the mask file
        "mode": prediction.mode,
        "disagreement": prediction.disagreement,
        "resampled_to_fit": meta.resampled_to_fit,  # the scan's content was larger than the model grid
        "cropped_background": meta.cropped_background,  # the scan was larger; only all-zero voxels were cropped
        "label_mode": scheme.mode,
        "classes": ",".join(scheme.names),
    })
    for mode, run in prediction.runs.items():
        record[f"{mode}_seconds"] = run["seconds"]
        record[f"{mode}_points_evaluated"] = run["points_evaluated"]
    return record


# ---------------------------------------------------------------- grids and NIfTI files


def model_grid_affine(meta: Any) -> np.ndarray:
    """4×4 matrix from model-grid voxel indices to scanner mm (pad or resampling folded into the affine).

    `GridMeta.model_voxel_to_mm` is affine in the point, so its matrix is read off the images of the
    origin and the three unit vectors.
    """
    basis = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=np.float64)
    images = np.asarray(meta.model_voxel_to_mm(basis), dtype=np.float64)  # [4, 3]
    matrix = np.eye(4)
    matrix[:3, :3] = (images[1:] - images[0]).T
    matrix[:3, 3] = images[0]
    return matrix


def nifti_header(meta: Any) -> Any:
    """The input's NIfTI header (orientation codes, units, description) without its intensity scaling."""
    if meta.header is None:
        return None
    header = nib.Nifti1Header(binaryblock=bytes(meta.header))
    header.set_slope_inter(None, None)
    return header


def label_map(occupancy: np.ndarray, threshold: float, config: Any = None) -> np.ndarray:
    """uint8 labels [*S] of model outputs `occupancy` [*S] or [outputs, *S] on any grid (the rule is per voxel).

    Foreground above `threshold`, or the likeliest class of a legacy binary model with several outputs;
    a model of a label mode's classes or regions (`config`) gets the dataset's values
    (`oss_net.labels.LabelScheme.label_map`). All-zero outputs give 0, so zeros filled in by an
    un-pad are background either way.
    """
    scheme = scheme_of(config)
    if scheme.mode != "binary":
        return scheme.label_map(occupancy.reshape(-1, *occupancy.shape[-3:]), threshold)
    if occupancy.ndim == 3:
        return (occupancy > threshold).astype(np.uint8)
    return occupancy.argmax(axis=0).astype(np.uint8)


def input_grid_labels(
    occupancy: np.ndarray, meta: Any, threshold: float, config: Any = None, input_probabilities: np.ndarray | None = None
) -> np.ndarray:
    """uint8 mask or label map [*input_shape] of model-grid outputs `occupancy` [*volume_shape] or [outputs, *volume_shape].

    A padded grid ("pad") is labelled on the model grid and un-padded, exactly. A resampled grid has its
    probabilities taken back trilinearly (per output) and labelled on the input grid by the same
    `label_map`: nearest neighbour of a coarse mask would give staircase boundaries. A caller that already
    took `occupancy` back (`meta.to_input_grid(occupancy, order=1)`, to save it) passes it as
    `input_probabilities`, and it is labelled instead of resampled again.
    """
    if meta.mode == "pad":
        return np.asarray(meta.to_input_grid(label_map(occupancy, threshold, config), order=0), dtype=np.uint8)
    if input_probabilities is None:
        input_probabilities = np.asarray(meta.to_input_grid(np.asarray(occupancy, dtype=np.float32), order=1))
    return label_map(input_probabilities, threshold, config)


def save_input_grid_nifti(array: np.ndarray, meta: Any, path: Path) -> None:
    """An input-grid array (a model-grid one taken back by `meta.to_input_grid`) with the input affine and header."""
    atomic_save_nifti(array, meta.affine, path, header=nifti_header(meta))


def save_model_grid_nifti(array: np.ndarray, meta: Any, path: Path) -> None:
    """A model-grid array `[*volume_shape]` with the model grid's affine, so it overlays the input image."""
    atomic_save_nifti(array, model_grid_affine(meta), path, header=nifti_header(meta))


def flat_probabilities_path(output_dir: Path, case_id: str) -> Path:
    """`<case>_probabilities.nii.gz`: oss-net-predict's probabilities, beside its label map."""
    return output_dir / f"{case_id}_probabilities.nii.gz"


def flat_output_names(case_id: str, options: WriteOptions) -> list[str]:
    """The name of every file `CaseWriter.write_flat` writes for a case with `options`, the label map last."""
    names = [flat_probabilities_path(Path(), case_id).name] if options.probabilities else []
    if options.meshes:
        names += [f"{case_id}_prediction.{file_type}" for file_type in options.mesh_format]
    return [*names, flat_mask_path(Path(), case_id).name]
