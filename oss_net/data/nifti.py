"""Reading NIfTI files with every check a training run needs before it touches the data.

Each reader returns the array plus the nibabel affine and header, and raises one `DatasetError`
naming the file for anything a real dataset can get wrong: a missing, truncated or corrupt file,
a 2D or 4D image, an empty or degenerate grid (a zero-size axis, or a single voxel along an axis),
NaN/Inf intensities, label values outside the dataset's set.

A constant image (every voxel equal) is only a warning (RuntimeWarning): a blank modality does occur
in real data, and the z-score turns it into zeros instead of dividing by zero; the dataset check lists it.
"""
from __future__ import annotations

import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import nibabel as nib
import numpy as np

from oss_net.datasets import DatasetError
from oss_net.geometry import spacing_from_affine

# Label values each dataset may contain: BraTS (background, necrosis, oedema, enhancing), LiTS (liver, tumour).
# "border" is the set of a stored border map.
LABEL_VALUES: dict[str, frozenset[int]] = {
    "brats": frozenset({0, 1, 2, 4}), "lits": frozenset({0, 1, 2}), "border": frozenset({0, 1})}


MIN_AXIS_VOXELS = 2  # fewer along any axis is a single slice or voxel, not a volume to segment in 3D
FIX_LABELS = "(fix the label file, or check it belongs to this dataset)"  # what to do about unknown label values


@dataclass(frozen=True)
class Volume:
    """One 3D NIfTI file: `array [D, H, W]`, its 4×4 voxel→mm affine and the raw header block."""

    array: np.ndarray
    affine: np.ndarray
    header: bytes
    path: Path

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along each array axis (column norms of the affine)."""
        return tuple(spacing_from_affine(self.affine).tolist())


def read_header(path: Path) -> tuple[tuple[int, ...], np.ndarray, bytes]:
    """Shape, affine and header of a NIfTI file without reading its voxels (fast)."""
    image = _open(path)
    return _spatial_shape(image.shape, path), np.asarray(image.affine, dtype=np.float64), image.header.binaryblock


def read_image(path: Path) -> Volume:
    """An intensity volume as float32; NaN or Inf anywhere is an error."""
    image = _open(path)
    shape = _spatial_shape(image.shape, path)
    array = _voxels(image, path).astype(np.float32, copy=False).reshape(shape)
    if not np.isfinite(array).all():
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        raise DatasetError(f"{path}: image contains {bad} NaN or Inf voxel(s) (replace them with finite values and "
                           "save it again)")
    if array.min() == array.max():
        warnings.warn(f"{path}: constant image (every voxel is {array.flat[0]:g}); it carries no information",
                      RuntimeWarning, stacklevel=2)
    return Volume(array, np.asarray(image.affine, dtype=np.float64), image.header.binaryblock, path)


def read_label(path: Path, dataset: str) -> Volume:
    """A label volume as uint8; values must be integers of the dataset's label set."""
    return read_label_map(path, LABEL_VALUES[dataset], dataset)


def read_label_map(path: Path, allowed: Iterable[int] | None = None, dataset: str | None = None) -> Volume:
    """An integer label map (uint8 when it fits); values must be non-negative integers, and of `allowed` when given."""
    image = _open(path)
    shape = _spatial_shape(image.shape, path)
    raw = _voxels(image, path).reshape(shape)
    allowed = None if allowed is None else frozenset(int(v) for v in allowed)
    listed = "" if allowed is None else f" (allowed: {sorted(allowed)})"
    where = f" ({dataset})" if dataset else ""
    if raw.dtype.kind == "f":
        if not np.isfinite(raw).all() or not np.array_equal(raw, np.round(raw)):
            raise DatasetError(f"{path}: label contains non-integer values{listed} (save the labels as integers)")
    if raw.size and raw.min() < 0:
        raise DatasetError(f"{path}: label contains negative values{listed} (fix the label file)")
    largest = int(raw.max()) if raw.size else 0
    if allowed is not None and largest > max(allowed):
        found = sorted(int(v) for v in np.unique(raw) if int(v) not in allowed)
        raise DatasetError(f"{path}: label values {found} outside {sorted(allowed)}{where} {FIX_LABELS}")
    label = raw.astype(np.uint8 if largest < 256 else np.int32, copy=False)
    if allowed is not None:
        present = np.flatnonzero(np.bincount(label.ravel(), minlength=max(allowed) + 1))
        unexpected = sorted(int(v) for v in present if int(v) not in allowed)
        if unexpected:
            raise DatasetError(f"{path}: label values {unexpected} outside {sorted(allowed)}{where} {FIX_LABELS}")
    return Volume(label, np.asarray(image.affine, dtype=np.float64), image.header.binaryblock, path)


def check_same_grid(reference: tuple[tuple[int, ...], np.ndarray, Path], other: tuple[tuple[int, ...], np.ndarray, Path]) -> None:
    """Raise when two files of one case differ in shape or affine (they must share one voxel grid)."""
    (shape_a, affine_a, path_a), (shape_b, affine_b, path_b) = reference, other
    if tuple(shape_a) != tuple(shape_b):
        raise DatasetError(f"{path_b}: shape {tuple(shape_b)} differs from {tuple(shape_a)} of {path_a.name} "
                           "(resample the files of a case onto one grid)")
    if not np.allclose(affine_a, affine_b, rtol=0.0, atol=1e-3):
        raise DatasetError(f"{path_b}: affine differs from the affine of {path_a.name} "
                           "(resample the files of a case onto one grid)")


def _open(path: Path) -> nib.Nifti1Image:
    try:
        path.stat()  # is_file() alone says "no" for a file in a folder we may not enter, hiding the cause
    except FileNotFoundError:
        raise DatasetError(f"{path}: file not found (check the path)") from None
    except OSError as error:
        raise DatasetError(unreadable_message(path, error)) from None
    if not path.is_file():
        raise DatasetError(f"{path}: a folder, not a NIfTI file")
    try:
        return nib.load(str(path))
    except PermissionError as error:
        raise DatasetError(unreadable_message(path, error)) from None
    except Exception as error:  # nibabel raises many types for a damaged header
        raise DatasetError(f"{path}: not a readable NIfTI file ({type(error).__name__}: {error}); "
                           "copy or export it again") from error


def unreadable_message(path: Path, error: OSError) -> str:
    """Why `path` cannot be read, in words: permission denied (and what to do), or the system's reason."""
    if isinstance(error, PermissionError):
        return f"permission denied reading {path} (check the permissions of the file and its folders)"
    return f"{path}: cannot read the file ({error.strerror or error})"


def _spatial_shape(shape: tuple[int, ...], path: Path) -> tuple[int, int, int]:
    """The 3D shape, tolerating trailing singleton axes; 2D and real 4D files are errors."""
    trimmed = tuple(shape)
    while len(trimmed) > 3 and trimmed[-1] == 1:
        trimmed = trimmed[:-1]
    if len(trimmed) != 3:
        raise DatasetError(f"{path}: expected a 3D volume, got shape {tuple(shape)} ({len(shape)}D); give one 3D volume "
                           "per file")
    check_spatial_shape(trimmed, path)
    return trimmed  # type: ignore[return-value]


def check_spatial_shape(shape: tuple[int, ...], path: Path) -> None:
    """Raise when a 3D grid is empty (a zero-size axis) or degenerate (one voxel along an axis: no 3D volume)."""
    shape = tuple(int(s) for s in shape)
    if 0 in shape:
        raise DatasetError(f"{path}: empty volume, shape {shape} has a zero-size axis (re-export the file)")
    if min(shape) < MIN_AXIS_VOXELS:
        raise DatasetError(f"{path}: degenerate volume, shape {shape} has a single voxel along an axis "
                           f"(a 3D volume needs at least {MIN_AXIS_VOXELS} along each)")


def _voxels(image: nib.Nifti1Image, path: Path) -> np.ndarray:
    try:
        return np.asarray(image.dataobj)
    except (EOFError, OSError, ValueError, zlib.error) as error:
        raise DatasetError(f"{path}: truncated or corrupt voxel data ({type(error).__name__}: {error}); copy or export "
                           "the file again") from error
