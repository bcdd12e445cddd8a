"""Images on oblique grids and DICOM series written by SimpleITK, and SimpleITK's own reading of them, for the
tests of the image formats (data and inference)."""
from __future__ import annotations

import locale
from pathlib import Path

import numpy as np
import SimpleITK as sitk


def oblique_image(array: np.ndarray, seed: int = 0) -> sitk.Image:
    """`array` [i, j, k] as a SimpleITK image on a random oblique, anisotropic grid."""
    rng = np.random.default_rng(seed)
    rotation, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    image = sitk.GetImageFromArray(np.ascontiguousarray(array.transpose(2, 1, 0)))
    image.SetDirection(rotation.ravel().tolist())
    image.SetSpacing(tuple(rng.uniform(0.3, 3.0, 3)))
    image.SetOrigin(tuple(rng.uniform(-100.0, 100.0, 3)))
    return image


def geometry(image: sitk.Image) -> tuple:
    return image.GetSize(), image.GetSpacing(), image.GetOrigin(), image.GetDirection()


def write_dicom_series(folder: Path, volume: np.ndarray, uid: str, description: str, spacing=(0.7, 0.9, 2.5),
                       origin=(-12.5, 3.25, 7.75), angle: float = 0.3) -> sitk.Image:
    """`volume` [i, j, k] int16 as a DICOM series (one file per k) written by SimpleITK; returns the image."""
    folder.mkdir(parents=True, exist_ok=True)
    direction = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    image = sitk.GetImageFromArray(np.ascontiguousarray(volume.transpose(2, 1, 0)))
    image.SetDirection(direction.ravel().tolist())
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    cosines = "\\".join(repr(float(v)) for v in (*direction[:, 0], *direction[:, 1]))
    saved = locale.setlocale(locale.LC_ALL)  # GDCM's writer leaves the process in the "C" locale (ASCII text files)
    try:
        for k in range(image.GetDepth()):
            slice_k = image[:, :, k]
            for tag, value in (("0020|000e", uid), ("0020|000d", uid.rsplit(".", 1)[0]), ("0008|0060", "CT"),
                               ("0020|0037", cosines), ("0020|0013", str(k + 1)), ("0008|103e", description),
                               ("0020|0032", "\\".join(repr(v) for v in image.TransformIndexToPhysicalPoint((0, 0, k))))):
                slice_k.SetMetaData(tag, value)
            writer.SetFileName(str(folder / f"{description.replace(' ', '_')}_{k:03d}.dcm"))
            writer.Execute(slice_k)
    finally:
        locale.setlocale(locale.LC_ALL, saved)
    return image


def series_reading(folder: Path, uid: str | None = None) -> sitk.Image:
    """SimpleITK's own reading of a DICOM series (GDCM's file order)."""
    uid = uid or sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))[0]
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid))
    return reader.Execute()
