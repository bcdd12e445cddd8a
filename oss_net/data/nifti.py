"""Reading image files with every check a training run needs before it touches the data: the one reading path.

NIfTI files are read by nibabel; NRRD, MetaImage and DICOM series by SimpleITK (`oss_net.data.formats`, which
turns them into nibabel's array order and RAS affine, and keeps their exact geometry as the header). Every
check below applies to every format.

Each reader returns the array plus the checked affine and the header, and raises one `DatasetError`
naming the file for anything a real dataset can get wrong: a missing, unreadable (permission), truncated
or corrupt file, a 2D or 4D image, an empty or degenerate grid (a zero-size axis, or a single voxel along
an axis), a degenerate affine or disagreeing qform and sform (`oss_net.geometry.header_affine`), NaN/Inf
intensities, label values outside the dataset's set.

The header is read before the data (`open_image`; SimpleITK's `ReadImageInformation` for the other
formats): the voxel count × data type it declares must match the file (an uncompressed NIfTI file's size
exactly, an uncompressed NRRD or MetaImage data file at least; gzip or zlib data can inflate at most
`MAX_DEFLATE_RATIO` times) and fit in the memory available, so a tiny file declaring a huge volume is
refused in milliseconds instead of allocating it.

A constant image (every voxel equal) is only a warning (RuntimeWarning): a blank modality does occur
in real data, and the z-score turns it into zeros instead of dividing by zero; the dataset check lists it.
"""
from __future__ import annotations

import math
import os
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import nibabel as nib
import numpy as np

from oss_net.data.formats import ITK_SUFFIXES, ItkInformation, is_dicom_file, read_itk_information, read_itk_voxels
from oss_net.datasets import DatasetError
from oss_net.geometry import affine_preference, header_affine, spacing_from_affine
from oss_net.io import image_suffix

# Label values each dataset may contain: BraTS (background, necrosis, oedema, enhancing), LiTS (liver, tumour).
# "border" is the set of a stored border map.
LABEL_VALUES: dict[str, frozenset[int]] = {
    "brats": frozenset({0, 1, 2, 4}), "lits": frozenset({0, 1, 2}), "border": frozenset({0, 1})}


MIN_AXIS_VOXELS = 2  # fewer along any axis is a single slice or voxel, not a volume to segment in 3D
FIX_LABELS = "(fix the label file, or check it belongs to this dataset)"  # what to do about unknown label values
# deflate's largest possible ratio (RFC 1951: a 258-byte match costs at least 2 bits, 258·8/2 = 1032): a
# gzip file cannot inflate to more than this many times its size, whatever it holds.
MAX_DEFLATE_RATIO = 1032
# Bytes per voxel a reader may hold at once beyond the file's own: the float32 (or uint8) copy it converts to.
CONVERTED_BYTES = 4


@dataclass(frozen=True)
class Volume:
    """One 3D image: `array [D, H, W]`, its 4×4 voxel→RAS mm affine and its file's header (a NIfTI header block,
    or the `oss_net.data.formats.ItkHeader` bytes of a file read through SimpleITK)."""

    array: np.ndarray
    affine: np.ndarray
    header: bytes
    path: Path

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along each array axis (column norms of the affine)."""
        return tuple(spacing_from_affine(self.affine).tolist())


def read_header(path: Path) -> tuple[tuple[int, ...], np.ndarray, bytes]:
    """Shape, affine and header of an image file without reading its voxels (fast)."""
    opened = open_image(path)
    return _spatial_shape(opened.shape, path), opened.affine, opened.header


def read_image(path: Path) -> Volume:
    """An intensity volume as float32; NaN or Inf anywhere is an error."""
    opened = open_image(path)
    shape = _spatial_shape(opened.shape, path)
    array, affine, header = read_voxels(opened)
    return checked_volume(array.reshape(shape), affine, header, path)


def checked_volume(array: np.ndarray, affine: np.ndarray, header: bytes | None, source: Any) -> Volume:
    """A float32 `Volume` of intensities `array [D, H, W]` already read (a file's, or an image given in memory):
    NaN or Inf anywhere is an error naming `source`, a constant image a warning."""
    array = np.asarray(array).astype(np.float32, copy=False)
    if not np.isfinite(array).all():
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        raise DatasetError(f"{source}: image contains {bad} NaN or Inf voxel(s) (replace them with finite values and "
                           "save it again)")
    if array.min() == array.max():
        warnings.warn(f"{source}: constant image (every voxel is {array.flat[0]:g}); it carries no information",
                      RuntimeWarning, stacklevel=3)
    return Volume(array, affine, header, Path(source) if isinstance(source, (str, os.PathLike)) else source)


def read_label(path: Path, dataset: str) -> Volume:
    """A label volume as uint8; values must be integers of the dataset's label set."""
    return read_label_map(path, LABEL_VALUES[dataset], dataset)


def read_label_map(path: Path, allowed: Iterable[int] | None = None, dataset: str | None = None) -> Volume:
    """An integer label map (uint8 when it fits); values must be non-negative integers, and of `allowed` when given."""
    opened = open_image(path)
    shape = _spatial_shape(opened.shape, path)
    raw, affine, header = read_voxels(opened)
    raw = raw.reshape(shape)
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
    return Volume(label, affine, header, path)


def check_same_grid(reference: tuple[tuple[int, ...], np.ndarray, Path], other: tuple[tuple[int, ...], np.ndarray, Path]) -> None:
    """Raise when two files of one case differ in shape or affine (they must share one voxel grid)."""
    (shape_a, affine_a, path_a), (shape_b, affine_b, path_b) = reference, other
    if tuple(shape_a) != tuple(shape_b):
        raise DatasetError(f"{path_b}: shape {tuple(shape_b)} differs from {tuple(shape_a)} of {path_a.name} "
                           "(resample the files of a case onto one grid)")
    if not np.allclose(affine_a, affine_b, rtol=0.0, atol=1e-3):
        raise DatasetError(f"{path_b}: affine differs from the affine of {path_a.name} "
                           "(resample the files of a case onto one grid)")


@dataclass(frozen=True)
class ImageFile:
    """An opened image file whose header passed every check: its voxels are not read yet (`read_voxels`).

    shape: nibabel's array order (i, j, k), a 4-D file's channels last; header: a NIfTI header block, or the
    `ItkHeader` bytes of a file read through SimpleITK; source: the nibabel image, or SimpleITK's header.
    """

    path: Path
    shape: tuple[int, ...]
    affine: np.ndarray  # [4, 4] the checked voxel→RAS mm affine (`oss_net.geometry.header_affine`)
    header: bytes
    source: nib.Nifti1Image | ItkInformation


def open_image(path: Path) -> ImageFile:
    """Open `path` and check its header before any voxel is read: readable (permissions), an image file (NIfTI,
    NRRD, MetaImage, a DICOM series), a declared size that matches the file and fits in memory
    (`check_declared_size`), a usable affine."""
    path = Path(path)
    try:
        path.stat()  # is_file() alone says "no" for a file in a folder we may not enter, hiding the cause
    except FileNotFoundError:
        raise DatasetError(f"{path}: file not found (check the path)") from None
    except OSError as error:
        raise DatasetError(unreadable_message(path, error)) from None
    try:
        if path.is_file():
            with open(path, "rb"):  # nibabel reports an unreadable file as "cannot work out file type"
                pass
        if path.is_dir() or image_suffix(path) in ITK_SUFFIXES or path.suffix.lower() == ".dcm" or is_dicom_file(path):
            return open_itk_file(path)
        image = nib.load(str(path))
    except PermissionError as error:
        raise DatasetError(unreadable_message(path, error)) from None
    except DatasetError:
        raise
    except Exception as error:  # nibabel raises many types for a damaged header
        raise DatasetError(f"{path}: not a readable NIfTI file ({type(error).__name__}: {error}); "
                           "copy or export it again") from error
    shape = tuple(int(s) for s in image.shape)
    offset = int(getattr(image.dataobj, "offset", image.header.get_data_offset()))  # the loaded header says 0
    encoding = "deflate" if path.name.endswith(".gz") else "raw"
    check_declared_size(path, shape, image.header.get_data_dtype(), path.stat().st_size, encoding, offset)
    return ImageFile(path, shape, file_affine(image, path), image.header.binaryblock, image)


def open_itk_file(path: Path) -> ImageFile:
    """`open_image` for NRRD, MetaImage and DICOM (SimpleITK's header; its affine checked like a NIfTI file's)."""
    information = read_itk_information(path)
    check_declared_size(path, information.shape, information.dtype, information.stored_bytes, information.encoding,
                        information.offset)
    affine = header_affine(path, None, 0, None, 0, information.header.affine)
    return ImageFile(path, information.shape, affine, information.header.to_bytes(), information)


def read_voxels(opened: ImageFile) -> tuple[np.ndarray, np.ndarray, bytes]:
    """(voxels in the file's data type, affine, header) of an opened file; a DICOM series' affine and header are
    those SimpleITK's series reader gives with the voxels (checked again)."""
    if not isinstance(opened.source, ItkInformation):
        return _voxels(opened.source, opened.path), opened.affine, opened.header
    array, header = read_itk_voxels(opened.source)
    if header.suffix != "dicom":
        return array, opened.affine, opened.header
    return array, header_affine(opened.path, None, 0, None, 0, header.affine), header.to_bytes()


def file_affine(image: nib.Nifti1Image, path: Any) -> np.ndarray:
    """The image's checked voxel→mm affine: its qform or sform as `oss_net.geometry.header_affine` decides."""
    header = image.header
    if not hasattr(header, "get_sform"):  # not a NIfTI header: one affine, checked as it is
        return header_affine(path, None, 0, None, 0, image.affine)
    qform, qform_code = header.get_qform(coded=True)
    sform, sform_code = header.get_sform(coded=True)
    return header_affine(path, qform, int(qform_code), sform, int(sform_code), header.get_base_affine(),
                         affine_preference())


def check_declared_size(path: Path, shape: tuple[int, ...], dtype: np.dtype, stored: int, encoding: str,
                        offset: int | None = None) -> None:
    """Refuse a header whose shape × data type cannot be this file's voxels, or cannot be read into memory.

    `stored` bytes hold the voxels: "raw" ones exactly `offset` + the declared bytes (an uncompressed NIfTI,
    NRRD or MetaImage file holding its header) or, without an offset, at least the declared bytes (a detached
    data file);
    "deflate" ones inflate at most MAX_DEFLATE_RATIO times; "other" encodings give no bound. Only the header
    was read; nothing is allocated.
    """
    shape = tuple(int(s) for s in shape)
    dtype = np.dtype(dtype)
    declared = math.prod(shape) * dtype.itemsize
    start = offset or 0
    what = f"the header declares {'×'.join(map(str, shape))} {dtype} ({human_bytes(declared)})"
    if encoding == "deflate" and start + declared > stored * MAX_DEFLATE_RATIO:
        raise DatasetError(f"{path}: truncated or corrupt voxel data: {what} but the file is {human_bytes(stored)} "
                           f"of compressed data, which inflates to at most {human_bytes(stored * MAX_DEFLATE_RATIO)} "
                           "(copy or export it again)")
    if encoding == "raw" and offset is not None and offset + declared != stored:
        problem = ("truncated or corrupt voxel data" if stored < offset + declared else
                   "longer than its header says (the header's shape or data type is wrong)")
        raise DatasetError(f"{path}: {problem}: {what} after a {offset}-byte header, {offset + declared} bytes in "
                           f"all, but the file holds {stored} bytes (copy or export it again)")
    if encoding == "raw" and offset is None and declared > stored:
        raise DatasetError(f"{path}: truncated or corrupt voxel data: {what} but its data holds {human_bytes(stored)} "
                           "(copy or export it again)")
    memory = math.prod(shape) * (dtype.itemsize + CONVERTED_BYTES)
    budget = memory_budget()
    if memory > budget:
        raise DatasetError(f"{path}: {what}, which needs about {human_bytes(memory)} of memory to read, more than the "
                           f"{human_bytes(budget)} available (resample or crop the image, or free memory)")


def memory_budget() -> int:
    """Bytes of memory a reader may use: the system's available memory (MemAvailable), else its physical memory."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 2**63


def human_bytes(count: int) -> str:
    """A byte count in words: 400 B, 3.1 MB, 8.0 TB (powers of 1000)."""
    value = float(count)
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if value < 1000 or unit == "PB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{count} B"


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
