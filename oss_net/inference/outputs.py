"""Per-case output files, written so that a case folder exists only when it is complete and consistent.

One inference run at a time writes into an output folder: `output_folder_lock` holds an exclusive
`fcntl.flock` on `<output_dir>/.oss_net.lock` (the holder's pid written in it) for the run's lifetime;
a second run waits for it or is refused, naming the folder and the holder. Everything of one case
is written (each file atomically) into a staging folder private to the run, `.<case>.<run_id>.partial/`,
then `manifest.json` (the run id, the settings hash and every file's size and SHA-256) is written last
and the folder is renamed to `<case>/`. A crash, a bad input or Ctrl-C therefore never leaves a
half-finished case behind; what dead runs left (staging folders, temporary files) is removed when the
next run takes the lock, and `--continue` reuses a case only when its manifest matches the run's
settings and its files.

Files of a case `<id>` (in `<output_dir>/<id>/`):

| file                           | grid / frame                                         |
|--------------------------------|------------------------------------------------------|
| `<id>_occupancy.nii.gz`        | float32 probabilities on the model grid, with the model grid's own affine |
| `<id>_mask.nii.gz`             | uint8 mask on the input grid, input affine and header (`input_grid_labels`) |
| `<id>_probability.nii.gz`      | float32 probabilities on the input grid (`--save_probabilities`) |
| `<id>_prediction.{obj,ply,stl}` | prediction mesh in scanner mm, LPS (or RAS), `SPACE=` in the header; voxel indices with `--voxel_coordinates` |
| `<id>_label.{obj,ply,stl}`     | label mesh, same frame                               |
| `<id>_overlay.png`             | mid-slices of image, label and prediction           |
| `metrics.json`                 | dice, iou, hd95_mm, nsd, seconds, points_evaluated, ... |
| `manifest.json`                | run id, settings hash, size and SHA-256 of each file above (written last) |

With `--flat`, `<output_dir>/<id>.nii.gz` is a copy of the mask, nnU-Net's naming. The occupancy
grid (BraTS: the padded grid; LiTS: the resampled cube) opens aligned with the image in any NIfTI
viewer: its affine is `model_grid_affine`, the input affine with the pad offset or the resampling
folded in.

The mask (or label map) goes back to the input grid by `input_grid_labels`: on a padded grid it is
thresholded on the model grid and un-padded (exact); on a resampled grid the probabilities are
resampled (trilinear) and thresholded there, so a coarse model grid leaves no staircase on the
scan's finer axes (nnU-Net's order too).
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import math
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from oss_net.io import OSSNetError, atomic_save_json, atomic_save_nifti, atomic_write
from oss_net.labels import scheme_of

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
MANIFEST_FILE = "manifest.json"
LOCK_FILE = ".oss_net.lock"
STAGING_SUFFIX = ".partial"
RETIRED_MARK = ".old-"  # `.<case>.old-<hex>`: a replaced result between two renames
TEMPORARY_SUFFIX = ".tmp"  # oss_net.io's atomic writes: `.<name>.<random>.tmp` until renamed


class OutputFolderBusy(OSSNetError):
    """Another run holds the output folder's lock."""


def new_run_id() -> str:
    """Unique per run: the process id plus random hex (two runs of one process differ too)."""
    return f"{os.getpid()}-{uuid.uuid4().hex[:8]}"


def case_folder(output_dir: Path, case_id: str) -> Path:
    return output_dir / case_id


@contextlib.contextmanager
def output_folder_lock(output_dir: Path, wait: bool = False) -> Iterator[str]:
    """Hold the output folder for one run; yields the run's id.

    The lock is an exclusive `flock` on `<output_dir>/.oss_net.lock`, released by the kernel when the
    process dies (so a killed run never leaves a stale lock). The holder removes the file before it
    lets go; a waiter that then finds another file (or none) under the name takes the lock again, so
    two runs never both believe they hold it.
    """
    path = output_dir / LOCK_FILE
    descriptor = acquire_lock(path, wait)
    try:
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
        yield new_run_id()
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(descriptor)


def acquire_lock(path: Path, wait: bool) -> int:
    """A descriptor of `path` holding its exclusive flock (see `output_folder_lock`)."""
    announced = False
    while True:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = lock_holder(descriptor)
            if not wait:
                os.close(descriptor)
                raise OutputFolderBusy(
                    f"{path.parent}: output folder is in use by another inference run (pid {holder}) "
                    f"(wait for it to finish, pass --wait to queue behind it, or choose another --output_dir)") from None
            if not announced:
                logger.warning("%s: output folder is in use by another inference run (pid %s); waiting (--wait)",
                               path.parent, holder)
                announced = True
            fcntl.flock(descriptor, fcntl.LOCK_EX)
        try:
            current = os.stat(path)
            held = os.fstat(descriptor)
            if (current.st_dev, current.st_ino) == (held.st_dev, held.st_ino):
                return descriptor
        except FileNotFoundError:
            pass
        os.close(descriptor)  # the previous holder removed the file we locked: lock the new one


def lock_holder(descriptor: int) -> str:
    """The pid written in a lock file, or "unknown" while its holder has not written it yet."""
    text = os.pread(descriptor, 32, 0).decode(errors="replace").strip()
    return text if text.isdigit() else "unknown"


def remove_leftovers(output_dir: Path) -> list[Path]:
    """Remove what dead runs left: staging and retired folders, temporary files of interrupted atomic writes.

    Call with the lock held: no other run is writing then, so every such entry is stale.
    """
    removed = []
    for entry in output_dir.iterdir():
        name = entry.name
        if not name.startswith(".") or name == LOCK_FILE:
            continue
        if entry.is_dir() and (name.endswith(STAGING_SUFFIX) or RETIRED_MARK in name):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
        elif entry.is_file() and name.endswith(TEMPORARY_SUFFIX):
            entry.unlink(missing_ok=True)
            removed.append(entry)
    if removed:
        logger.info("%s: removed %d leftover(s) of earlier runs", output_dir, len(removed))
    return removed


def staging_folder(output_dir: Path, case_id: str, run_id: str) -> Path:
    """A fresh, empty staging folder for one case, private to the run `run_id`."""
    staging = output_dir / f".{case_id}.{run_id}{STAGING_SUFFIX}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    return staging


def publish(staging: Path, output_dir: Path, case_id: str) -> Path:
    """Rename the complete staging folder to `<output_dir>/<case_id>`, replacing an older result."""
    final = case_folder(output_dir, case_id)
    if final.exists():
        retired = output_dir / f".{case_id}{RETIRED_MARK}{uuid.uuid4().hex[:8]}"
        os.replace(final, retired)
        os.replace(staging, final)
        shutil.rmtree(retired)
    else:
        os.replace(staging, final)
    return final


def discard(staging: Path) -> None:
    """Remove a staging folder after a failure (nothing of the case stays on disk)."""
    shutil.rmtree(staging, ignore_errors=True)


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes, hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(folder: Path, run_id: str, settings_hash: str) -> None:
    """`manifest.json`, the last file of a case: who wrote it, with which settings, and every file's size and SHA-256."""
    files = {entry.name: {"bytes": entry.stat().st_size, "sha256": file_digest(entry)}
             for entry in sorted(folder.iterdir()) if entry.is_file() and entry.name != MANIFEST_FILE}
    atomic_save_json({"run_id": run_id, "settings_hash": settings_hash, "files": files}, folder / MANIFEST_FILE)


def unfinished_reason(output_dir: Path, case_id: str, settings_hash: str) -> str | None:
    """None when `<case>/` is a finished case of these settings whose files are exactly those of its manifest; else why not."""
    folder = case_folder(output_dir, case_id)
    try:
        manifest = json.loads((folder / MANIFEST_FILE).read_text())
        listed = manifest["files"]
    except FileNotFoundError:
        return "no finished output" if not folder.exists() else "no manifest (written by an older or unfinished run)"
    except (OSError, ValueError, KeyError, TypeError) as error:
        return f"unreadable manifest ({type(error).__name__})"
    if manifest.get("settings_hash") != settings_hash:
        return "written with other settings or another checkpoint"
    present = {entry.name for entry in folder.iterdir() if entry.is_file() and entry.name != MANIFEST_FILE}
    if present != set(listed) or METRICS_FILE not in present:
        return "its files differ from its manifest's list"
    for name, expected in listed.items():
        path = folder / name
        if path.stat().st_size != expected.get("bytes") or file_digest(path) != expected.get("sha256"):
            return f"{name} differs from its manifest"
    return None


def is_finished(output_dir: Path, case_id: str, settings_hash: str) -> bool:
    """True when `--continue` may keep the case as it is (see `unfinished_reason`)."""
    return unfinished_reason(output_dir, case_id, settings_hash) is None


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
