"""Reading the ``dataset.json`` that describes an nnU-Net v2 raw dataset or a Medical Segmentation Decathlon task."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from oss_net.datasets import DatasetError

DATASET_JSON = "dataset.json"


def read_json(path: Path) -> dict[str, Any]:
    """A dataset.json as a dict; DatasetError naming the file when it is missing or not a JSON object."""
    if not path.is_file():
        raise DatasetError(f"{path}: dataset.json not found")
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise DatasetError(f"{path}: not a readable JSON file ({error})") from error
    if not isinstance(record, dict):
        raise DatasetError(f"{path}: expected a JSON object")
    return record


def read_dataset_json(root: Path, fields: tuple[str, ...]) -> tuple[Path, dict]:
    """`root`'s dataset.json and its path; every missing field of `fields` named in one DatasetError."""
    path = root / DATASET_JSON
    record = read_json(path)
    missing = [name for name in fields if name not in record]
    if missing:
        raise DatasetError(f"{path}: missing field(s) {', '.join(repr(m) for m in missing)}")
    return path, record


def dataset_json_layout(root: Path) -> str | None:
    """"nnunet" or "msd" for the kind of dataset.json in `root` (channel_names or modality), None without one.

    A dataset.json decides the layout before any folder name does, so one of neither kind is an error.
    """
    if not (root / DATASET_JSON).is_file():
        return None
    record = read_json(root / DATASET_JSON)
    if "channel_names" in record:
        return "nnunet"
    if "modality" in record:
        return "msd"
    raise DatasetError(f"{root / DATASET_JSON}: has neither 'channel_names' (nnU-Net v2) nor 'modality' "
                       "(Decathlon); pass --dataset")


def indexed_names(mapping: Any, field: str, path: Path) -> tuple[str, ...]:
    """{"0": name, "1": name, ...} as names in index order; the indices must be 0..n-1."""
    if not isinstance(mapping, dict) or not mapping or not all(str(k).isdigit() for k in mapping):
        raise DatasetError(f"{path}: {field!r} must map channel indices 0..n-1 to names, got {mapping!r}")
    indices = sorted(int(k) for k in mapping)
    if indices != list(range(len(indices))):
        raise DatasetError(f"{path}: {field!r} indices must be 0..{len(indices) - 1}, got {indices}")
    by_index = {int(k): str(v) for k, v in mapping.items()}
    return tuple(by_index[i] for i in indices)


def non_negative_count(value: Any, field: str, path: Path) -> int:
    """A dataset.json's count field (numTraining), which must be a non-negative integer."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise DatasetError(f"{path}: {field!r} must be a non-negative integer, got {value!r}")
    return value
