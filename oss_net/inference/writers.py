"""`CaseWriter`: every output file of one predicted case, and the case's record, for both commands.

    writer = CaseWriter(predictor, WriteOptions(probabilities=True))
    record = writer.write(folder, files, case, prediction)    # files: CaseFiles, case: its loaded Case

A model predicts K classes or regions (`oss_net.labels`); the paper's binary model is the
K = 1 case, its one class "foreground", whose files carry no class name. Per class the writer has its
probability on the model grid, its predicted mask (from the case's label map), its surface field (by the
label mode's one decision rule, so a mesh holds exactly the class's voxels of the label map: the argmax
in exclusive mode, never "not background") and, with a label, its true mask (`ClassMaps`); every file
below is made from those. Class names come from the configuration (a dataset.json's label names, FLARE's
organs), with `class_tag` making them file-name safe.

Image files take the input's format (`.nii.gz`, `.nii`, `.nrrd`, `.nhdr`, `.mha`, `.mhd`; a DICOM series'
outputs are `.mha`), or `WriteOptions.output_format`: `<ext>` below (`oss_net.data.formats.save_image`, which
writes an input-grid file with the input's exact geometry).

Files of a case `<id>`, layout "case_folder" (`oss-net-infer`: into the case's staging folder, which
`outputs` publishes as `<output_dir>/<id>/`; a class model's files carry `_<name>` where `[_<name>]` is):

| file                                   | grid / frame                                                        |
|----------------------------------------|---------------------------------------------------------------------|
| `<id>_occupancy[_<name>]<ext>`         | float32 probability on the model grid, with the model grid's own affine |
| `<id>_mask<ext>`                       | uint8 label map on the input grid (the dataset's values: binary 0/1, BraTS regions 0/1/2/4), input geometry and header |
| `<id>_probability[_<name>]<ext>`       | float32 probability on the input grid (`probabilities`)             |
| `<id>[_<name>]_prediction.{obj,ply,stl}` | prediction mesh in scanner mm, LPS (or RAS), `SPACE=` in the header; voxel indices with `voxel_coordinates`; a class whose every component is under `min_component_voxels` gets an empty mesh, a warning and a `meshes_removed` entry (class, voxels, flag) in the record |
| `<id>[_<name>]_label.{obj,ply,stl}`    | label mesh, same frame                                              |
| `<id>_overlay.png`                     | slices of the input image on its own grid, label and prediction outlined, a legend naming every colour |
| `metrics.json`, `manifest.json`        | the record and the manifest, written by the runner (`outputs`)      |

Layout "flat" (`oss-net-predict`, nnU-Net's naming, in the output folder): `probabilities/<id><ext>` (every
decoder output, channels last; in a subfolder, so a tool that takes every `<ext>` file of the folder for a case,
as nnU-Net's evaluator does, finds the label maps alone) with `probabilities`, `<id>[_<name>]_prediction.<format>`
(one per class, as in a case folder) with `meshes`, `<id>_overlay.png` with `overlay`, and `<id><ext>`, the label
map, written last (it marks the case finished).

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

At `--output_spacing` (`Prediction.grid` set) `write_spaced` writes the same label map, probabilities and
prediction meshes on that grid instead (docs/grids.md, "Outputs at another spacing"), the overlay on it,
no model-grid occupancy; metrics against the label resampled there, and the record's `grids` says which
grid each output lies on.
"""
from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import trimesh

from oss_net.data import CaseFiles, spacing_from_affine
from oss_net.data.channels import read_channel
from oss_net.data.formats import output_suffix, save_image
from oss_net.data.grid import nearest_label
from oss_net.data.nifti import read_label_map
from oss_net.geometry import SpacedGrid
from oss_net.labels import LabelScheme, scheme_of
from oss_net.meshing import extract_mesh, overlay_png, refine_vertices, save_mesh
from oss_net.metrics import METRIC_KEYS, evaluate_case

from .options import WriteOptions
from .outputs import PROBABILITIES_FOLDER, flat_mask_path
from .predictor import DensePredictor, Prediction, Predictor

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClassMaps:
    """One case's prediction per class on the model grid: the K = 1 "foreground" class of a binary model,
    or the classes / regions of its label mode.

    tags: the file-name part of each class ("" for binary, "_<name>" otherwise, `class_tag`).
    probabilities: K arrays [*S] float32;
    truth: K bool masks [*S] of the case's label, or None without one.
    fields, level: what each class's mesh is extracted from, by the label mode's rule
    (`oss_net.labels.DecisionRule.surface`): the probability at the threshold (binary, regions), or in
    exclusive mode (1 + p_k − max_{j≠k} p_j) / 2 at 1/2, whose inside is the class's argmax voxels.
    """

    names: tuple[str, ...]
    tags: tuple[str, ...]
    probabilities: list[np.ndarray]
    truth: np.ndarray | None
    fields: list[np.ndarray]
    level: float

    @classmethod
    def of(cls, config: Any, occupancy: np.ndarray, threshold: float, raw_label: np.ndarray | None) -> "ClassMaps":
        """From a model's decoder outputs `occupancy` [*S] or [outputs, *S] and the case's label [*S] (or None)."""
        scheme = scheme_of(config)
        probabilities = per_class_probabilities(config, occupancy)
        fields, level = scheme.rule(threshold).surface(np.stack(probabilities))  # [K, *S], the meshes' level
        truth = None if raw_label is None else scheme.label_map_masks(np.asarray(raw_label))  # [K, *S]
        return cls(names=scheme.names, tags=mesh_tags(scheme),
                   probabilities=probabilities, truth=truth,
                   fields=list(fields), level=level)


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
        self.removed: list[dict[str, Any]] = []  # of the case being written: {"class", "voxels", "flag"}

    def write(self, folder: Path, files: CaseFiles, case: Any, prediction: Prediction) -> dict[str, Any]:
        """Every file of `case` (loaded from `files`, predicted as `prediction`) into `folder`; returns its record."""
        occupancy = prediction.occupancy.numpy()  # [*S] or [outputs, *S] float32, model grid (or the output grid)
        suffix, grid = self.suffix(files), prediction.grid
        self.removed = []  # classes the component filter removes whole from their meshes (`write_meshes`)
        if grid is not None:  # --output_spacing: every prediction file on that grid
            labels = self.write_spaced(folder, files.case_id, case, occupancy, prediction, suffix)
        elif self.options.layout == "flat":
            labels = self.write_flat(folder, files.case_id, case, occupancy, prediction.threshold, suffix)
        else:
            labels = self.write_case_folder(folder, files.case_id, case, occupancy, prediction.threshold, suffix)
        truth = None if files.label is None else input_grid_truth(self.scheme, files.label, case.meta, grid)
        predicted = self.scheme.label_map_masks(labels)  # [K, *shape] bool, for the metrics and the overlay
        metrics = label_metrics(self.scheme, truth, predicted, case.meta, self.options.tolerance_mm, grid)
        if self.options.overlay:
            image = read_channel(files, 0).array  # [*input_shape]
            if grid is not None:  # the scan upsampled trilinearly onto the output grid (the same box)
                image = F.interpolate(torch.as_tensor(np.asarray(image, dtype=np.float32))[None, None], size=grid.shape,
                                      mode="trilinear", align_corners=False)[0, 0].numpy()
            spacing = case.meta.spacing if grid is None else grid.spacing
            write_overlay(folder / f"{files.case_id}_overlay.png", image, self.scheme, predicted, truth, spacing)
        record = case_record(files.case_id, prediction, case.meta, self.scheme, metrics, labels)
        if self.removed:
            record["meshes_removed"] = self.removed
        return record

    def suffix(self, files: CaseFiles) -> str:
        """The image files' suffix for a case: `output_format`, else its first input's format (`output_suffix`)."""
        return output_suffix(files.images[0] if files.images else None, self.options.output_format)

    def write_spaced(self, folder: Path, case_id: str, case: Any, occupancy: np.ndarray, prediction: Prediction,
                     suffix: str) -> np.ndarray:
        """The files of a prediction at `--output_spacing` (`prediction.grid`), in either layout: the label map, the
        probabilities and the prediction meshes (marching cubes of the class fields, in mm) on the output grid, with
        its affine and the input's header; the label meshes stay on the model grid (the label is a model-grid
        array) and no model-grid occupancy is written. Returns the label map [*grid.shape] uint8."""
        grid, options, threshold, header = prediction.grid, self.options, prediction.threshold, case.meta.header
        flat = options.layout == "flat"
        maps = ClassMaps.of(self.config, occupancy, threshold, None if flat else case.raw_label)
        if options.probabilities and flat:
            channels_last = occupancy if occupancy.ndim == 3 else np.moveaxis(occupancy, 0, -1)
            (folder / PROBABILITIES_FOLDER).mkdir(exist_ok=True)
            save_image(channels_last, grid.affine, flat_probabilities_path(folder, case_id, suffix), header)
        elif options.probabilities:
            for tag, probability in zip(maps.tags, maps.probabilities):
                save_image(probability, grid.affine, folder / f"{case_id}_probability{tag}{suffix}", header)
        if options.meshes:
            self.write_class_meshes(folder, case_id, case, maps, labels=not flat, grid=grid)
        labels = label_map(occupancy, threshold, self.config)  # [*grid.shape] uint8, the dataset's values
        save_image(labels, grid.affine, flat_mask_path(folder, case_id, suffix) if flat
                   else folder / f"{case_id}_mask{suffix}", header)
        return labels

    def write_case_folder(self, folder: Path, case_id: str, case: Any, occupancy: np.ndarray,
                          threshold: float, suffix: str) -> np.ndarray:
        """The case folder's image files and meshes (module docstring); returns the label map [*input_shape] uint8."""
        meta, options = case.meta, self.options
        maps = ClassMaps.of(self.config, occupancy, threshold, case.raw_label)
        for tag, probability in zip(maps.tags, maps.probabilities):
            save_model_grid_image(probability.astype(np.float32), meta, folder / f"{case_id}_occupancy{tag}{suffix}")
        labels, taken_back = input_grid_outputs(occupancy, meta, threshold, self.config, options.probabilities)
        if taken_back is not None:  # each class's probability, sliced from the outputs taken back once
            for tag, probability in zip(maps.tags, per_class_probabilities(self.config, taken_back)):
                save_input_grid_image(np.asarray(probability, dtype=np.float32), meta,
                                      folder / f"{case_id}_probability{tag}{suffix}")
        save_input_grid_image(labels, meta, folder / f"{case_id}_mask{suffix}")
        if options.meshes:
            self.write_class_meshes(folder, case_id, case, maps)
        return labels

    def write_class_meshes(self, folder: Path, case_id: str, case: Any, maps: ClassMaps, labels: bool = True,
                           grid: SpacedGrid | None = None) -> None:
        """Prediction (and with `labels`, label) meshes per class, each from its surface field (`ClassMaps`; on
        `grid` at --output_spacing); only the binary prediction mesh can be refined."""
        refine = self.options.refine_mesh
        if refine and maps.tags != ("",):
            logger.info("%s: mesh refinement follows one decoder output; the class meshes are kept as extracted", case_id)
            refine = False
        for index, (name, tag, field) in enumerate(zip(maps.names, maps.tags, maps.fields)):
            truth = None if maps.truth is None or not labels else maps.truth[index]
            self.write_meshes(folder, f"{case_id}{tag}", field, truth, case, maps.level, refine, name, grid)

    def write_flat(self, folder: Path, case_id: str, case: Any, occupancy: np.ndarray, threshold: float,
                   suffix: str) -> np.ndarray:
        """oss-net-predict's files, the label map last (module docstring); returns it [*input_shape] uint8."""
        meta = case.meta
        labels, probabilities = input_grid_outputs(occupancy, meta, threshold, self.config, self.options.probabilities)
        if probabilities is not None:
            channels_last = probabilities if probabilities.ndim == 3 else np.moveaxis(probabilities, 0, -1)
            (folder / PROBABILITIES_FOLDER).mkdir(exist_ok=True)
            save_input_grid_image(channels_last, meta, flat_probabilities_path(folder, case_id, suffix))
        if self.options.meshes:
            maps = ClassMaps.of(self.config, occupancy, threshold, None)
            self.write_class_meshes(folder, case_id, case, maps, labels=False)
        save_input_grid_image(labels, meta, flat_mask_path(folder, case_id, suffix))
        return labels

    def write_meshes(self, folder: Path, stem: str, field: np.ndarray, truth: np.ndarray | None, case: Any,
                     level: float, refine: bool, name: str = "foreground", grid: SpacedGrid | None = None) -> None:
        """`<stem>_prediction` (and `<stem>_label` for a true mask) meshes of class `name`, extracted on the model
        grid (on `grid` at --output_spacing; truth [*S] bool on the model grid always) at `level` of its surface
        field [*S], vertices in scanner mm (or voxel indices of that grid). When the component filter removes the
        whole class, the log says so and `removed` notes it."""
        options = self.options
        affine = None if options.voxel_coordinates else model_grid_affine(case.meta)
        extract = {"face_budget": options.face_budget, "edge_mm": options.mesh_edge_mm}
        meshes = {"prediction": self.prediction_mesh(field, case, level, grid)}
        voxels = int((field > level).sum())
        if meshes["prediction"].is_empty and voxels:
            flag = f"--min_component_voxels {options.min_component_voxels}"
            logger.warning("%s: every component of %s (%d voxels) is smaller than %s: its prediction mesh is empty "
                           "(the label map keeps it; lower the flag to mesh it)", stem, name, voxels, flag)
            self.removed.append({"class": name, "voxels": voxels, "flag": flag})
        if refine and (isinstance(self.predictor, DensePredictor) or (grid is not None and affine is None)):
            logger.info("%s: mesh refinement needs a point decoder and meshes in mm; the mesh is kept as extracted", stem)
        elif refine and len(meshes["prediction"].faces):  # vertices in mm: the model grid's affine takes them to the decoder
            meshes["prediction"] = refine_prediction_mesh(meshes["prediction"], affine, case, self.predictor)
        if truth is not None:  # the label mesh keeps every component, as the original's
            meshes["label"] = extract_mesh(truth.astype(np.float32), affine, level=0.5, min_component_voxels=0, **extract)
        space = None if options.voxel_coordinates else options.mesh_space
        for name, mesh in meshes.items():
            for file_type in options.mesh_format:
                save_mesh(mesh, folder / f"{stem}_{name}.{file_type}", space=space)

    def prediction_mesh(self, field: np.ndarray, case: Any, level: float,
                        grid: SpacedGrid | None = None) -> trimesh.Trimesh:
        """The surface of one class's field [*S] on the model grid (on `grid` at --output_spacing) at `level`
        (`ClassMaps.fields`, by the label mode's rule), in RAS scanner mm (or voxel indices of that grid with
        `voxel_coordinates`), as the options say (face budget, small components)."""
        options = self.options
        affine = None if options.voxel_coordinates else model_grid_affine(case.meta) if grid is None else grid.affine
        return extract_mesh(field, affine, level=level, min_component_voxels=options.min_component_voxels,
                            face_budget=options.face_budget, edge_mm=options.mesh_edge_mm)


def per_class_probabilities(config: Any, occupancy: np.ndarray) -> list[np.ndarray]:
    """K arrays [*S]: each class's or region's probability, of decoder outputs [*S] or [outputs, *S] on any grid
    (binary: the foreground's, `binary_probability`)."""
    scheme = scheme_of(config)
    if scheme.mode == "binary":
        return [binary_probability(occupancy)]
    return list(scheme.class_probabilities(occupancy.reshape(scheme.outputs, *occupancy.shape[-3:])))


def binary_probability(occupancy: np.ndarray) -> np.ndarray:
    """[*S] foreground probability of a binary model's outputs [*S], or [outputs, *S] of a legacy softmax (1 −
    p(background), output 0)."""
    return occupancy if occupancy.ndim == 3 else 1.0 - occupancy[0]


def mesh_tags(scheme: LabelScheme) -> tuple[str, ...]:
    """The file-name part of each class's meshes: "" for a binary model's one mesh, else `class_tag` per class."""
    return ("",) if scheme.mode == "binary" else tuple(class_tag(name) for name in scheme.names)


def class_tag(name: str) -> str:
    """The file-name part of class `name`: `_<name>`, every run of characters other than letters, digits, `.`,
    `-` and `_` as one `_` ("whole tumour" -> "_whole_tumour")."""
    return "_" + re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def refine_prediction_mesh(mesh: trimesh.Trimesh, affine: np.ndarray | None, case: Any, predictor: Predictor) -> trimesh.Trimesh:
    """Move the vertices onto the decoder's level set (docs/reference.md §8.3); the decoder works in model-grid voxels."""
    voxels = mesh.copy()
    if affine is not None:
        voxels.apply_transform(np.linalg.inv(affine))
    refined = refine_vertices(voxels, predictor.point_decoder(case.image), device=predictor.device)
    if affine is not None:
        refined.apply_transform(affine)
    return refined


def input_grid_outputs(occupancy: np.ndarray, meta: Any, threshold: float, config: Any, probabilities: bool
                       ) -> tuple[np.ndarray, np.ndarray | None]:
    """The label map [*input_shape] uint8 and, with `probabilities`, every decoder output on the input grid
    [*input_shape] or [outputs, *input_shape] float32, of model-grid outputs `occupancy`: what oss-net-predict
    writes and `oss_net.Segmenter` returns."""
    taken_back = None
    if probabilities:
        taken_back = np.asarray(meta.to_input_grid(occupancy, order=1), dtype=np.float32)
    return input_grid_labels(occupancy, meta, threshold, config, taken_back), taken_back


def write_overlay(path: Path, image: np.ndarray, scheme: LabelScheme, predicted: np.ndarray, truth: np.ndarray | None,
                  spacing: Any) -> None:
    """Slices of the input image `image` [*input_shape] on its own grid (or upsampled onto the output grid of
    --output_spacing, whose voxel sizes are `spacing`, mm) with the prediction (`predicted` [K, *shape] bool, the
    label map's class masks) and the label (`truth` [K, *shape] bool, or None) outlined, one colour per class named in the legend
    (`oss_net.meshing.overlay_png`)."""
    if scheme.mode == "binary":
        shown_prediction, shown_truth = predicted[0], None if truth is None else truth[0]
    else:
        shown_prediction = dict(zip(scheme.names, predicted))
        shown_truth = None if truth is None else dict(zip(scheme.names, truth))
    overlay_png(image, shown_truth, shown_prediction, path, spacing=tuple(float(s) for s in spacing))


def input_grid_truth(scheme: LabelScheme, label_file: Path, meta: Any, grid: SpacedGrid | None = None) -> np.ndarray:
    """bool [K, *input_shape]: where each class or region is in the label file (binary: every non-zero value); at
    --output_spacing [K, *grid.shape], the label resampled onto `grid` by nearest neighbour (`nearest_label`)."""
    raw = read_label_map(label_file).array.reshape(meta.input_shape)
    if grid is not None:
        raw = nearest_label(raw, meta.affine, grid.shape, grid.affine)
    if scheme.mode == "binary":
        return (raw > 0)[None]
    scheme.check_values(raw, label_file)
    return scheme.label_map_masks(raw)


def label_metrics(scheme: LabelScheme, truth: np.ndarray | None, predicted: np.ndarray, meta: Any,
                  tolerance_mm: float, grid: SpacedGrid | None = None) -> dict[str, float]:
    """Dice, IoU, HD95 (mm) and NSD of the label map's class masks `predicted` [K, *input_shape] against the true masks `truth`
    [K, *input_shape] (`input_grid_truth`), on the input grid (on `grid` at --output_spacing): per class
    `<metric>_<name>` when there are several, and each metric's mean over the classes (NaNs left out) under its
    plain name; empty without a label."""
    if truth is None:
        return {}
    spacing = spacing_from_affine(meta.affine) if grid is None else np.asarray(grid.spacing)
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
    if prediction.grid is not None:  # --output_spacing: which grid each output lies on
        record["grids"] = spaced_grids(prediction.grid, meta)
    return record


def spaced_grids(grid: SpacedGrid, meta: Any) -> dict[str, Any]:
    """The record's `grids` at --output_spacing: the spacing (mm) and shape of every output's grid."""
    output = {"spacing_mm": [round(v, 6) for v in grid.spacing], "shape": list(grid.shape)}
    model = {"spacing_mm": [round(float(v), 6) for v in np.linalg.norm(model_grid_affine(meta)[:3, :3], axis=0)],
             "shape": list(meta.volume_shape)}
    return {"label_map": output, "probabilities": output, "prediction_meshes": output, "metrics": output,
            "foreground_voxels": output, "label_meshes": model, "input": {"spacing_mm": list(meta.spacing),
                                                                          "shape": list(meta.input_shape)}}


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


def save_input_grid_image(array: np.ndarray, meta: Any, path: Path) -> None:
    """An input-grid array (a model-grid one taken back by `meta.to_input_grid`) with the input's geometry and
    header, in the format `path`'s suffix names."""
    save_image(array, meta.affine, path, meta.header)


def save_model_grid_image(array: np.ndarray, meta: Any, path: Path) -> None:
    """A model-grid array `[*volume_shape]` with the model grid's affine, so it overlays the input image."""
    save_image(array, model_grid_affine(meta), path, meta.header)


def flat_probabilities_path(output_dir: Path, case_id: str, suffix: str = ".nii.gz") -> Path:
    """`probabilities/<case><suffix>`: oss-net-predict's probabilities, in a subfolder beside its label maps."""
    return output_dir / PROBABILITIES_FOLDER / f"{case_id}{suffix}"


def flat_output_names(case_id: str, options: WriteOptions, scheme: LabelScheme, suffix: str = ".nii.gz") -> list[str]:
    """The name of every file `CaseWriter.write` writes for a case in the flat layout with `options` for a model of
    `scheme` (relative to the output folder; a detached header's data file after it), the label map last."""
    names = []
    if options.probabilities:
        names += with_data_files(flat_probabilities_path(Path(), case_id, suffix).as_posix(), suffix)
    if options.meshes:
        names += [f"{case_id}{tag}_prediction.{file_type}" for tag in mesh_tags(scheme) for file_type in options.mesh_format]
    if options.overlay:
        names.append(f"{case_id}_overlay.png")
    return [*names, *reversed(with_data_files(flat_mask_path(Path(), case_id, suffix).name, suffix))]


def with_data_files(name: str, suffix: str) -> list[str]:
    """An image file's name and, for a detached header (.mhd, .nhdr), its data file's as SimpleITK names it."""
    stem = name[: -len(suffix)]
    return [name, *({".mhd": [f"{stem}.zraw"], ".nhdr": [f"{stem}.raw.gz"]}.get(suffix, []))]
