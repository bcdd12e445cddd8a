"""The options of inference, each checked once, where it enters.

- `InferenceSettings`: one `oss-net-infer` run (`run_inference`); the original's flags keep their names.
- `PredictOptions`: how the `Predictor` predicts (mode, stages, chunk size, autocast, threshold, rule).
- `WriteOptions`: which files the `CaseWriter` writes for a case, and how (meshes, overlay, probabilities).

A run's settings are checked when they are made (`InferenceSettings.__post_init__`), with the same
checks as the two option sets (`predict_option_problems`, `write_option_problems`), and then split
into those (`predict_options()`, `write_options()`). A library user who builds a `PredictOptions` or
`WriteOptions` directly gets the same checks there. What needs the model (a prior mode without a
segmentation head, `recheck_boundary` with the checkpoint's rule) is checked by the `Predictor`,
where options and model meet.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from typing import Any

import torch

from oss_net.data import SPLITS
from oss_net.geometry import AFFINE_SOURCES
from oss_net.io import IMAGE_SUFFIXES, OSSNetError
from oss_net.meshing import MESH_EDGE_MM, MESH_FORMATS, MESH_SPACES, MIN_COMPONENT_VOXELS
from oss_net.metrics import NSD_TOLERANCE_MM
from oss_net.precision import AMP_MODES

from .defaults import AMP, MESH_FORMAT, MESH_SPACE, MODE, STAGES, THRESHOLD
from .lattice import REFINEMENTS, check_stages

MODES = ("auto", "standard", "prior", "both")
LAYOUTS = ("case_folder", "flat")  # WriteOptions.layout: oss-net-infer's case folders, oss-net-predict's flat files
OUTPUT_FORMATS = tuple(suffix.lstrip(".") for suffix in IMAGE_SUFFIXES)  # --output_format; None: the input's own


class InferenceError(OSSNetError):
    """A user error of inference: a mode the model cannot run, a bad option, a bad output folder."""


def predict_option_problems(options: Any) -> list[str]:
    """Every problem of the prediction options of `options` (a PredictOptions or InferenceSettings)."""
    problems = []
    if options.mode not in MODES:
        problems.append(f"mode {options.mode!r} is not one of {', '.join(MODES)}")
    try:
        check_stages(options.stages)
    except ValueError as error:
        problems.append(str(error))
    if options.chunk_size is not None and options.chunk_size < 1:
        problems.append(f"chunk_size must be >= 1, got {options.chunk_size}")
    if options.amp not in AMP_MODES:
        problems.append(f"amp {options.amp!r} is not one of {', '.join(AMP_MODES)}")
    if not 0.0 < options.threshold < 1.0:
        problems.append(f"threshold must lie in (0, 1), got {options.threshold}")
    if options.refinement is not None and options.refinement not in REFINEMENTS:
        problems.append(f"refinement {options.refinement!r} is not one of {', '.join(REFINEMENTS)}")
    if options.output_spacing is not None and spacing_values(options.output_spacing) is None:
        problems.append(f"output_spacing must be one number (isotropic) or three, each > 0 mm, got {options.output_spacing!r}")
    return problems


OUTPUT_SPACING_HELP = ("write the label map, probabilities and meshes on a grid of this spacing in mm (one number, or "
                       "three for the array axes) covering the scan's box, the decoder queried between voxel centres "
                       "(default: the scan's own grid)")


def spacing_values(spacing: Any) -> tuple[float, ...] | None:
    """`--output_spacing` as a tuple of one or three floats > 0 (mm), or None when it is not that."""
    try:
        values = tuple(float(v) for v in (spacing if isinstance(spacing, (list, tuple)) else (spacing,)))
    except (TypeError, ValueError):
        return None
    return values if len(values) in (1, 3) and all(math.isfinite(v) and v > 0 for v in values) else None


def write_option_problems(options: Any) -> list[str]:
    """Every problem of the mesh and metric options of `options` (a WriteOptions or InferenceSettings)."""
    problems = []
    unknown = [f for f in options.mesh_format if f not in MESH_FORMATS]
    if unknown or not options.mesh_format:
        problems.append(f"mesh_format must name one or more of {', '.join(MESH_FORMATS)}, got {list(options.mesh_format)}")
    if options.mesh_space not in MESH_SPACES:
        problems.append(f"mesh_space {options.mesh_space!r} is not one of {', '.join(MESH_SPACES)}")
    if options.mesh_edge_mm is not None and not (math.isfinite(options.mesh_edge_mm) and options.mesh_edge_mm > 0):
        problems.append(f"mesh_edge_mm must be a number > 0, got {options.mesh_edge_mm}")
    if options.face_budget is not None and options.face_budget < 4:
        problems.append(f"face_budget must be at least 4, got {options.face_budget}")
    if options.min_component_voxels < 0:
        problems.append(f"min_component_voxels must be >= 0, got {options.min_component_voxels}")
    if not (math.isfinite(options.tolerance_mm) and options.tolerance_mm >= 0):
        problems.append(f"tolerance_mm must be a number >= 0, got {options.tolerance_mm}")
    if options.output_format is not None and options.output_format not in OUTPUT_FORMATS:
        problems.append(f"output_format {options.output_format!r} is not one of {', '.join(OUTPUT_FORMATS)}")
    return problems


@dataclass(frozen=True)
class PredictOptions:
    """How a `Predictor` predicts (see `oss_net.inference.predictor`).

    mode: auto | standard | prior | both. stages: refinement strides, coarse to fine, each dividing the
    previous one. chunk_size: most points decoded (and patches gathered) at once; None: 2^14 on a GPU,
    2^10 on the CPU (`default_chunk_size`). amp: autocast mode. threshold: probability above which a
    voxel is foreground. recheck_boundary: widen the window of rule "ours". refinement: ours | original;
    None: the checkpoint's compat mode decides (original in paper mode). output_spacing: one or three mm;
    the outputs on the grid covering the input's box at that spacing (`Predictor.predict_spaced`); None: the
    input's own grid.
    """

    mode: str = MODE
    stages: tuple[int, ...] = STAGES
    chunk_size: int | None = None
    amp: str = AMP
    threshold: float = THRESHOLD
    recheck_boundary: bool = False
    refinement: str | None = None
    output_spacing: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        problems = predict_option_problems(self)
        if problems:
            raise InferenceError("invalid prediction options: " + "; ".join(problems))
        object.__setattr__(self, "stages", check_stages(self.stages))
        if self.output_spacing is not None:
            object.__setattr__(self, "output_spacing", spacing_values(self.output_spacing))


@dataclass(frozen=True)
class WriteOptions:
    """Which files the `CaseWriter` writes for a case (see `oss_net.inference.writers`).

    layout: "case_folder" (oss-net-infer: the files of a case folder, occupancy, mask, probabilities, meshes,
    overlay) or "flat" (oss-net-predict: `<case>.nii.gz` with `probabilities/<case>.nii.gz`, its prediction
    mesh and overlay beside it; no occupancy maps or label meshes).
    """

    layout: str = "case_folder"
    probabilities: bool = False
    meshes: bool = True
    overlay: bool = True
    refine_mesh: bool = False  # gradient refinement of the prediction mesh through the decoder
    voxel_coordinates: bool = False  # meshes in model-grid voxel indices (the original's frame)
    mesh_format: tuple[str, ...] = MESH_FORMAT
    mesh_space: str = MESH_SPACE
    mesh_edge_mm: float | None = MESH_EDGE_MM  # target mesh edge length: sizes the face budget from the surface
    face_budget: int | None = None  # an upper limit on that budget
    min_component_voxels: int = MIN_COMPONENT_VOXELS
    tolerance_mm: float = NSD_TOLERANCE_MM
    output_format: str | None = None  # one of OUTPUT_FORMATS for every image file; None: each input's own format

    def __post_init__(self) -> None:
        problems = write_option_problems(self)
        if self.layout not in LAYOUTS:
            problems.append(f"layout {self.layout!r} is not one of {', '.join(LAYOUTS)}")
        if problems:
            raise InferenceError("invalid write options: " + "; ".join(problems))


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
    chunk_size: int | None = None  # points decoded at once; None: 2^14 on a GPU, 2^10 on the CPU (default_chunk_size)
    amp: str = AMP
    cpu: bool = False
    cuda_devices: str | None = None  # sets CUDA_VISIBLE_DEVICES before CUDA starts
    resume: bool = False  # --continue: skip cases whose folder is complete
    no_mesh: bool = False
    mesh_format: tuple[str, ...] = MESH_FORMAT
    mesh_space: str = MESH_SPACE  # LPS (3D Slicer, ITK) or RAS (nibabel), named in each mesh's header
    voxel_coordinates: bool = False  # meshes in model-grid voxel indices (the original's frame)
    refine_mesh: bool = False  # gradient refinement of the prediction mesh through the decoder
    save_probabilities: bool = False
    overlay: bool = True
    threshold: float = THRESHOLD
    recheck_boundary: bool = False
    refinement: str | None = None  # ours | original; None: the checkpoint's mode decides (original in paper mode)
    output_spacing: tuple[float, ...] | None = None  # mm, one or three: outputs on that grid over the input's box
    mesh_edge_mm: float | None = MESH_EDGE_MM  # target mesh edge length: sizes the face budget from the surface
    face_budget: int | None = None  # an upper limit on that budget
    min_component_voxels: int = MIN_COMPONENT_VOXELS
    tolerance_mm: float = NSD_TOLERANCE_MM
    output_format: str | None = None  # image files in this format (OUTPUT_FORMATS); None: each input's own
    flat: bool = False  # also <output_dir>/<case>.nii.gz, for oss-net-evaluate and nnU-Net's evaluation
    cache_dir: str | None = None
    wait: bool = False  # wait for another run holding the output folder instead of refusing
    skip_bad_cases: bool = False  # skip a bad case (reason in the summary) instead of refusing the run
    overwrite: bool = False  # replace outputs in output_dir that this package did not write there (else refused)
    prefer: str | None = None  # sform | qform: the affine of an input whose two disagree (None: refuse it)
    num_parts: int = 1  # sharded runs: this run predicts part `part_id` of the sorted cases (`sharding.Part`)
    part_id: int = 0

    def __post_init__(self) -> None:
        problems = predict_option_problems(self) + write_option_problems(self)
        if self.num_parts < 1 or not 0 <= self.part_id < self.num_parts:
            problems.append(f"part_id must lie in 0..num_parts - 1 with num_parts >= 1, got part_id {self.part_id} "
                            f"of num_parts {self.num_parts}")
        if self.split not in SPLITS:
            problems.append(f"split {self.split!r} is not one of {', '.join(SPLITS)}")
        if self.prefer is not None and self.prefer not in AFFINE_SOURCES:
            problems.append(f"prefer {self.prefer!r} is not one of {', '.join(AFFINE_SOURCES)}")
        if problems:
            raise InferenceError("invalid inference settings: " + "; ".join(problems))
        if self.output_spacing is not None:
            object.__setattr__(self, "output_spacing", spacing_values(self.output_spacing))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def predict_options(self) -> PredictOptions:
        return PredictOptions(mode=self.mode, stages=self.stages, chunk_size=self.chunk_size, amp=self.amp,
                              threshold=self.threshold, recheck_boundary=self.recheck_boundary,
                              refinement=self.refinement, output_spacing=self.output_spacing)

    def write_options(self) -> WriteOptions:
        return WriteOptions(probabilities=self.save_probabilities, meshes=not self.no_mesh, overlay=self.overlay,
                            refine_mesh=self.refine_mesh, voxel_coordinates=self.voxel_coordinates,
                            mesh_format=self.mesh_format, mesh_space=self.mesh_space, mesh_edge_mm=self.mesh_edge_mm,
                            face_budget=self.face_budget, min_component_voxels=self.min_component_voxels,
                            tolerance_mm=self.tolerance_mm, output_format=self.output_format)


# Settings that cannot change a case's files: left out of the settings hash that `--continue` compares.
RUN_CONTROL_FIELDS = frozenset({"load_model", "dataset_path", "output_dir", "split", "cpu", "cuda_devices", "resume",
                                "cache_dir", "flat", "wait", "skip_bad_cases", "overwrite", "num_parts", "part_id"})


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
