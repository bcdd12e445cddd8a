"""Image files other than NIfTI, through SimpleITK (NRRD, MetaImage, DICOM series), and writing every format.

Read (`read_itk_information` for the header, `read_itk_voxels` for the data) by `oss_net.data.nifti.open_image`,
the one reading path, which applies the same checks to every format; written by `save_image`.

Array order and frames. nibabel holds voxels as `array[i, j, k]` with a 4×4 affine to RAS mm; SimpleITK gives
`array[k, j, i]` with spacing, origin and direction in LPS mm (ITK's and DICOM's frame). An image read here is
turned into nibabel's form, the axes reversed and the affine `diag(-1, -1, 1) · direction · diag(spacing)` with
the origin's x and y negated (`itk_affine`), so every later step sees one convention, whatever the file was.

Exact geometry. SimpleITK's own reading of the source (origin, spacing, direction as float64, and an NRRD file's
geometry lines verbatim) travels with the case as its header, an `ItkHeader` (`GridMeta.header` holds its
bytes), and an output on the input grid is written with it, so SimpleITK reads the output with the input's
geometry bit for bit. SimpleITK's NRRD writer alone cannot do that for an oblique grid: NRRD stores
direction × spacing, and the norms read back differ in the last digit; the NRRD output therefore carries the
input's `space`, `space directions` and `space origin` lines. A NIfTI output stores float32 (the format's own
precision); MetaImage stores 17 digits (exact).

DICOM. A folder holding one series, or one file of a series, stands for the whole series (GDCM's series
reader, slices ordered by position); `dicom_series(folder)` lists the series of a folder. Only its first and
last slices' headers are read before the data (size, pixel type, geometry); the series reader's own geometry
is the volume's.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from oss_net.datasets import DatasetError
from oss_net.io import NIFTI_SUFFIXES, IMAGE_SUFFIXES, atomic_save_nifti, image_suffix, write_error

ITK_SUFFIXES = tuple(suffix for suffix in IMAGE_SUFFIXES if suffix not in NIFTI_SUFFIXES)
DICOM_OUTPUT_SUFFIX = ".mha"  # a DICOM series' outputs: MetaImage keeps its geometry exactly (17 digits)
DICOM_MAGIC_OFFSET = 128  # "DICM" follows a 128-byte preamble in a DICOM Part 10 file
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])  # its own inverse
HEADER_MARK = b"oss_net ItkHeader\n"  # the bytes of an `ItkHeader` start with this (a NIfTI header never does)
NRRD_GEOMETRY_FIELDS = ("space", "space dimension", "space directions", "space origin")
HEADER_TEXT_LIMIT = 1 << 16  # bytes of a NRRD / MetaImage file read to find its header fields

PIXEL_TYPES = {  # SimpleITK pixel id (scalar and vector) -> numpy dtype
    **{sitk_id: np.dtype(dtype) for ids, dtype in (
        ((sitk.sitkUInt8, sitk.sitkVectorUInt8), np.uint8), ((sitk.sitkInt8, sitk.sitkVectorInt8), np.int8),
        ((sitk.sitkUInt16, sitk.sitkVectorUInt16), np.uint16), ((sitk.sitkInt16, sitk.sitkVectorInt16), np.int16),
        ((sitk.sitkUInt32, sitk.sitkVectorUInt32), np.uint32), ((sitk.sitkInt32, sitk.sitkVectorInt32), np.int32),
        ((sitk.sitkUInt64, sitk.sitkVectorUInt64), np.uint64), ((sitk.sitkInt64, sitk.sitkVectorInt64), np.int64),
        ((sitk.sitkFloat32, sitk.sitkVectorFloat32), np.float32),
        ((sitk.sitkFloat64, sitk.sitkVectorFloat64), np.float64)) for sitk_id in ids},
}


@dataclass(frozen=True)
class ItkHeader:
    """SimpleITK's geometry of a file (LPS mm, float64, ITK's axis order i, j, k) and its format."""

    suffix: str  # the source's format: an `ITK_SUFFIXES` entry, or "dicom"
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]  # 3×3 row-major, as SimpleITK gives it
    nrrd_geometry: tuple[str, ...] = ()  # an NRRD source's geometry lines, verbatim

    def to_bytes(self) -> bytes:
        """The header as bytes (JSON keeps every float exactly), to travel in `GridMeta.header`."""
        return HEADER_MARK + json.dumps({"suffix": self.suffix, "spacing": self.spacing, "origin": self.origin,
                                         "direction": self.direction, "nrrd_geometry": self.nrrd_geometry}).encode()

    @classmethod
    def from_bytes(cls, data: bytes | None) -> "ItkHeader | None":
        """The header `to_bytes` wrote, or None for other bytes (a NIfTI header block) or None."""
        if data is None or not bytes(data).startswith(HEADER_MARK):
            return None
        record = json.loads(bytes(data)[len(HEADER_MARK):])
        return cls(record["suffix"], tuple(record["spacing"]), tuple(record["origin"]), tuple(record["direction"]),
                   tuple(record["nrrd_geometry"]))

    @property
    def affine(self) -> np.ndarray:
        """[4, 4] voxel (i, j, k) → RAS mm, nibabel's convention."""
        return itk_affine(self.spacing, self.origin, self.direction)


def itk_affine(spacing: Any, origin: Any, direction: Any) -> np.ndarray:
    """[4, 4] voxel → RAS mm affine of SimpleITK's (LPS) spacing, origin and row-major 3×3 direction."""
    matrix = np.eye(4)
    matrix[:3, :3] = LPS_TO_RAS @ np.asarray(direction, dtype=np.float64).reshape(3, 3) @ np.diag(
        np.asarray(spacing, dtype=np.float64))
    matrix[:3, 3] = LPS_TO_RAS @ np.asarray(origin, dtype=np.float64)
    return matrix


def geometry_of_affine(affine: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
    """SimpleITK's (spacing, origin, row-major direction) of a voxel → RAS affine [4, 4] (`itk_affine` inverted)."""
    lps = LPS_TO_RAS @ np.asarray(affine, dtype=np.float64)[:3, :3]
    spacing = np.linalg.norm(lps, axis=0)
    direction = lps / spacing
    origin = LPS_TO_RAS @ np.asarray(affine, dtype=np.float64)[:3, 3]
    return tuple(spacing.tolist()), tuple(origin.tolist()), tuple(direction.ravel().tolist())


# ------------------------------------------------------------------ reading


@dataclass(frozen=True)
class ItkInformation:
    """What a file's header says, before any voxel is read.

    shape: (i, j, k) plus the channel count last when a pixel holds several components (like a 4-D NIfTI);
    stored_bytes: the bytes on disk holding the voxels (the data file of a detached header; the whole file
    otherwise, header included, the voxels from `offset` on); encoding: "raw", "deflate" (zlib / gzip) or
    "other" (bzip2, text, a compressed DICOM transfer syntax: no bound from the file size).
    """

    path: Path
    shape: tuple[int, ...]
    dtype: np.dtype
    header: ItkHeader
    stored_bytes: int
    encoding: str
    files: tuple[Path, ...]  # what the voxels are read from: the file, or a DICOM series' slices in order
    offset: int | None = None  # where the voxels start in a file that holds its header too; None: unknown


def is_dicom_file(path: Path) -> bool:
    """A DICOM Part 10 file ("DICM" after the preamble), whatever its name."""
    try:
        with open(path, "rb") as handle:
            handle.seek(DICOM_MAGIC_OFFSET)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def read_itk_information(path: Path) -> ItkInformation:
    """The header of an NRRD or MetaImage file, or of the DICOM series that `path` (a file or folder) stands for."""
    if path.is_dir() or image_suffix(path) is None:
        return dicom_information(path)
    text_fields, offset = header_fields(path)
    data_file = path
    detached = text_fields.get("elementdatafile") or text_fields.get("data file") or text_fields.get("datafile")
    if detached and detached.upper() != "LOCAL":
        data_file, offset = path.parent / detached.split()[0], None
    try:
        stored = data_file.stat().st_size
    except OSError:
        raise DatasetError(f"{path}: its data file {data_file} is missing or unreadable (copy both files)") from None
    reader = information_reader(path)
    header = ItkHeader(image_suffix(path), reader.GetSpacing(), reader.GetOrigin(), reader.GetDirection(),
                       tuple(f"{key}: {text_fields[key]}" for key in NRRD_GEOMETRY_FIELDS if key in text_fields)
                       if image_suffix(path) in (".nrrd", ".nhdr") else ())
    return ItkInformation(path, reader_shape(reader, path), pixel_dtype(reader, path), header, stored,
                          file_encoding(text_fields), (path,), offset)


def information_reader(path: Path) -> sitk.ImageFileReader:
    """A reader of `path` that has read the header only (ReadImageInformation)."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as error:
        reason = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
        raise DatasetError(f"{path}: not a readable image file ({reason}); copy or export it again") from None
    return reader


def reader_shape(reader: sitk.ImageFileReader, path: Path) -> tuple[int, ...]:
    """The array shape in nibabel's order: (i, j, k), plus the components last for a vector pixel."""
    components = int(reader.GetNumberOfComponents())
    return tuple(int(s) for s in reader.GetSize()) + ((components,) if components > 1 else ())


def pixel_dtype(reader: sitk.ImageFileReader, path: Path) -> np.dtype:
    dtype = PIXEL_TYPES.get(reader.GetPixelID())
    if dtype is None:
        raise DatasetError(f"{path}: pixel type {sitk.GetPixelIDValueAsString(reader.GetPixelID())} is not supported "
                           "(save it as integers or floats)")
    return dtype


def header_fields(path: Path) -> tuple[dict[str, str], int | None]:
    """The text header's fields of an NRRD (`key: value`) or MetaImage (`Key = Value`) file, keys in lower case,
    and where its voxels start in the file (None when the header was not found whole).

    An NRRD header ends at its first blank line, a MetaImage header with its `ElementDataFile` line; the
    `space directions` of a vector image lose their "none" (the component axis is not a direction of the grid).
    """
    with open(path, "rb") as handle:
        head = handle.read(HEADER_TEXT_LIMIT)
    nrrd = head.startswith(b"NRRD")
    end = head.find(b"\n\n") + 2 if nrrd and b"\n\n" in head else None
    fields: dict[str, str] = {}
    position = 0
    for raw_line in (head[:end] if end else head).split(b"\n")[1 if nrrd else 0:]:
        position += len(raw_line) + 1
        line = raw_line.decode("latin-1").rstrip("\r")
        key, separator, value = line.partition(":" if nrrd else "=")
        key = key.strip().lower()
        if not separator or line.startswith("#"):
            continue
        fields[key] = value.strip()
        if not nrrd and key == "elementdatafile":
            end = position
            break
    if "space directions" in fields:
        fields["space directions"] = " ".join(t for t in fields["space directions"].split() if t != "none")
    return fields, end


def file_encoding(fields: dict[str, str]) -> str:
    """"raw", "deflate" or "other" from an NRRD `encoding` or a MetaImage `CompressedData` field."""
    if "encoding" in fields:
        encoding = fields["encoding"].lower()
        return "raw" if encoding == "raw" else "deflate" if encoding in ("gzip", "gz") else "other"
    return "deflate" if fields.get("compresseddata", "false").lower() == "true" else "raw"


def dicom_series(folder: Path) -> dict[str, tuple[Path, ...]]:
    """Series instance UID → its slice files, ordered by position (GDCM), for every series in `folder`."""
    try:
        uids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
        return {uid: tuple(Path(f) for f in sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid))
                for uid in uids}
    except RuntimeError as error:
        raise DatasetError(f"{folder}: cannot list its DICOM series ({str(error).strip().splitlines()[-1]})") from None


def describe_series(folder: Path, series: dict[str, tuple[Path, ...]]) -> str:
    """One line per series for a message: its UID, slice count and description."""
    lines = []
    for uid, files in series.items():
        description = information_reader(files[0])
        text = description.GetMetaData("0008|103e").strip() if description.HasMetaDataKey("0008|103e") else ""
        lines.append(f"{uid} ({len(files)} slice(s){', ' + repr(text) if text else ''})")
    return "; ".join(lines)


def series_files(path: Path) -> tuple[Path, ...]:
    """The slice files of the DICOM series `path` stands for: the one series of a folder, or a file's series."""
    folder = path if path.is_dir() else path.parent
    series = dicom_series(folder)
    if path.is_dir():
        if not series:
            raise DatasetError(f"{path}: a folder, not a NIfTI file or a DICOM series (no DICOM files in it)")
        if len(series) > 1:
            raise DatasetError(f"{path}: holds {len(series)} DICOM series; choose one with --series_uid UID: "
                               f"{describe_series(path, series)}")
        return next(iter(series.values()))
    resolved = path.resolve()
    for files in series.values():
        if resolved in {f.resolve() for f in files}:
            return files
    raise DatasetError(f"{path}: not an image file (no image suffix: {', '.join(IMAGE_SUFFIXES)}; not a DICOM "
                       "file of a readable series)")


def dicom_information(path: Path) -> ItkInformation:
    """The header of a DICOM series from its first and last slices: size, pixel type, and geometry (the spacing
    across slices from their positions; the series reader's own comes with the voxels)."""
    files = series_files(path)
    first = information_reader(files[0])
    last = information_reader(files[-1]) if len(files) > 1 else first
    rows = tuple(int(s) for s in first.GetSize()[:2])
    step = np.linalg.norm(np.subtract(last.GetOrigin(), first.GetOrigin())) / max(len(files) - 1, 1)
    spacing = tuple(first.GetSpacing()[:2]) + (float(step) if len(files) > 1 else float(first.GetSpacing()[2]),)
    header = ItkHeader("dicom", spacing, first.GetOrigin(), first.GetDirection())
    components = int(first.GetNumberOfComponents())
    shape = rows + (len(files),) + ((components,) if components > 1 else ())
    stored = sum(f.stat().st_size for f in files)
    return ItkInformation(path, shape, pixel_dtype(first, files[0]), header, stored, "other", files)


def read_itk_voxels(information: ItkInformation) -> tuple[np.ndarray, ItkHeader]:
    """The voxels [i, j, k] (channels last for a vector pixel) and the geometry SimpleITK read with them."""
    try:
        if information.header.suffix == "dicom":
            reader = sitk.ImageSeriesReader()
            reader.SetFileNames([str(f) for f in information.files])
            image = reader.Execute()
        else:
            image = sitk.ReadImage(str(information.path))
    except RuntimeError as error:
        reason = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
        raise DatasetError(f"{information.path}: truncated or corrupt voxel data ({reason}); copy or export it "
                           "again") from None
    array = sitk.GetArrayFromImage(image)  # [k, j, i] or [k, j, i, c]
    array = np.transpose(array, (2, 1, 0) + ((3,) if array.ndim == 4 else ()))
    header = ItkHeader(information.header.suffix, image.GetSpacing(), image.GetOrigin(), image.GetDirection(),
                       information.header.nrrd_geometry)
    return array, header


# ------------------------------------------------------------------ writing


def output_suffix(source: Path | str | None, output_format: str | None = None) -> str:
    """The suffix of outputs made from `source`: `output_format` when given ("nrrd" or ".nrrd"), else the
    source's own format: NIfTI gzip-compressed (.nii.gz, also for a .nii source: a LiTS-sized float32 map is
    half a gigabyte uncompressed), a DICOM series `DICOM_OUTPUT_SUFFIX`, nothing known .nii.gz."""
    if output_format:
        suffix = "." + output_format.lower().lstrip(".")
        if suffix not in IMAGE_SUFFIXES:
            raise DatasetError(f"output format {output_format!r} is not one of "
                               f"{', '.join(s.lstrip('.') for s in IMAGE_SUFFIXES)}")
        return suffix
    suffix = None if source is None else image_suffix(source)
    if source is None or suffix in NIFTI_SUFFIXES:
        return NIFTI_SUFFIXES[0]
    return suffix or DICOM_OUTPUT_SUFFIX


def save_image(array: np.ndarray, affine: np.ndarray, path: Path, header: bytes | None = None) -> list[Path]:
    """Write `array` [i, j, k] (or [i, j, k, C], channels last) with voxel → RAS `affine` as `path`'s suffix says,
    atomically; returns the files written (a detached header's data file first).

    `header` is the source's (`GridMeta.header`): a NIfTI header block keeps its codes and units in a NIfTI
    output; an `ItkHeader` whose affine is `affine` gives an ITK output the source's exact geometry.
    """
    path = Path(path)
    suffix = image_suffix(path)
    itk_header = ItkHeader.from_bytes(header)
    if suffix in NIFTI_SUFFIXES:
        atomic_save_nifti(array, affine, path, header=nifti_output_header(header, itk_header))
        return [path]
    if suffix not in ITK_SUFFIXES:
        raise DatasetError(f"{path}: unknown image format; use one of {', '.join(IMAGE_SUFFIXES)}")
    exact = itk_header is not None and np.array_equal(itk_header.affine, np.asarray(affine, dtype=np.float64))
    nrrd_geometry = itk_header.nrrd_geometry if exact and suffix in (".nrrd", ".nhdr") else ()
    return atomic_save_itk(itk_image(array, affine, header), path, nrrd_geometry)


def itk_image(array: np.ndarray, affine: np.ndarray, header: bytes | None = None) -> sitk.Image:
    """A SimpleITK image of `array` [i, j, k] (or [i, j, k, C]: a vector pixel) on the grid of the RAS `affine`:
    the geometry of `header` when it is an `ItkHeader` of that grid (exact), else the affine's own."""
    itk_header = ItkHeader.from_bytes(header)
    exact = itk_header is not None and np.array_equal(itk_header.affine, np.asarray(affine, dtype=np.float64))
    spacing, origin, direction = ((itk_header.spacing, itk_header.origin, itk_header.direction) if exact
                                  else geometry_of_affine(affine))
    data = np.asarray(array)
    image = sitk.GetImageFromArray(np.transpose(data, (2, 1, 0) + ((3,) if data.ndim == 4 else ())),
                                   isVector=data.ndim == 4)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(direction)
    return image


def nifti_output_header(header: bytes | None, itk_header: ItkHeader | None) -> Any:
    """The NIfTI header of an output: the source's (codes, units, description) without its intensity scaling;
    for a source read through SimpleITK (or none), one whose qform and sform say "scanner" coordinates."""
    import nibabel as nib

    if header is not None and itk_header is None:
        nifti = nib.Nifti1Header(binaryblock=bytes(header))
        nifti.set_slope_inter(None, None)
        return nifti
    if itk_header is None:
        return None
    nifti = nib.Nifti1Header()
    nifti.set_qform(np.eye(4), code=1)
    nifti.set_sform(np.eye(4), code=1)
    nifti.set_xyzt_units("mm")
    return nifti


def atomic_save_itk(image: sitk.Image, path: Path, nrrd_geometry: tuple[str, ...] = ()) -> list[Path]:
    """SimpleITK writes (compressed) into a private folder beside `path`; the files then replace the targets, the
    data file before its header. `nrrd_geometry` lines replace those SimpleITK wrote (exact NRRD geometry)."""
    folder = path.parent
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder))
    except OSError as error:
        raise write_error(error, path) from error
    try:
        sitk.WriteImage(image, str(staging / path.name), True)
        if nrrd_geometry:
            replace_nrrd_geometry(staging / path.name, nrrd_geometry)
        written = sorted(staging.iterdir(), key=lambda entry: entry.name == path.name)  # the header last
        for entry in written:
            os.chmod(entry, 0o644)
            os.replace(entry, folder / entry.name)
        return [folder / entry.name for entry in written]
    except RuntimeError as error:
        raise DatasetError(f"{path}: SimpleITK could not write it ({str(error).strip().splitlines()[-1]})") from None
    except OSError as error:
        raise write_error(error, path) from error
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(staging)


def replace_nrrd_geometry(path: Path, lines: tuple[str, ...]) -> None:
    """Put the source's geometry lines in place of SimpleITK's in an NRRD header (the data after it unchanged);
    a vector image keeps SimpleITK's "none" direction of its component axis."""
    content = path.read_bytes()
    head, separator, data = content.partition(b"\n\n") if path.suffix == ".nrrd" else (content, b"", b"")
    written = head.decode("latin-1").split("\n")
    keys = {line.partition(":")[0].strip().lower() for line in lines} | set(NRRD_GEOMETRY_FIELDS)
    component = next((line for line in written if line.lower().startswith("space directions:")), "")
    prefix = "none " if component.split(":", 1)[-1].strip().startswith("none") else ""
    position = next(i for i, line in enumerate(written) if line.partition(":")[0].strip().lower() in keys)
    kept = [line for line in written if line.partition(":")[0].strip().lower() not in keys]
    source = [line.replace(": ", ": " + prefix, 1) if line.lower().startswith("space directions:") else line
              for line in lines]
    kept[position:position] = source
    path.write_bytes("\n".join(kept).encode("latin-1") + separator + data)
