"""Loading one case onto the model grid: read, check, z-score, pad or resample, and cache the result.

The preprocessing follows the paper: per-modality z-score over the whole volume (with an epsilon,
so a constant image gives zeros instead of NaN), then BraTS is centre-padded to `config.volume_shape`
and LiTS resampled to it (`oss_net.data.grid`). Every file of a case is read and checked before
anything is written.

The cache holds each preprocessed case as uncompressed ``.npy`` files opened memory-mapped, so an
epoch never decompresses NIfTI again. An entry's key hashes the source files' paths, sizes and
modification times together with the grid settings; an entry whose key, shapes or dtypes do not
match, or that cannot be read, is rebuilt. Files are written atomically and ``meta.json`` last, so a
half-written entry is never taken as valid. Entries for other settings are kept side by side.
Disk cost: C·D·H·W float32 plus two uint8 volumes per case (BraTS at 256×256×160: ~190 MB).
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from oss_net.data.borders import compute_border, read_border
from oss_net.data.errors import DatasetError
from oss_net.data.grid import GridMeta
from oss_net.data.layout import CaseFiles
from oss_net.data.nifti import check_same_grid, read_header, read_image, read_label
from oss_net.io import atomic_save_json, atomic_write

ZSCORE_EPSILON = 1e-6
CACHE_VERSION = 1
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Case:
    """A case on the model grid.

    Attributes:
        image: `[C, *volume_shape]` float32, z-scored (a read-only memory map when it comes from the cache).
        raw_label: `[*volume_shape]` uint8 dataset labels (BraTS 0/1/2/4, LiTS 0/1/2), or None.
        border: `[*volume_shape]` bool border band, or None.
        meta: how the input grid maps to the model grid.
    """

    case_id: str
    image: np.ndarray
    raw_label: np.ndarray | None
    border: np.ndarray | None
    meta: GridMeta

    @property
    def label(self) -> np.ndarray | None:
        """Binary foreground `[*volume_shape]` uint8 (BraTS whole tumour, LiTS liver incl. tumour)."""
        return None if self.raw_label is None else (self.raw_label > 0).astype(np.uint8)


def load_case(case: CaseFiles, config: Any, cache_dir: str | Path | None = None, with_border: bool = True) -> Case:
    """Read `case` onto `config.volume_shape`, through the cache in `cache_dir` when given.

    `config` needs `dataset`, `volume_shape` and `in_channels`. The border band is read from
    `case.border` when present, else computed from the label (and cached); `with_border=False`
    skips it (no border needed for uniform sampling).
    """
    dataset = str(config.dataset)
    volume_shape = tuple(int(s) for s in config.volume_shape)
    if len(case.images) != int(config.in_channels):
        raise DatasetError(f"{case.case_id}: {len(case.images)} image file(s) but the model expects "
                           f"{config.in_channels} channel(s) ({case.images[0].parent})")
    want_border = with_border and case.label is not None
    if cache_dir is None:
        return _preprocess(case, dataset, volume_shape, want_border)
    key = cache_key(case, dataset, volume_shape)
    entry = Path(cache_dir) / f"{case.case_id}-{key[:16]}"
    cached = _read_entry(entry, key, want_border)
    if cached is not None:
        return cached
    loaded = _preprocess(case, dataset, volume_shape, want_border)
    _write_entry(entry, key, loaded)
    return _read_entry(entry, key, want_border) or loaded


def cache_key(case: CaseFiles, dataset: str, volume_shape: tuple[int, ...]) -> str:
    """Hash of the source files (path, size, mtime) and the preprocessing settings."""
    files = [p for p in (*case.images, case.label, case.border) if p is not None]
    stats = []
    for path in files:
        try:
            stat = path.stat()
        except OSError as error:
            raise DatasetError(f"{path}: cannot read file ({error.strerror})") from error
        stats.append([str(path.resolve()), stat.st_size, stat.st_mtime_ns])
    settings = {"version": CACHE_VERSION, "dataset": dataset, "volume_shape": list(volume_shape),
                "epsilon": ZSCORE_EPSILON, "files": stats, "has_label": case.label is not None,
                "has_border_file": case.border is not None}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def _preprocess(case: CaseFiles, dataset: str, volume_shape: tuple[int, ...], want_border: bool) -> Case:
    images = [read_image(path) for path in case.images]
    reference = (images[0].array.shape, images[0].affine, images[0].path)
    for volume in images[1:]:
        check_same_grid(reference, (volume.array.shape, volume.affine, volume.path))
    raw = None
    if case.label is not None:
        shape, affine, _ = read_header(case.label)
        check_same_grid(reference, (shape, affine, case.label))
        raw = read_label(case.label, dataset).array
    border = None
    if want_border and case.border is not None:
        border = read_border(case.border, raw.shape, images[0].affine, case.label)
    if dataset == "brats":
        meta = GridMeta.for_padding(images[0].affine, images[0].header, reference[0], volume_shape)
    elif dataset == "lits":
        meta = GridMeta.for_resampling(images[0].affine, images[0].header, reference[0], volume_shape)
    else:
        raise DatasetError(f"{case.case_id}: unknown dataset {dataset!r}")
    stacked = np.stack([zscore(volume.array) for volume in images])  # [C, *input_shape]
    image = np.ascontiguousarray(meta.to_model_grid(stacked, order=1), dtype=np.float32)
    model_label = None if raw is None else np.ascontiguousarray(meta.to_model_grid(raw, order=0))
    if want_border:
        # Computed on the input grid, like the border scripts, then carried to the model grid.
        border = compute_border(raw) if border is None else border
        border = np.ascontiguousarray(meta.to_model_grid(border, order=0))
    return Case(case.case_id, image, model_label, border, meta)


def zscore(array: np.ndarray) -> np.ndarray:
    """(x − mean) / (std + ε) over the whole volume, background included (as the paper); float32."""
    values = array.astype(np.float64, copy=False)
    mean, std = values.mean(), values.std()
    return ((values - mean) / (std + ZSCORE_EPSILON)).astype(np.float32)


def _write_entry(entry: Path, key: str, case: Case) -> None:
    entry.mkdir(parents=True, exist_ok=True)
    arrays = {"image": case.image, "raw_label": case.raw_label, "border": case.border}
    layout = {}
    for name, array in arrays.items():
        if array is None:
            continue
        with atomic_write(entry / f"{name}.npy") as handle:
            np.save(handle, array, allow_pickle=False)
        layout[name] = {"shape": list(array.shape), "dtype": str(array.dtype)}
    atomic_save_json({"key": key, "case_id": case.case_id, "arrays": layout, "meta": case.meta.to_dict()},
                     entry / "meta.json")


def _read_entry(entry: Path, key: str, want_border: bool) -> Case | None:
    """The cached case, or None when the entry is missing, stale, incomplete or corrupt."""
    meta_path = entry / "meta.json"
    if not meta_path.is_file():
        return None
    try:
        record = json.loads(meta_path.read_text())
        if record.get("key") != key or (want_border and "border" not in record["arrays"]):
            return None
        arrays = {}
        for name, expected in record["arrays"].items():
            array = np.load(entry / f"{name}.npy", mmap_mode="r", allow_pickle=False)
            if list(array.shape) != expected["shape"] or str(array.dtype) != expected["dtype"]:
                raise ValueError(f"{name}.npy has shape {array.shape} {array.dtype}, expected {expected}")
            arrays[name] = array
        return Case(record["case_id"], arrays["image"], arrays.get("raw_label"),
                    arrays.get("border") if want_border else None, GridMeta.from_dict(record["meta"]))
    except (OSError, ValueError, KeyError, TypeError, EOFError) as error:
        _log.warning("%s: cache entry unreadable (%s); rebuilding it", entry, error)
        return None
