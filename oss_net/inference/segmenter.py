"""`Segmenter`: a checkpoint loaded once, then images segmented in memory or into files: the one pipeline.

    from oss_net import Segmenter
    segmenter = Segmenter("best_model.pt", device="cuda", amp="bf16")   # mode, refinement, threshold too
    result = segmenter.segment("scan.nrrd")          # a path, a nibabel or SimpleITK image, or an array + affine
    result.labels, result.probabilities["liver"], segmenter.segment(image, meshes=True).meshes["liver"]
    for result in segmenter.segment_many(["imagesTs"]): ...            # a progress bar over the cases

Every command that predicts goes through it: `oss-net-predict` (`predict_folder`: flat files, nnU-Net's
naming) and `oss-net-infer` (`run_inference` loads and predicts each case with `load` and `predict`). A case
passes the same steps everywhere: inputs resolved and checked (`oss_net.inference.files.resolve_inputs`),
read and preprocessed onto the model grid (`oss_net.data.load_case`; an image in memory through the same
checks, `case_from_volumes`), predicted (`Predictor`), taken back to the input grid
(`writers.input_grid_outputs`); files are written by the `CaseWriter`.

`segment` returns the input's kind of object: a nibabel image for a nibabel image or a NIfTI path, a SimpleITK
image for a SimpleITK image or an NRRD / MetaImage / DICOM path (with its exact geometry), numpy arrays for an
array. An array is `[i, j, k]` or channel-first `[C, i, j, k]` (MONAI's order) with either `affine` (voxel →
RAS mm, nibabel's convention; a MONAI MetaTensor's own affine is taken) or SimpleITK's `spacing`, `origin`
and `direction` (LPS) for the axes i, j, k (`sitk.GetArrayFromImage` gives [k, j, i]: transpose it, or pass
the SimpleITK image itself).
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import nibabel as nib
import numpy as np
import SimpleITK as sitk
import torch
import trimesh
from torch import nn
from tqdm import tqdm

from oss_net.data import CaseFiles, load_case
from oss_net.data.cases import Case, case_from_volumes
from oss_net.data.formats import ItkHeader, itk_image, nifti_output_header
from oss_net.data.nifti import Volume, check_spatial_shape, checked_volume, file_affine
from oss_net.data.outliers import input_outliers
from oss_net.geometry import AFFINE_SOURCES, header_affine, preferred_affine
from oss_net.io import (
    NIFTI_SUFFIXES, atomic_save_json, foreign_outputs, image_suffix, nifti_image, outputs_lock, prepare_output_folder,
    record_outputs, refuse_foreign_outputs, refuse_output_in_inputs, remove_stale_temporaries,
)
from oss_net.labels import scheme_of
from oss_net.meshing import MIN_COMPONENT_VOXELS, mesh_in_space
from oss_net.models import load_model

from .defaults import AMP, MESH_SPACE, MODE, STAGES, THRESHOLD
from .files import resolve_inputs
from .options import InferenceError, PredictOptions, WriteOptions
from .outputs import flat_mask_path
from .predictor import Prediction, make_predictor, select_device
from .sharding import Part, rank_device
from .writers import (
    CaseWriter, ClassMaps, flat_output_names, flat_probabilities_path, input_grid_outputs, label_map,
    per_class_probabilities,
)

logger = logging.getLogger(__name__)

KINDS = ("numpy", "nibabel", "simpleitk")  # what `segment` returns, as it was given
RECORDS_FILE = "predictions.json"  # predict_folder's record per case: its inputs, its label map, its input warnings


@dataclass(frozen=True)
class Segmentation:
    """One segmented image on its own grid, each image in the input's kind of object (`KINDS`).

    labels: the label map (uint8: binary 0/1, or the dataset's label values); probabilities: class or region
    name → its probability (float32); meshes: class name → its surface (trimesh, scanner mm in `mesh_space`,
    LPS by default), when asked for.
    """

    case_id: str
    labels: Any
    probabilities: dict[str, Any]
    meshes: dict[str, trimesh.Trimesh] = field(default_factory=dict)


class Segmenter:
    """A model loaded once for many images (module docstring).

    Args:
        model: a checkpoint path (model file or training checkpoint), or a loaded model.
        device: "cpu", "cuda", "cuda:1", a torch.device; None: the GPU when there is one.
        amp, mode, refinement, threshold, stages, chunk_size, recheck_boundary: `PredictOptions`.
        output_spacing: one or three mm: every output on the grid of that spacing covering the input's box, the
            decoder queried between voxel centres (`PredictOptions`); None: the input's own grid.
        prefer: sform | qform, the affine of an input whose two disagree (None: such an input is refused;
            `oss_net.geometry.header_affine`).
    """

    def __init__(self, model: str | os.PathLike | nn.Module, *, device: str | torch.device | None = None,
                 amp: str = AMP, mode: str = MODE, refinement: str | None = None, threshold: float = THRESHOLD,
                 stages: Sequence[int] = STAGES, chunk_size: int | None = None, recheck_boundary: bool = False,
                 prefer: str | None = None, output_spacing: float | Sequence[float] | None = None) -> None:
        options = PredictOptions(mode=mode, stages=tuple(stages), chunk_size=chunk_size, amp=amp, threshold=threshold,
                                 recheck_boundary=recheck_boundary, refinement=refinement,
                                 output_spacing=output_spacing)  # checked before loading
        if prefer is not None and prefer not in AFFINE_SOURCES:
            raise InferenceError(f"prefer {prefer!r} is not one of {', '.join(AFFINE_SOURCES)}")
        device = select_device() if device is None else torch.device(device)
        loaded = model if isinstance(model, nn.Module) else load_model(model, map_location=device)
        self.predictor = make_predictor(loaded, options, device)
        self.config = self.predictor.config
        self.scheme = scheme_of(self.config)
        self.prefer = prefer

    @property
    def class_names(self) -> tuple[str, ...]:
        """The names of the classes or regions (the keys of `Segmentation.probabilities`)."""
        return self.scheme.names

    # ---------------------------------------------------------------- the steps every command shares

    def cases(self, inputs: Sequence[str | os.PathLike], series_uid: str | None = None) -> list[CaseFiles]:
        """The cases of files and folders, every one checked against the model before any is predicted."""
        with preferred_affine(self.prefer):
            return resolve_inputs([Path(p) for p in inputs], self.config, series_uid)

    def load(self, files: CaseFiles, cache_dir: str | os.PathLike | None = None) -> Case:
        """One case read, checked and preprocessed onto the model grid (`oss_net.data.load_case`)."""
        with preferred_affine(self.prefer):
            return load_case(files, self.config, cache_dir=cache_dir, with_border=False)

    def predict(self, case: Case) -> Prediction:
        """The model's outputs on the model grid for a loaded case."""
        return self.predictor.predict_case(case)

    def input_warnings(self, case_id: str, case: Case) -> list[str]:
        """How far a loaded case is from the checkpoint's training data (`oss_net.data.outliers`), each logged."""
        outliers = input_outliers(case.input_ranges, case.meta, self.config)
        for outlier in outliers:
            logger.warning("%s: far from the training data: %s", case_id, outlier)
        return outliers

    # ---------------------------------------------------------------- in memory

    def segment(self, image: Any, affine: Any = None, *, spacing: Sequence[float] | None = None,
                origin: Sequence[float] | None = None, direction: Sequence[float] | None = None,
                meshes: bool = False, mesh_space: str = MESH_SPACE, series_uid: str | None = None) -> Segmentation:
        """Segment one image: a path (a file, a case's folder, a DICOM series folder with `series_uid` when it holds
        several), a nibabel or SimpleITK image, or an array with its geometry (module docstring)."""
        if isinstance(image, (str, os.PathLike)):
            cases = self.cases([image], series_uid)
            if len(cases) != 1:
                raise InferenceError(f"{image}: holds {len(cases)} cases; segment_many segments each of them")
            return self.segment_files(cases[0], meshes, mesh_space)
        with preferred_affine(self.prefer):
            volumes, kind = memory_volumes(image, affine, spacing, origin, direction)
        case = case_from_volumes("image", volumes, self.config)
        return self.result("image", case, self.predict(case), kind, meshes, mesh_space)

    def segment_many(self, inputs: Sequence[str | os.PathLike], *, meshes: bool = False, mesh_space: str = MESH_SPACE,
                     series_uid: str | None = None) -> Iterator[Segmentation]:
        """Segment every case of files and folders, one after the other under a progress bar (all of them
        checked first; each result is made when asked for)."""
        cases = self.cases(inputs, series_uid)
        progress = tqdm(cases, desc="segment", unit="case", disable=None)
        for files in progress:
            progress.set_postfix_str(files.case_id)
            yield self.segment_files(files, meshes, mesh_space)

    def segment_files(self, files: CaseFiles, meshes: bool = False, mesh_space: str = MESH_SPACE) -> Segmentation:
        """One case given by its files: nibabel images for NIfTI files, SimpleITK images for the other formats."""
        case = self.load(files)
        kind = "nibabel" if image_suffix(files.images[0]) in NIFTI_SUFFIXES else "simpleitk"
        return self.result(files.case_id, case, self.predict(case), kind, meshes, mesh_space)

    def result(self, case_id: str, case: Case, prediction: Prediction, kind: str, meshes: bool,
               mesh_space: str) -> Segmentation:
        """The prediction on the input grid (on the output grid at `output_spacing`), in `kind`, with meshes when
        asked for."""
        occupancy = prediction.occupancy.numpy()  # [*S] or [outputs, *S], model grid (or the output grid)
        grid = prediction.grid
        if grid is None:
            labels, outputs = input_grid_outputs(occupancy, case.meta, prediction.threshold, self.config, True)
        else:
            labels, outputs = label_map(occupancy, prediction.threshold, self.config), occupancy
        probabilities = per_class_probabilities(self.config, outputs)
        surfaces = {}
        if meshes:
            writer = CaseWriter(self.predictor, WriteOptions(overlay=False))
            maps = ClassMaps.of(self.config, occupancy, prediction.threshold, None)  # surfaces by the label mode's rule
            surfaces = {name: mesh_in_space(writer.prediction_mesh(field, case, maps.level, grid), mesh_space)
                        for name, field in zip(self.class_names, maps.fields)}
        affine = case.meta.affine if grid is None else grid.affine
        return Segmentation(case_id, in_kind(labels, case.meta, kind, affine),
                            {name: in_kind(p, case.meta, kind, affine)
                             for name, p in zip(self.class_names, probabilities)}, surfaces)

    # ---------------------------------------------------------------- files (oss-net-predict)

    def predict_folder(self, inputs: Sequence[str | os.PathLike], output_dir: str | os.PathLike, *,
                       probabilities: bool = False, meshes: bool = False, overlay: bool = False,
                       output_format: str | None = None, resume: bool = False, series_uid: str | None = None,
                       overwrite: bool = False, part: Part = Part(),
                       min_component_voxels: int = MIN_COMPONENT_VOXELS) -> list[Path]:
        """oss-net-predict: a label map `<case><ext>` per case flat in `output_dir` (nnU-Net's naming, on the
        input's grid and in its format unless `output_format`), with `probabilities/<case><ext>`, meshes (one per
        class; components under `min_component_voxels` left out of them) and an overlay when asked for, and
        `predictions.json` (each case's inputs, label map, input warnings and classes whose mesh the component
        filter emptied, sorted by case); `resume` skips cases whose label map (written last) exists. Returns the
        label maps.

        Before any work the output folder is claimed (`claim_output_folder`): it is no input folder, and a file
        with an output's name that this package did not write there is never replaced unless `overwrite`.
        `part`: the share of the sorted cases this job predicts (`sharding`; every input is still checked), the
        other parts writing into the same folder at the same time.
        """
        writer = CaseWriter(self.predictor, WriteOptions(layout="flat", probabilities=probabilities, meshes=meshes,
                                                         overlay=overlay, output_format=output_format,
                                                         min_component_voxels=min_component_voxels))
        cases = part.take(self.cases(inputs, series_uid))
        output = Path(output_dir)
        names = {files.case_id: flat_output_names(files.case_id, writer.options, self.scheme, writer.suffix(files))
                 for files in cases}
        every_name = [RECORDS_FILE, *(name for case in names.values() for name in case)]
        with outputs_lock(output):  # the other parts' outputs are recorded under it
            claim_output_folder(output, cases, inputs, every_name, overwrite)
        check_outputs_leave_inputs_alone(cases, output, writer)
        prepare_output_folder(output)
        with outputs_lock(output):  # predictions.json's temporaries: written under it
            removed = remove_stale_temporaries(output, every_name)
        if removed:
            logger.info("%s: removed %d temporary file(s) of interrupted writes", output, len(removed))
        if part.sharded:
            logger.info("%s: %d case(s)", part.describe(), len(cases))
        progress = tqdm(cases, desc="predict", unit="case", disable=None)
        for files in progress:
            progress.set_postfix_str(files.case_id)
            if resume and flat_mask_path(output, files.case_id, writer.suffix(files)).is_file():
                logger.info("%s: label map exists, skipped (--continue)", files.case_id)
                continue
            record = self.write_case(files, writer, output)
            with outputs_lock(output):  # the other parts add theirs to predictions.json too
                record_outputs(output, [name for name in names[files.case_id] if (output / name).exists()])
                records = {**read_records(output), files.case_id: record}
                atomic_save_json({"cases": [records[case_id] for case_id in sorted(records)]}, output / RECORDS_FILE)
                record_outputs(output, [RECORDS_FILE])
        return [flat_mask_path(output, files.case_id, writer.suffix(files)) for files in cases]

    def write_case(self, files: CaseFiles, writer: CaseWriter, output_dir: Path) -> dict[str, Any]:
        """Load, predict and write one case (the writer's flat layout: the label map last marks it finished); returns
        its entry of predictions.json, with how far the case is from the training data, the classes whose
        meshes the component filter emptied (`meshes_removed`) and at --output_spacing the outputs' `grids`."""
        case = self.load(files)
        outliers = self.input_warnings(files.case_id, case)
        written = writer.write(output_dir, files, case, self.predict(case))
        if case.meta.resampled_to_fit:
            logger.warning("%s: the scan is larger than the model grid and was resampled to fit (not cropped)",
                           files.case_id)
        entry = {"case": files.case_id, "inputs": [str(path) for path in dict.fromkeys(files.images)],
                 "label_map": flat_mask_path(output_dir, files.case_id, writer.suffix(files)).name,
                 "input_warnings": outliers, "meshes_removed": written.get("meshes_removed", [])}
        if "grids" in written:  # --output_spacing: the spacing and shape of each output's grid
            entry["grids"] = written["grids"]
        return entry


def predict_files(inputs: Sequence[str | os.PathLike], output_dir: str | os.PathLike, checkpoint: str | os.PathLike, *,
                  cpu: bool = False, save_probabilities: bool = False, mesh: bool = False, overlay: bool = False,
                  output_format: str | None = None, resume: bool = False, series_uid: str | None = None,
                  overwrite: bool = False, prefer: str | None = None, part: Part = Part(),
                  output_spacing: float | Sequence[float] | None = None) -> list[Path]:
    """`oss-net-predict` as one call: `Segmenter(checkpoint).predict_folder(...)` (see there)."""
    segmenter = Segmenter(checkpoint, device="cpu" if cpu else rank_device(), prefer=prefer,
                          output_spacing=output_spacing)
    return segmenter.predict_folder(inputs, output_dir, probabilities=save_probabilities, meshes=mesh, overlay=overlay,
                                    output_format=output_format, resume=resume, series_uid=series_uid,
                                    overwrite=overwrite, part=part)


def claim_output_folder(output: Path, cases: Sequence[CaseFiles], inputs: Sequence[str | os.PathLike],
                        names: Sequence[str], overwrite: bool) -> None:
    """Before any work: the output folder is no input folder (nor inside one), and holds no file with an output's
    name that this package did not write (unless `overwrite`)."""
    folders = [Path(p) for p in inputs if Path(p).is_dir()]
    folders += [path if path.is_dir() else path.parent for files in cases for path in files.images]
    refuse_output_in_inputs(output, folders, "-o")
    refuse_foreign_outputs(output, names, overwrite)


def read_records(output: Path) -> dict[str, dict[str, Any]]:
    """The cases of an earlier run's `predictions.json` that this package wrote (kept by --continue), by case id."""
    if foreign_outputs(output, [RECORDS_FILE]) or not (output / RECORDS_FILE).is_file():
        return {}
    try:
        cases = json.loads((output / RECORDS_FILE).read_text())["cases"]
        return {str(record["case"]): record for record in cases}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def check_outputs_leave_inputs_alone(cases: Sequence[CaseFiles], output_dir: Path, writer: CaseWriter) -> None:
    """An output file may not be one of the input files (`-o` the input folder with a plain `<case>.nii.gz`)."""
    inputs = {path.resolve() for files in cases for path in files.images}
    clashes = [str(path) for files in cases
               for path in (flat_mask_path(output_dir, files.case_id, writer.suffix(files)),
                            flat_probabilities_path(output_dir, files.case_id, writer.suffix(files)))
               if path.resolve() in inputs]
    if clashes:
        raise InferenceError(f"{clashes[0]}: the output would overwrite an input file "
                             f"({len(clashes)} such file(s)); choose another output folder with -o")


# ---------------------------------------------------------------- images in memory


def memory_volumes(image: Any, affine: Any, spacing: Any, origin: Any, direction: Any) -> tuple[list[Volume], str]:
    """The channels of an image given in memory as checked volumes (the checks of a file's), and its kind."""
    if isinstance(image, sitk.Image):
        header = ItkHeader("memory", image.GetSpacing(), image.GetOrigin(), image.GetDirection())
        array = sitk.GetArrayFromImage(image)  # [k, j, i] or [k, j, i, C]
        array = np.transpose(array, (2, 1, 0) + ((3,) if array.ndim == 4 else ()))
        return channel_volumes(channels_last(array), header.affine, header.to_bytes(), "<SimpleITK image>"), "simpleitk"
    if isinstance(image, nib.spatialimages.SpatialImage):
        header = image.header.binaryblock if isinstance(image.header, nib.Nifti1Header) else None
        array = np.asanyarray(image.dataobj)
        return channel_volumes(channels_last(array), file_affine(image, "<nibabel image>"), header,
                               "<nibabel image>"), "nibabel"
    array = np.asarray(image.detach().cpu() if isinstance(image, torch.Tensor) else image)
    if affine is None and hasattr(image, "affine"):  # a MONAI MetaTensor carries its RAS affine
        affine = np.asarray(image.affine.detach().cpu() if isinstance(image.affine, torch.Tensor) else image.affine)
    header = None
    if affine is not None and any(value is not None for value in (spacing, origin, direction)):
        raise InferenceError("give the array's geometry once: affine= (voxel → RAS mm) or spacing=, origin=, "
                             "direction= (SimpleITK's, LPS), not both")
    if affine is None:
        if spacing is None:
            raise InferenceError("an array needs its geometry: affine= (4×4 voxel → RAS mm, nibabel's convention) or "
                                 "spacing= (with origin= and direction=, SimpleITK's LPS convention)")
        itk_header = ItkHeader("memory", tuple(float(s) for s in spacing),
                               tuple(float(o) for o in (origin if origin is not None else (0.0, 0.0, 0.0))),
                               tuple(float(d) for d in np.ravel(direction if direction is not None else np.eye(3))))
        affine, header = itk_header.affine, itk_header.to_bytes()
    channels = list(array) if array.ndim == 4 else [array]  # channel-first [C, i, j, k], as MONAI's
    return channel_volumes(channels, np.asarray(affine, dtype=np.float64), header, "<array>"), "numpy"


def channels_last(array: np.ndarray) -> list[np.ndarray]:
    """The channels of a 3-D image, or of a 4-D one with its channels on the last axis (nibabel's, ITK's vectors)."""
    return [array] if array.ndim != 4 else [array[..., c] for c in range(array.shape[3])]


def channel_volumes(channels: list[np.ndarray], affine: np.ndarray, header: bytes | None, source: str) -> list[Volume]:
    """Each channel checked as a file's would be: 3-D and not degenerate, a usable affine, finite intensities."""
    checked = header_affine(source, None, 0, None, 0, affine)
    volumes = []
    for channel in channels:
        if channel.ndim != 3:
            raise InferenceError(f"{source}: expected a 3-D image ([i, j, k], or [C, i, j, k] channel-first for an "
                                 f"array), got shape {channel.shape}")
        check_spatial_shape(channel.shape, source)
        volumes.append(checked_volume(channel, checked, header, source))
    return volumes


def in_kind(array: np.ndarray, meta: Any, kind: str, affine: np.ndarray) -> Any:
    """An array on the input grid (`affine` meta.affine: the input's exact geometry) or on an output grid of the same
    box (`affine` its own) as the input's kind of object, with the input's header."""
    if kind == "nibabel":
        return nifti_image(array, affine, nifti_output_header(meta.header, ItkHeader.from_bytes(meta.header)))
    if kind == "simpleitk":
        return itk_image(array, affine, meta.header)
    return array
