"""Reading a case's channels, whether each sits in its own 3-D file or all share one 4-D file.

`CaseFiles.images` always holds one entry per channel, in channel order. nnU-Net, BraTS, LiTS and
FLARE21 store one 3-D file per channel. The Medical Segmentation Decathlon stores every channel of
a case in one 4-D file (last axis = channel); `CaseFiles` then repeats that file's path once per
channel, and the k-th occurrence of a path is channel k of the file. `len(case.images)` is thus
always the channel count, and code that reads through this module handles every layout.
"""
from __future__ import annotations

import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable

import nibabel as nib
import numpy as np

from oss_net.data.case_files import CaseFiles, Problem
from oss_net.data.nifti import (ImageFile, Volume, check_same_grid, check_spatial_shape, open_image, read_header,
                               read_image, read_voxels)
from oss_net.datasets import DatasetError

Grid = tuple[tuple[int, ...], np.ndarray, Path]  # (spatial shape, 4×4 affine, file): what check_same_grid compares


def channel_positions(case: CaseFiles) -> list[tuple[Path, int | None]]:
    """Per channel: (file, index along the file's last axis), or (file, None) for a file holding one 3-D channel."""
    counts = Counter(case.images)
    seen: Counter[Path] = Counter()
    slots: list[tuple[Path, int | None]] = []
    for path in case.images:
        slots.append((path, seen[path] if counts[path] > 1 else None))
        seen[path] += 1
    return slots


def read_channels(case: CaseFiles) -> list[Volume]:
    """Every channel of `case` as a 3-D float32 `Volume`, in channel order (each 4-D file is read once).

    A channel taken from a 4-D file keeps the file's affine; its header is the file's header made
    3-D, so an output written with it is a plain 3-D NIfTI on the same grid. Files are read in
    parallel threads; a bad file raises the error of the first bad one in channel order.
    """
    counts = Counter(case.images)
    workers = min(len(counts), os.cpu_count() or 1)
    if workers > 1:  # gzip inflation and numpy release the GIL: the files of a case decompress side by side
        with ThreadPoolExecutor(max_workers=workers) as pool:
            files = dict(zip(counts, pool.map(read_file_channels, counts, counts.values())))
    else:
        files = {path: read_file_channels(path, count) for path, count in counts.items()}
    return [files[path][0 if index is None else index] for path, index in channel_positions(case)]


def read_channel(case: CaseFiles, number: int) -> Volume:
    """Channel `number` of `case` alone (a 4-D file is read whole, its other channels dropped)."""
    path, index = channel_positions(case)[number]
    return read_file_channels(path, Counter(case.images)[path])[0 if index is None else index]


def read_file_channels(path: Path, channels: int = 1) -> list[Volume]:
    """The `channels` channels of one file: a 3-D file for 1 (read_image), else a 4-D file, channels last."""
    return [read_image(path)] if channels == 1 else _read_4d(path, channels)


def file_grid(path: Path, channels: int = 1) -> Grid:
    """The grid of an image file from its header only; a file of `channels` > 1 channels must be 4-D, them last."""
    if channels == 1:
        shape, affine, _ = read_header(path)
        return shape, affine, path
    opened = _open_4d(path, channels)
    return tuple(int(s) for s in opened.shape[:3]), opened.affine, path


def check_case_grids(case: CaseFiles) -> None:
    """Raise DatasetError naming the file when a channel or the label differs in shape or affine (headers only)."""
    counts = Counter(case.images)
    grids = [file_grid(path, counts[path]) for path in dict.fromkeys(case.images)]
    if case.label is not None:
        shape, affine, _ = read_header(case.label)
        grids.append((shape, affine, case.label))
    for grid in grids[1:]:
        check_same_grid(grids[0], grid)


def grid_problems(cases: Iterable[CaseFiles]) -> tuple[list[CaseFiles], list[Problem]]:
    """The cases whose channels and label share one grid (headers only), and a problem for each other case."""
    good, problems = [], []
    for case in cases:
        try:
            check_case_grids(case)
        except DatasetError as error:
            problems.append(Problem(case.case_id, str(error)))
            continue
        good.append(case)
    return good, problems


def read_label_values(path: Path, allowed: frozenset[int]) -> Volume:
    """A label volume whose voxels must be integers of `allowed` (a dataset.json's values); uint8 when they fit."""
    volume = read_image(path)
    values = np.unique(volume.array)
    if not np.array_equal(values, np.round(values)):
        raise DatasetError(f"{path}: label contains non-integer values (allowed: {sorted(allowed)})")
    unexpected = sorted(int(v) for v in values if int(v) not in allowed)
    if unexpected:
        raise DatasetError(f"{path}: label values {unexpected} outside {sorted(allowed)}")
    dtype = np.uint8 if max(allowed) < 256 else np.int32
    return Volume(volume.array.astype(dtype), volume.affine, volume.header, path)


def _read_4d(path: Path, channels: int) -> list[Volume]:
    opened = _open_4d(path, channels)
    raw, affine, header = read_voxels(opened)
    data = np.asarray(raw, dtype=np.float32)
    if not np.isfinite(data).all():
        raise DatasetError(f"{path}: image contains {int(data.size - np.isfinite(data).sum())} NaN or Inf voxel(s)")
    if isinstance(opened.source, nib.Nifti1Image):  # each channel's header: the file's, made 3-D
        three_d = opened.source.header.copy()
        three_d.set_data_shape(opened.shape[:3])
        header = three_d.binaryblock
    return [Volume(np.ascontiguousarray(data[..., c]), affine, header, path) for c in range(channels)]


def _open_4d(path: Path, channels: int) -> ImageFile:
    """The opened file (header checked, voxels not read yet), which must be 4-D with `channels` channels last."""
    opened = open_image(path)
    if len(opened.shape) != 4 or opened.shape[3] != channels:
        raise DatasetError(f"{path}: expected a 4-D image with {channels} channels on its last axis, "
                           f"got shape {tuple(opened.shape)}")
    check_spatial_shape(opened.shape[:3], path)
    return opened
