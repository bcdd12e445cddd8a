"""Per-case output files, written so that a case folder exists only when it is complete.

Everything of one case is written (each file atomically) into a hidden staging folder next to the
final one, `.<case>.partial/`, and the folder is renamed to `<case>/` after its last file,
`metrics.json`. A crash, a bad input or Ctrl-C therefore never leaves a half-finished case behind,
and `--continue` can trust any `<case>/metrics.json` it finds.

Files of a case `<id>` (in `<output_dir>/<id>/`):

| file                           | grid / frame                                         |
|--------------------------------|------------------------------------------------------|
| `<id>_occupancy.nii.gz`        | float32 probabilities on the model grid, with the model grid's own affine |
| `<id>_mask.nii.gz`             | uint8 mask on the input grid, input affine and header |
| `<id>_probability.nii.gz`      | float32 probabilities on the input grid (`--save_probabilities`) |
| `<id>_prediction.{obj,ply,stl}` | prediction mesh in scanner mm, LPS (or RAS), `SPACE=` in the header; voxel indices with `--voxel_coordinates` |
| `<id>_label.{obj,ply,stl}`     | label mesh, same frame                               |
| `<id>_overlay.png`             | mid-slices of image, label and prediction           |
| `metrics.json`                 | dice, iou, hd95_mm, nsd, seconds, points_evaluated, ... |

With `--flat`, `<output_dir>/<id>.nii.gz` is a copy of the mask, nnU-Net's naming. The occupancy
grid (BraTS: the padded grid; LiTS: the resampled cube) opens aligned with the image in any NIfTI
viewer: its affine is `model_grid_affine`, the input affine with the pad offset or the resampling
folded in.
"""
from __future__ import annotations

import math
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from oss_net.io import OSSNetError, atomic_save_json, atomic_save_nifti, atomic_write

METRICS_FILE = "metrics.json"


def case_folder(output_dir: Path, case_id: str) -> Path:
    return output_dir / case_id


def is_finished(output_dir: Path, case_id: str) -> bool:
    """True when the case folder holds its metrics file (written last, renamed into place)."""
    return (case_folder(output_dir, case_id) / METRICS_FILE).is_file()


def staging_folder(output_dir: Path, case_id: str) -> Path:
    """A fresh, empty staging folder for one case (an old one from a killed run is removed)."""
    staging = output_dir / f".{case_id}.partial"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    return staging


def publish(staging: Path, output_dir: Path, case_id: str) -> Path:
    """Rename the complete staging folder to `<output_dir>/<case_id>`, replacing an older result."""
    final = case_folder(output_dir, case_id)
    if final.exists():
        retired = output_dir / f".{case_id}.old-{uuid.uuid4().hex[:8]}"
        os.replace(final, retired)
        os.replace(staging, final)
        shutil.rmtree(retired)
    else:
        os.replace(staging, final)
    return final


def discard(staging: Path) -> None:
    """Remove a staging folder after a failure (nothing of the case stays on disk)."""
    shutil.rmtree(staging, ignore_errors=True)


def check_output_folder(output_dir: Path) -> None:
    """Create the output folder if needed and make sure files can be written there."""
    if output_dir.exists() and not output_dir.is_dir():
        raise OSSNetError(f"{output_dir}: output path exists and is not a folder")
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OSSNetError(f"{output_dir}: cannot create the output folder ({error.strerror or error})") from None
    if not os.access(output_dir, os.W_OK | os.X_OK):
        raise OSSNetError(f"{output_dir}: output folder is not writable")


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
    import nibabel as nib

    if meta.header is None:
        return None
    header = nib.Nifti1Header(binaryblock=bytes(meta.header))
    header.set_slope_inter(None, None)
    return header


def save_input_grid_nifti(array: np.ndarray, meta: Any, path: Path) -> None:
    """An input-grid array (a model-grid one taken back by `meta.to_input_grid`) with the input affine and header."""
    atomic_save_nifti(array, meta.affine, path, header=nifti_header(meta))


def save_model_grid_nifti(array: np.ndarray, meta: Any, path: Path) -> None:
    """A model-grid array `[*volume_shape]` with the model grid's affine, so it overlays the input image."""
    atomic_save_nifti(array, model_grid_affine(meta), path, header=nifti_header(meta))


def flat_mask_path(output_dir: Path, case_id: str) -> Path:
    return output_dir / f"{case_id}.nii.gz"


def write_flat_mask(output_dir: Path, case_id: str) -> Path:
    """Copy `<case>/<case>_mask.nii.gz` to `<output_dir>/<case>.nii.gz` (atomically), nnU-Net's flat naming."""
    target = flat_mask_path(output_dir, case_id)
    with atomic_write(target, "wb") as handle:
        handle.write((case_folder(output_dir, case_id) / f"{case_id}_mask.nii.gz").read_bytes())
    return target


def json_ready(record: dict[str, Any]) -> dict[str, Any]:
    """NaN and infinities as null, so the JSON is standard."""
    return {key: (None if isinstance(value, float) and not math.isfinite(value) else value) for key, value in record.items()}


def save_metrics(record: dict[str, Any], folder: Path) -> None:
    atomic_save_json(json_ready(record), folder / METRICS_FILE)
