"""Loading one case onto the model grid: read, check, normalise, reorient, pad or resample, and cache the result.

BraTS and LiTS follow the paper: per-modality z-score over the whole volume (with an epsilon, so a
constant image gives zeros instead of NaN; paper mode: the original's unbiased std without one), then BraTS is centre-padded to `config.volume_shape` (a
scan larger than the grid loses only background that is zero in every file, or is resampled when
even its content does not fit: never a silent crop) and LiTS resampled to it
(`oss_net.data.grid`; labels and border maps by centre-aligned nearest neighbour, or in paper mode by
torch's "nearest" as the original). Every other dataset is preprocessed as its fingerprint says
(`oss_net.data.fingerprint`, stored in `config.fingerprint`): reoriented to the closest canonical
frame, intensities normalised by modality (CT: clip and z-score with the training foreground's
statistics; MRI: z-score over non-zero voxels), then resampled to `config.volume_shape`. Channels are
read with `oss_net.data.channels.read_channels`, so 4-D Decathlon images work too. Every file of a
case is read and checked before anything is written.

The cache holds each preprocessed case as uncompressed ``.npy`` files opened memory-mapped, so an
epoch never decompresses NIfTI again. An entry's key hashes the source files' paths, sizes and
modification times together with the grid and intensity settings (the fingerprint included); an
entry whose key, shapes or dtypes do not match, or that cannot be read, is rebuilt. Files are written
atomically and ``meta.json`` last, so a half-written entry is never taken as valid. Entries for other
settings are kept side by side.
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

from oss_net.compat import DEFAULT_COMPAT, behaviour
from oss_net.data.borders import compute_border, read_border
from oss_net.data.case_files import CaseFiles
from oss_net.data.channels import read_channels, read_label_values
from oss_net.data.fingerprint import normalize_intensities
from oss_net.data.grid import GridMeta, closest_canonical, nonzero_bounds
from oss_net.data.nifti import Volume, check_same_grid, read_header, read_label
from oss_net.data.outliers import intensity_ranges
from oss_net.datasets import PAPER_DATASETS, DatasetError, Fingerprint
from oss_net.io import atomic_save_json, atomic_write

ZSCORE_EPSILON = 1e-6
ZSCORE_CHUNK = 2**18  # voxels z-scored at a time (2 MiB of float64)
CACHE_VERSION = 2  # 2: orientation, fingerprint preprocessing, no crop of large BraTS scans
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Case:
    """A case on the model grid.

    Attributes:
        image: `[C, *volume_shape]` float32, z-scored (a read-only memory map when it comes from the cache).
        raw_label: `[*volume_shape]` uint8 dataset labels (BraTS 0/1/2/4, LiTS 0/1/2), or None.
        border: `[*volume_shape]` bool border band, or None.
        meta: how the input grid maps to the model grid.
        input_ranges: per channel, the (0.5th, 99.5th) percentile of the input's raw intensities
            (`oss_net.data.outliers.intensity_ranges`), to compare with training; None from an older cache entry.
    """

    case_id: str
    image: np.ndarray
    raw_label: np.ndarray | None
    border: np.ndarray | None
    meta: GridMeta
    input_ranges: tuple[tuple[float, float], ...] | None = None

    @property
    def label(self) -> np.ndarray | None:
        """Binary foreground `[*volume_shape]` uint8 (BraTS whole tumour, LiTS liver incl. tumour)."""
        return None if self.raw_label is None else (self.raw_label > 0).astype(np.uint8)


def load_case(case: CaseFiles, config: Any, cache_dir: str | Path | None = None, with_border: bool = True) -> Case:
    """Read `case` onto `config.volume_shape`, through the cache in `cache_dir` when given.

    `config` needs `dataset`, `volume_shape` and `in_channels`, and for datasets other than BraTS and
    LiTS a `fingerprint`. The border band is read from `case.border` when present, else computed from
    the label (and cached); `with_border=False` skips it (no border needed for uniform sampling).
    """
    dataset = str(config.dataset)
    volume_shape = tuple(int(s) for s in config.volume_shape)
    fingerprint = case_fingerprint(config)
    rules = preprocessing_rules(config)
    if len(case.images) != int(config.in_channels):
        raise DatasetError(f"{case.case_id}: {len(case.images)} image file(s) but the model expects "
                           f"{config.in_channels} channel(s) ({case.images[0].parent})")
    want_border = with_border and case.label is not None
    if cache_dir is None:
        return _preprocess(case, dataset, volume_shape, fingerprint, want_border, rules)
    key = cache_key(case, dataset, volume_shape, fingerprint, rules)
    entry = Path(cache_dir) / f"{case.case_id}-{key[:16]}"
    cached = _read_entry(entry, key, want_border)
    if cached is not None:
        return cached
    loaded = _preprocess(case, dataset, volume_shape, fingerprint, want_border, rules)
    _write_entry(entry, key, loaded)
    return _read_entry(entry, key, want_border) or loaded


def preprocessing_rules(config: Any) -> dict[str, str]:
    """The z-score and label-resampling rules of `config`'s compat mode (`oss_net.compat`; a configuration
    without one, a U-Net's, takes ours)."""
    flags = behaviour(getattr(config, "compat", DEFAULT_COMPAT))
    return {"zscore": flags.zscore, "label_resampling": flags.label_resampling}


def case_fingerprint(config: Any) -> Fingerprint | None:
    """The fingerprint that preprocesses `config.dataset`: None for BraTS and LiTS, required for the others."""
    fingerprint = getattr(config, "fingerprint", None)
    if str(config.dataset) in PAPER_DATASETS:
        return None
    if fingerprint is None:
        raise DatasetError(f"{config.dataset}: the model configuration has no dataset fingerprint, which decides "
                           "the preprocessing of this dataset (train it with this package to get one)")
    return fingerprint


def cache_key(case: CaseFiles, dataset: str, volume_shape: tuple[int, ...], fingerprint: Fingerprint | None = None,
              rules: dict[str, str] | None = None) -> str:
    """Hash of the source files (path, size, mtime) and the preprocessing settings (the fingerprint and the
    `preprocessing_rules` included; None: ours)."""
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
                "has_border_file": case.border is not None,
                "fingerprint": None if fingerprint is None else fingerprint.to_dict(),
                "rules": rules or preprocessing_rules(None)}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def _preprocess(case: CaseFiles, dataset: str, volume_shape: tuple[int, ...], fingerprint: Fingerprint | None,
                want_border: bool, rules: dict[str, str]) -> Case:
    images = read_channels(case)
    reference = (images[0].array.shape, images[0].affine, images[0].path)
    for volume in images[1:]:
        check_same_grid(reference, (volume.array.shape, volume.affine, volume.path))
    raw = None
    if case.label is not None:
        shape, affine, _ = read_header(case.label)
        check_same_grid(reference, (shape, affine, case.label))
        raw = (read_label(case.label, dataset) if fingerprint is None
               else read_label_values(case.label, frozenset(fingerprint.label_values))).array
    border = None
    if want_border and case.border is not None:
        border = read_border(case.border, raw.shape, images[0].affine, case.label)
    return on_model_grid(case.case_id, images, raw, border if want_border else None, want_border, dataset,
                         volume_shape, fingerprint, rules)


def case_from_volumes(case_id: str, images: list[Volume], config: Any) -> Case:
    """A case whose channels were read already (an image given in memory, `oss_net.Segmenter`), one checked
    `Volume` per channel on one grid, preprocessed onto the model grid as `load_case` does (no label)."""
    if len(images) != int(config.in_channels):
        raise DatasetError(f"{case_id}: {len(images)} channel(s) given but the model expects {config.in_channels}")
    reference = (images[0].array.shape, images[0].affine, images[0].path)
    for volume in images[1:]:
        check_same_grid(reference, (volume.array.shape, volume.affine, volume.path))
    return on_model_grid(case_id, list(images), None, None, False, str(config.dataset),
                         tuple(int(s) for s in config.volume_shape), case_fingerprint(config),
                         preprocessing_rules(config))


def on_model_grid(case_id: str, images: list[Volume], raw: np.ndarray | None, border: np.ndarray | None,
                  want_border: bool, dataset: str, volume_shape: tuple[int, ...], fingerprint: Fingerprint | None,
                  rules: dict[str, str]) -> Case:
    """Channels `images` (and the label `raw`, the border map `border` [*input_shape]) normalised and carried onto
    the model grid: the preprocessing of the module docstring. Empties `images` once they are stacked."""
    input_shape = images[0].array.shape
    affine, header = images[0].affine, images[0].header
    if fingerprint is not None:
        meta = GridMeta.for_resampling(affine, header, input_shape, volume_shape, orientation=closest_canonical(affine))
        stacked = normalize_intensities(np.stack([volume.array for volume in images]), fingerprint)
    elif dataset in ("brats", "lits"):
        too_large = any(i > v for i, v in zip(input_shape, volume_shape))
        content = nonzero_bounds([v.array for v in images] + ([] if raw is None else [raw])) if too_large else None
        meta = (GridMeta.for_padding(affine, header, input_shape, volume_shape, source=case_id, content=content)
                if dataset == "brats" else GridMeta.for_resampling(affine, header, input_shape, volume_shape))
        # Statistics over the voxels that reach the model grid: the whole scan, unless empty background was cropped.
        stacked = np.stack([zscore(volume.array, meta.input_window, rules["zscore"], path=volume.path)
                            for volume in images])  # [C, *input_shape]
    else:
        raise DatasetError(f"{case_id}: unknown dataset {dataset!r}")
    ranges = intensity_ranges([volume.array for volume in images])
    images.clear()  # the caller's list too: the input volumes are freed before the resampling
    image = np.ascontiguousarray(meta.to_model_grid(stacked, order=1), dtype=np.float32)
    nearest = rules["label_resampling"]
    model_label = None if raw is None else np.ascontiguousarray(meta.to_model_grid(raw, order=0, nearest=nearest))
    if want_border:
        # Computed on the input grid, like the border scripts, then carried to the model grid.
        border = compute_border(raw) if border is None else border
        border = np.ascontiguousarray(meta.to_model_grid(border, order=0, nearest=nearest))
    return Case(case_id, image, model_label, border, meta, ranges)


ZSCORE_RULES = ("ours", "original")


def zscore(array: np.ndarray, window: tuple[slice, ...] | None = None, rule: str = "ours",
           path: Any = "image") -> np.ndarray:
    """(x − mean) / (std + ε), the statistics over the whole volume (or its `window`), background included
    (as the paper); float32. rule "original" (paper mode): (x − mean) / std with the unbiased std and no ε, as
    the original (docs/reference.md §6.1); a constant image then has no z-score and is a DatasetError naming
    `path`."""
    if rule not in ZSCORE_RULES:
        raise ValueError(f"unknown z-score rule {rule!r}; expected one of {', '.join(ZSCORE_RULES)}")
    region = array if window is None else array[window]
    mean = float(region.mean(dtype=np.float64))
    if rule == "ours":
        scale = float(region.std(dtype=np.float64)) + ZSCORE_EPSILON
    else:
        scale = float(region.std(dtype=np.float64, ddof=1)) if region.size > 1 else 0.0
        if not scale > 0:
            raise DatasetError(f"{path}: the image is constant (std 0), so the original's z-score (paper mode: "
                               "unbiased std, no epsilon) is undefined")
    out = np.empty_like(array, dtype=np.float32)  # the input's memory order (NIfTI voxels are Fortran-ordered)
    source, target = array.ravel(order="K"), out.ravel(order="K")  # views, in the same order, for either layout
    for start in range(0, source.size, ZSCORE_CHUNK):  # float64 maths a chunk at a time: no full-size float64 copy
        target[start:start + ZSCORE_CHUNK] = (source[start:start + ZSCORE_CHUNK].astype(np.float64) - mean) / scale
    return out


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
    atomic_save_json({"key": key, "case_id": case.case_id, "arrays": layout, "meta": case.meta.to_dict(),
                      "input_ranges": case.input_ranges}, entry / "meta.json")


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
        ranges = record.get("input_ranges")
        return Case(record["case_id"], arrays["image"], arrays.get("raw_label"),
                    arrays.get("border") if want_border else None, GridMeta.from_dict(record["meta"]),
                    None if ranges is None else tuple((float(low), float(high)) for low, high in ranges))
    except (OSError, ValueError, KeyError, TypeError, EOFError) as error:
        _log.warning("%s: cache entry unreadable (%s); rebuilding it", entry, error)
        return None
