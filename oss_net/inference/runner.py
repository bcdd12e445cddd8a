"""`run_inference(settings)`: checkpoint + cases → per-case files and a summary table.

Every check that can fail on user input (checkpoint, configuration, output folder, and the headers of
every case file: dimensions, shapes, affines, channel count) runs before the first file is written,
and every bad case is listed at once, so a bad call leaves nothing behind. With `skip_bad_cases`
those cases are skipped instead, each with its reason in the summary, as are case folders that
discovery rejects (a missing modality, say) where the split allows it. The voxel values (NaN/Inf,
label values) are checked as each case is read: a case failing there is left out and the others
still run (then the run fails, or with `skip_bad_cases` records it as skipped).

The output folder is locked for the run (see `outputs.output_folder_lock`); cases are processed one
by one under a progress bar, each published as a complete folder with its manifest, and
`summary.csv` / `summary.json` are rewritten from the finished cases at the end, whose table
`summary_table` prints.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from tqdm import tqdm

from oss_net.data.splits import SPLITS
from oss_net.datasets import DatasetError
from oss_net.io import atomic_save_json, atomic_write, check_output_folder, prepare_output_folder
from oss_net.meshing.extract import MESH_EDGE_MM, MIN_COMPONENT_VOXELS
from oss_net.meshing.save import MESH_FORMATS, MESH_SPACES
from oss_net.metrics import NSD_TOLERANCE_MM
from oss_net.precision import AMP_MODES

from . import outputs
from .classes import has_classes, write_class_case
from .defaults import MODE, STAGES, THRESHOLD
from .predictor import MODES, DensePredictor, InferenceError, Prediction, Predictor, make_predictor
from .refine import REFINEMENTS

logger = logging.getLogger(__name__)

SUMMARY_COLUMNS = ("case", "dice", "iou", "hd95_mm", "nsd", "seconds", "points_evaluated", "mode", "disagreement")
TABLE_COLUMNS = ("dice", "iou", "hd95_mm", "nsd", "seconds")  # what the closing table shows per case
SETTINGS_FILE = "inference_settings.json"


@dataclass(frozen=True)
class InferenceSettings:
    """One inference run. The original's flags keep their names (`load_model`, `network_config`, ...)."""

    load_model: str  # model file or training checkpoint (the configuration is read from it)
    dataset_path: str  # dataset root, or one case: a BraTS case folder / a LiTS volume file
    output_dir: str = "inference_output"
    network_config: str | None = None  # must agree with the checkpoint when given
    dataset: str | None = None  # must agree with the checkpoint when given
    split: str = "val"  # split of a dataset root
    mode: str = MODE  # auto | standard | prior | both
    stages: tuple[int, ...] = STAGES
    chunk_size: int | None = None  # points decoded at once; None: 2^14 on a GPU, 2^12 on the CPU (default_chunk_size)
    amp: str = "off"
    cpu: bool = False
    cuda_devices: str | None = None  # sets CUDA_VISIBLE_DEVICES before CUDA starts
    resume: bool = False  # --continue: skip cases whose folder is complete
    no_mesh: bool = False
    mesh_format: tuple[str, ...] = ("obj", "ply")
    mesh_space: str = "LPS"  # LPS (3D Slicer, ITK) or RAS (nibabel), named in each mesh's header
    voxel_coordinates: bool = False  # meshes in model-grid voxel indices (the original's frame)
    refine_mesh: bool = False  # gradient refinement of the prediction mesh through the decoder
    save_probabilities: bool = False
    overlay: bool = True
    threshold: float = THRESHOLD
    recheck_boundary: bool = False
    refinement: str | None = None  # ours | original; None: the checkpoint's mode decides (original in paper mode)
    mesh_edge_mm: float | None = MESH_EDGE_MM  # target mesh edge length: sizes the face budget from the surface
    face_budget: int | None = None  # an upper limit on that budget
    min_component_voxels: int = MIN_COMPONENT_VOXELS
    tolerance_mm: float = NSD_TOLERANCE_MM
    flat: bool = False  # also <output_dir>/<case>.nii.gz, for oss-net-evaluate and nnU-Net's evaluation
    cache_dir: str | None = None
    wait: bool = False  # wait for another run holding the output folder instead of refusing
    skip_bad_cases: bool = False  # skip a bad case (reason in the summary) instead of refusing the run

    def __post_init__(self) -> None:
        problems = []
        if self.mode not in MODES:
            problems.append(f"mode {self.mode!r} is not one of {', '.join(MODES)}")
        if self.refinement is not None and self.refinement not in REFINEMENTS:
            problems.append(f"refinement {self.refinement!r} is not one of {', '.join(REFINEMENTS)}")
        if self.amp not in AMP_MODES:
            problems.append(f"amp {self.amp!r} is not one of {', '.join(AMP_MODES)}")
        if self.split not in SPLITS:
            problems.append(f"split {self.split!r} is not one of {', '.join(SPLITS)}")
        unknown = [f for f in self.mesh_format if f not in MESH_FORMATS]
        if unknown or not self.mesh_format:
            problems.append(f"mesh_format must name one or more of {', '.join(MESH_FORMATS)}, got {list(self.mesh_format)}")
        if self.chunk_size is not None and self.chunk_size < 1:
            problems.append(f"chunk_size must be >= 1, got {self.chunk_size}")
        if not 0.0 < self.threshold < 1.0:
            problems.append(f"threshold must lie in (0, 1), got {self.threshold}")
        if self.mesh_space not in MESH_SPACES:
            problems.append(f"mesh_space {self.mesh_space!r} is not one of {', '.join(MESH_SPACES)}")
        if self.mesh_edge_mm is not None and not (math.isfinite(self.mesh_edge_mm) and self.mesh_edge_mm > 0):
            problems.append(f"mesh_edge_mm must be a number > 0, got {self.mesh_edge_mm}")
        if self.face_budget is not None and self.face_budget < 4:
            problems.append(f"face_budget must be at least 4, got {self.face_budget}")
        if self.min_component_voxels < 0:
            problems.append(f"min_component_voxels must be >= 0, got {self.min_component_voxels}")
        if not (math.isfinite(self.tolerance_mm) and self.tolerance_mm >= 0):
            problems.append(f"tolerance_mm must be a number >= 0, got {self.tolerance_mm}")
        if problems:
            raise InferenceError("invalid inference settings: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# Settings that cannot change a case's files: left out of the settings hash that `--continue` compares.
RUN_CONTROL_FIELDS = frozenset({"load_model", "dataset_path", "output_dir", "split", "cpu", "cuda_devices", "resume",
                                "cache_dir", "flat", "wait", "skip_bad_cases"})


@dataclass(frozen=True)
class BadCase:
    """A case left out of a run; `reason` names the file and the problem."""

    case_id: str
    reason: str


def settings_hash(settings: InferenceSettings, model: torch.nn.Module) -> str:
    """Hash of everything that shapes a case's files: the output settings, the configuration and the weights."""
    digest = hashlib.sha256()
    chosen = {key: value for key, value in settings.to_dict().items() if key not in RUN_CONTROL_FIELDS}
    digest.update(json.dumps(chosen, sort_keys=True, default=str).encode())
    digest.update(json.dumps(model.config.to_dict(), sort_keys=True, default=str).encode())
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def select_device(settings: InferenceSettings) -> torch.device:
    if settings.cuda_devices is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = settings.cuda_devices
    if settings.cpu or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda")


def load_checked_model(settings: InferenceSettings, device: torch.device) -> torch.nn.Module:
    """The checkpoint's model; `network_config` / `dataset`, when given, must match what it holds."""
    from oss_net.data import canonical_dataset
    from oss_net.models import ConfigError, canonical_network_name, load_model

    model = load_model(settings.load_model, map_location=device)
    config = model.config
    try:
        expected_name = canonical_network_name(settings.network_config) if settings.network_config else config.name
        expected_dataset = canonical_dataset(settings.dataset) if settings.dataset else config.dataset
    except (ConfigError, DatasetError) as error:
        raise InferenceError(str(error)) from None
    if (expected_name, expected_dataset) != (config.name, config.dataset):
        raise InferenceError(
            f"{settings.load_model}: checkpoint holds configuration {config.name!r} ({config.dataset}), "
            f"but --network_config {settings.network_config!r} --dataset {settings.dataset or config.dataset!r} "
            f"asks for {expected_name!r} ({expected_dataset}); omit them to use the checkpoint's"
        )
    return model


def is_single_case(path: Path, dataset: str) -> bool:
    """A LiTS volume file, or a folder holding a BraTS case's own image files rather than case folders.

    A LiTS folder is always a dataset root (volumes and labels may all lie in it); a file given for
    BraTS is an error naming its case folder.
    """
    from oss_net.data.layouts.brats import brats_file_role

    if dataset == "brats" and path.is_file():
        raise InferenceError(f"{path}: BraTS takes a case folder, not one file (give its folder {path.parent})")
    if path.is_file():
        return True
    return dataset == "brats" and path.is_dir() and any(
        p.is_file() and brats_file_role(p.name) not in (None, "ignored") for p in path.iterdir())


def find_cases(settings: InferenceSettings, dataset: str) -> tuple[list[Any], list[BadCase]]:
    """The CaseFiles to process (one case folder / file, or a split of a dataset root), and the cases
    discovery rejects when `skip_bad_cases` sets them aside (else such a case stops the run here).

    For --split train|val the case ids stored in the checkpoint by training are used when it holds them,
    so a model is scored on exactly its own validation cases whatever seed split them.
    """
    from oss_net.data import discover, discover_case_folder
    from oss_net.models import stored_split

    path = Path(settings.dataset_path)
    if not path.exists():
        raise InferenceError(f"{path}: dataset path does not exist (check --dataset_path)")
    if is_single_case(path, dataset):
        return [discover_case_folder(path, dataset)], []
    split = stored_split(settings.load_model) if settings.split in ("train", "val") else None
    stored = None if split is None else split.get(settings.split)
    try:
        if stored is None:
            cases, rejected = discover(dataset, path, settings.split), []
        else:
            cases, rejected = cases_of_split(discover(dataset, path, "all"), stored, settings), []
    except DatasetError as error:
        cases, rejected = cases_despite_rejected(settings, dataset, stored, error)
    if not cases:
        raise InferenceError(f"{path}: no cases in split {settings.split!r}"
                             + (f" (every case was rejected: {reasons(rejected)})" if rejected else ""))
    return cases, rejected


def cases_despite_rejected(settings: InferenceSettings, dataset: str, stored: list[str] | None,
                           error: DatasetError) -> tuple[list[Any], list[BadCase]]:
    """After discovery rejected the dataset: the accepted cases of the split and, with --skip_bad_cases, a
    BadCase per rejected one of the split; else `error` again, with what to do.

    Skipping needs a split whose members do not depend on which cases are usable: --split all or test,
    or the split stored in the checkpoint (a computed train/val split would move other cases between
    the splits). A problem of no single case (a missing folder, an unexpected file in a layout folder)
    is never skipped.
    """
    from oss_net.data.check import discover_each

    try:
        cases, problems = discover_each(settings.dataset_path, dataset, labelled=settings.split != "test")
    except DatasetError:
        raise error from None
    if not problems or any(problem.case_id == "*" for problem in problems):
        raise error
    computed_split = settings.split in ("train", "val") and stored is None
    if computed_split:
        raise DatasetError(f"{error} (fix them; --skip_bad_cases skips them with --split all or test, or with a "
                           f"checkpoint that stores its split)") from None
    rejected = [BadCase(problem.case_id, problem.message) for problem in problems
                if stored is None or problem.case_id in stored]  # a rejected case of another split does not matter
    if rejected and not settings.skip_bad_cases:
        raise DatasetError(f"{error} (pass --skip_bad_cases to go on without them)") from None
    if stored is not None:
        rejected_ids = {bad.case_id for bad in rejected}
        cases = cases_of_split(cases, [case_id for case_id in stored if case_id not in rejected_ids], settings)
    return cases, rejected


def cases_of_split(cases: list[Any], case_ids: list[str], settings: InferenceSettings) -> list[Any]:
    """The cases named by a checkpoint's stored split, in its order; an id missing from the dataset is an error."""
    by_id = {case.case_id: case for case in cases}
    missing = [case_id for case_id in case_ids if case_id not in by_id]
    if missing:
        raise InferenceError(f"{settings.dataset_path}: {len(missing)} case(s) of the checkpoint's {settings.split!r} "
                             f"split ({settings.load_model}) are not in the dataset, e.g. {missing[:3]}")
    return [by_id[case_id] for case_id in case_ids]


def load_predictor(settings: InferenceSettings) -> Predictor | DensePredictor:
    """The checkpoint's model on the chosen device, in the predictor the settings ask for (also `oss-net-predict`'s)."""
    device = select_device(settings)
    return make_predictor(
        load_checked_model(settings, device), mode=settings.mode, stages=settings.stages, chunk_size=settings.chunk_size,
        amp=settings.amp, device=device, threshold=settings.threshold, recheck_boundary=settings.recheck_boundary,
        refinement=settings.refinement,
    )


def run_inference(settings: InferenceSettings) -> Path:
    """Predict every case, write its files and the summary; returns the output folder."""
    predictor = load_predictor(settings)
    config, device = predictor.config, predictor.device
    found, rejected = find_cases(settings, config.dataset)
    cases, skipped = screen_cases(found, config)
    skipped = rejected + skipped
    if skipped and not settings.skip_bad_cases:
        raise InferenceError(f"{settings.dataset_path}: {len(skipped)} bad case(s), nothing written "
                             f"(fix them, or pass --skip_bad_cases to skip them): {reasons(skipped)}")
    if settings.cache_dir is not None:  # written while cases are read: a bad cache folder fails before any write
        check_output_folder(settings.cache_dir, "cache folder")
    output_dir = Path(settings.output_dir)
    prepare_output_folder(output_dir)
    fingerprint = settings_hash(settings, predictor.model)
    with outputs.output_folder_lock(output_dir, wait=settings.wait) as run_id:
        outputs.remove_leftovers(output_dir)
        refinement = getattr(predictor, "refinement", None)  # a U-Net's DensePredictor has none
        run_record = {**settings.to_dict(), "resolved_mode": predictor.mode, "resolved_refinement": refinement,
                      "resolved_chunk_size": getattr(predictor, "chunk_size", None),
                      "device": str(device), "run_id": run_id, "settings_hash": fingerprint, "config": config.to_dict()}
        records, failed = run_cases(cases, predictor, settings, output_dir, run_record)
        bad = skipped + failed
        if len(failed) < len(cases):  # a run none of whose cases could be read writes nothing
            write_summary(output_dir, [c.case_id for c in cases if c.case_id not in {b.case_id for b in failed}], bad)
    for case in bad if settings.skip_bad_cases else ():
        logger.warning("%s: skipped: %s", case.case_id, case.reason)
    if records and not any(record.get("foreground_voxels", 1) for record in records):
        logger.warning("the model predicted no foreground in any of the %d case(s): check the checkpoint (--load_model) "
                       "and --threshold", len(records))
    if failed and not settings.skip_bad_cases:
        raise InferenceError(f"{settings.dataset_path}: {len(failed)} case(s) could not be read and were not written "
                             f"(the other cases are done; fix them and rerun with --continue, or pass --skip_bad_cases): "
                             f"{reasons(failed)}")
    return output_dir


def screen_cases(cases: list[Any], config: Any) -> tuple[list[Any], list[BadCase]]:
    """The cases whose headers are usable, and a BadCase for each other one; reads no voxel.

    Checks every image and label header (readable, 3-D, no empty or single-voxel axis, one shared
    shape and affine) and the channel count the model expects.
    """
    from oss_net.data.channels import grid_problems

    bad = [BadCase(c.case_id, f"{c.images[0].parent if c.images else c.case_id}: {len(c.images)} image file(s) but the "
                   f"model expects {config.in_channels} channel(s)") for c in cases if len(c.images) != config.in_channels]
    counted = [c for c in cases if len(c.images) == config.in_channels]
    good, problems = grid_problems(counted)
    bad += [BadCase(problem.case_id, problem.message) for problem in problems]
    return good, bad


def reasons(bad: Sequence[BadCase]) -> str:
    """Every reason on one line (the command's edge prints one line)."""
    return "; ".join(" ".join(case.reason.split()) for case in bad)


def run_cases(cases: list[Any], predictor: Predictor | DensePredictor, settings: InferenceSettings, output_dir: Path,
              run_record: dict[str, Any]) -> tuple[list[dict[str, Any]], list[BadCase]]:
    """Process (or with --continue keep) each case; returns this run's records and the cases that could not be read.

    `run_record` (the settings, run id and settings hash) is saved as inference_settings.json before the
    first case is written or kept, so a run whose every case fails leaves the output folder as it was.
    """
    from oss_net.data import load_case

    run = (run_record["run_id"], run_record["settings_hash"])
    settings_file = output_dir / SETTINGS_FILE
    records, failed = [], []
    progress = tqdm(cases, desc="inference", unit="case", disable=None)
    for index, files in enumerate(progress, start=1):
        progress.set_postfix_str(files.case_id)
        reason = outputs.unfinished_reason(output_dir, files.case_id, run[1]) if settings.resume else "not --continue"
        if reason is None:
            logger.info("[%d/%d] %s: finished before, skipped (--continue)", index, len(cases), files.case_id)
            if not settings_file.exists():
                atomic_save_json(run_record, settings_file)
        else:
            if settings.resume and outputs.case_folder(output_dir, files.case_id).exists():
                logger.info("[%d/%d] %s: redone (%s)", index, len(cases), files.case_id, reason)
            try:
                case = load_case(files, predictor.config, cache_dir=settings.cache_dir, with_border=False)
            except DatasetError as error:
                failed.append(BadCase(files.case_id, str(error)))
                logger.error("[%d/%d] %s: not processed: %s", index, len(cases), files.case_id, error)
                continue
            if not records:
                atomic_save_json(run_record, settings_file)
            record = process_case(files, case, predictor, settings, output_dir, run)
            records.append(record)
            scores = f"dice {record['dice']:.4f}" if "dice" in record else "no label, no metrics"
            logger.info("[%d/%d] %s: %s, %s mode, %.2f s, %d points evaluated", index, len(cases), files.case_id,
                        scores, record["mode"], record["seconds"], record["points_evaluated"])
        if settings.flat:
            outputs.write_flat_mask(output_dir, files.case_id)
    return records, failed


def process_case(files: Any, case: Any, predictor: Predictor | DensePredictor, settings: InferenceSettings,
                 output_dir: Path, run: tuple[str, str]) -> dict[str, Any]:
    """Predict and write one loaded case; its folder appears only once every file and its manifest are written."""
    steps = tqdm(total=2, desc=files.case_id, unit="step", leave=False, disable=None)
    steps.set_postfix_str("predicting")
    prediction = predictor.predict_case(case)
    steps.update()
    steps.set_postfix_str("writing")
    staging = outputs.staging_folder(output_dir, files.case_id, run[0])
    try:
        record = write_case(staging, files, case, prediction, predictor, settings)
        outputs.save_metrics(record, staging)
        outputs.write_manifest(staging, *run)
        outputs.publish(staging, output_dir, files.case_id)
    except BaseException:
        outputs.discard(staging)
        raise
    finally:
        steps.close()
    return record


def write_case(
    folder: Path, files: Any, case: Any, prediction: Prediction, predictor: Predictor | DensePredictor, settings: InferenceSettings
) -> dict[str, Any]:
    """Every output file of one case into `folder`; returns its metrics record."""
    if has_classes(predictor.config):  # several classes or regions: oss_net.inference.classes
        return write_class_case(folder, files, case, prediction, predictor, settings)
    case_id = files.case_id
    meta = case.meta
    occupancy = prediction.occupancy.numpy()  # [*volume_shape] float32, model grid
    mask_model = occupancy > settings.threshold
    outputs.save_model_grid_nifti(occupancy.astype(np.float32), meta, folder / f"{case_id}_occupancy.nii.gz")
    probability = None
    if settings.save_probabilities:
        probability = np.asarray(meta.to_input_grid(occupancy, order=1), dtype=np.float32)  # [*input_shape]
    mask_input = outputs.input_grid_labels(occupancy, meta, settings.threshold, predictor.config, probability)  # uint8
    outputs.save_input_grid_nifti(mask_input, meta, folder / f"{case_id}_mask.nii.gz")
    if probability is not None:
        outputs.save_input_grid_nifti(probability, meta, folder / f"{case_id}_probability.nii.gz")

    label_model = None if case.label is None else np.asarray(case.label) > 0
    if not settings.no_mesh:
        write_meshes(folder, case_id, occupancy, label_model, meta, case, predictor, settings)
    if settings.overlay:
        write_overlay(folder / f"{case_id}_overlay.png", case, mask_model, label_model, meta)

    record: dict[str, Any] = {"case": case_id}
    record.update(case_metrics(files, mask_input, meta, settings.tolerance_mm))
    record.update({
        "seconds": prediction.seconds,
        "points_evaluated": prediction.points_evaluated,
        "voxels": int(occupancy.size),
        "foreground_voxels": int(mask_input.sum()),  # on the input grid, as in the mask file
        "mode": prediction.mode,
        "disagreement": prediction.disagreement,
        "resampled_to_fit": meta.resampled_to_fit,  # the scan's content was larger than the model grid
        "cropped_background": meta.cropped_background,  # the scan was larger; only all-zero voxels were cropped
    })
    for mode, run in prediction.runs.items():
        record[f"{mode}_seconds"] = run["seconds"]
        record[f"{mode}_points_evaluated"] = run["points_evaluated"]
    return record


def case_metrics(files: Any, mask_input: np.ndarray, meta: Any, tolerance_mm: float) -> dict[str, float]:
    """Dice, IoU, HD95 (mm) and NSD on the input grid against the label file (empty without a label)."""
    import nibabel as nib

    from oss_net.metrics import evaluate_case, spacing_from_affine

    if files.label is None:
        return {}
    label = np.asarray(nib.load(str(files.label)).dataobj) > 0
    label = label.reshape(mask_input.shape)
    return evaluate_case(mask_input, label, spacing_from_affine(meta.affine), tolerance_mm=tolerance_mm)


def write_meshes(
    folder: Path, case_id: str, occupancy: np.ndarray, label_model: np.ndarray | None, meta: Any, case: Any,
    predictor: Predictor | DensePredictor, settings: InferenceSettings,
) -> None:
    """Prediction and label meshes, extracted on the model grid, vertices in mm (or voxel indices)."""
    from oss_net.meshing import extract_mesh, save_mesh

    affine = None if settings.voxel_coordinates else outputs.model_grid_affine(meta)
    options = {"face_budget": settings.face_budget, "edge_mm": settings.mesh_edge_mm}
    meshes = {"prediction": extract_mesh(occupancy, affine, level=settings.threshold,
                                         min_component_voxels=settings.min_component_voxels, **options)}
    if settings.refine_mesh and isinstance(predictor, DensePredictor):
        logger.info("%s: mesh refinement needs a point decoder; the U-Net mesh is kept as extracted", case_id)
    elif settings.refine_mesh and len(meshes["prediction"].faces):
        meshes["prediction"] = refine_prediction_mesh(meshes["prediction"], affine, case, predictor)
    if label_model is not None:
        # the label mesh keeps every component, as the original's
        meshes["label"] = extract_mesh(label_model.astype(np.float32), affine, level=0.5, min_component_voxels=0, **options)
    space = None if settings.voxel_coordinates else settings.mesh_space
    for name, mesh in meshes.items():
        for file_type in settings.mesh_format:
            save_mesh(mesh, folder / f"{case_id}_{name}.{file_type}", space=space)


def refine_prediction_mesh(mesh: Any, affine: np.ndarray | None, case: Any, predictor: Predictor) -> Any:
    """Move the vertices onto the decoder's level set (docs/reference.md §8.3).

    The decoder works in model-grid voxels.
    """
    from oss_net.meshing import refine_vertices

    voxels = mesh.copy()
    if affine is not None:
        voxels.apply_transform(np.linalg.inv(affine))
    refined = refine_vertices(voxels, predictor.point_decoder(case.image), device=predictor.device)
    if affine is not None:
        refined.apply_transform(affine)
    return refined


def write_overlay(path: Path, case: Any, mask_model: np.ndarray | Mapping[str, np.ndarray],
                  label_model: np.ndarray | Mapping[str, np.ndarray] | None, meta: Any) -> None:
    """Mid-slices of the first channel with label and prediction outlined, on the model grid; masks given as
    {class name: mask} are outlined per class (`oss_net.meshing.overlay_png`)."""
    from oss_net.meshing import overlay_png

    image = np.asarray(case.image)[0]  # [*volume_shape]
    spacing = np.linalg.norm(outputs.model_grid_affine(meta)[:3, :3], axis=0)
    overlay_png(image, label_model, mask_model, path, spacing=tuple(float(s) for s in spacing))


def read_finished(output_dir: Path, case_ids: Sequence[str]) -> list[dict[str, Any]]:
    """Metrics records of the finished cases among `case_ids`, in that order."""
    records = []
    for case_id in case_ids:
        path = outputs.case_folder(output_dir, case_id) / outputs.METRICS_FILE
        if path.is_file():
            records.append(json.loads(path.read_text()))
    return records


def write_summary(output_dir: Path, case_ids: Sequence[str], skipped: Sequence[BadCase] = ()) -> list[dict[str, Any]]:
    """summary.json (the per-case records, a row per skipped case, then a "mean" row) and summary.csv with the same columns.

    A skipped case's row holds its reason under "skipped"; the mean row counts them as "skipped_cases".
    """
    from oss_net.metrics import METRIC_KEYS, summarise

    records = read_finished(output_dir, case_ids)
    # JSON stores an undefined metric as null; summarise wants NaN there (it counts undefined HD95s)
    numeric = [{k: float("nan") if v is None else v for k, v in r.items() if v is not None or k in METRIC_KEYS}
               for r in records]
    mean_row = {"case": "mean", **(summarise(numeric) if records else {"cases": 0})}
    if skipped:
        mean_row["skipped_cases"] = len(skipped)
    rows = [*records, *({"case": case.case_id, "skipped": case.reason} for case in skipped), outputs.json_ready(mean_row)]
    atomic_save_json(rows, output_dir / "summary.json")
    columns = list(SUMMARY_COLUMNS) + sorted({k for r in rows for k in r} - set(SUMMARY_COLUMNS))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_cell(row.get(k)) for k in columns})
    with atomic_write(output_dir / "summary.csv", "w") as handle:
        handle.write(buffer.getvalue())
    return rows


def summary_table(rows: Sequence[dict[str, Any]]) -> str:
    """The summary rows as an aligned text table; a case without a label shows "-" for its metrics."""
    def cell(row: dict[str, Any], key: str) -> str:
        value = row.get(key)
        return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4g}"

    width = max([len(str(row["case"])) for row in rows] + [4])
    lines = [f"{'case':<{width}}" + "".join(f"{key:>10}" for key in TABLE_COLUMNS)]
    lines += [f"{row['case']:<{width}}" + "".join(f"{cell(row, key):>10}" for key in TABLE_COLUMNS) for row in rows]
    return "\n".join(lines)


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.6g}"
    return value
