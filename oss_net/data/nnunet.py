"""nnU-Net v2 raw datasets and Medical Segmentation Decathlon tasks, both described by a ``dataset.json``.

nnU-Net v2::

    DatasetXXX_Name/dataset.json         channel_names, labels (values or region lists), numTraining, file_ending
    DatasetXXX_Name/imagesTr/<case>_0000.nii.gz, <case>_0001.nii.gz, ...   one 3-D file per channel
    DatasetXXX_Name/labelsTr/<case>.nii.gz
    DatasetXXX_Name/imagesTs/<case>_0000.nii.gz, ...                       unlabelled

Decathlon::

    TaskXX_Name/dataset.json             modality, labels ({"0": "background", ...}), training, test[, numTraining]
    TaskXX_Name/imagesTr/<case>.nii.gz   4-D (last axis = channel) when the task has several modalities
    TaskXX_Name/labelsTr/<case>.nii.gz
    TaskXX_Name/imagesTs/<case>.nii.gz

A Decathlon case lists its 4-D file once per channel in `CaseFiles.images` (see `oss_net.data.channels`).
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from oss_net.data.dataset_info import DatasetInfo, parse_labels
from oss_net.data.errors import DatasetError
from oss_net.data.layout import CaseFiles
from oss_net.data.scan import LayoutScan, Problem, border_path, make_scan, nifti_files

DATASET_JSON = "dataset.json"
NNUNET_FIELDS = ("channel_names", "labels", "numTraining", "file_ending")
MSD_FIELDS = ("modality", "labels", "training")
MSD_FILE_ENDING = ".nii.gz"


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


def read_nnunet_info(root: Path) -> DatasetInfo:
    """The DatasetInfo of an nnU-Net v2 raw dataset; every missing or malformed field in one DatasetError."""
    path, record = read_dataset_json(root, NNUNET_FIELDS)
    return DatasetInfo(root.name, _indexed_names(record["channel_names"], "channel_names", path),
                       parse_labels(record["labels"], str(path)), str(record["file_ending"]),
                       _count(record["numTraining"], "numTraining", path))


def read_msd_info(root: Path) -> DatasetInfo:
    """The DatasetInfo of a Decathlon task: channels from `modality`, labels from {"value": "name"}."""
    path, record = read_dataset_json(root, MSD_FIELDS)
    labels = record["labels"]
    if not isinstance(labels, dict) or not all(str(k).isdigit() for k in labels):
        raise DatasetError(f"{path}: 'labels' must map label values to names, got {labels!r}")
    training = record["training"]
    if not isinstance(training, list):
        raise DatasetError(f"{path}: 'training' must be a list of {{'image', 'label'}} entries")
    declared = _count(record["numTraining"], "numTraining", path) if "numTraining" in record else len(training)
    return DatasetInfo(str(record.get("name", root.name)), _indexed_names(record["modality"], "modality", path),
                       parse_labels({str(name): int(value) for value, name in labels.items()}, str(path)),
                       MSD_FILE_ENDING, declared)


def scan_nnunet(root: Path, border_dir: str | Path | None = None, check_grids: bool = True) -> LayoutScan:
    """Every case of an nnU-Net v2 raw dataset and every problem found (grids from headers when `check_grids`)."""
    info = read_nnunet_info(root)
    problems: list[Problem] = []
    training = _channel_cases(root / "imagesTr", info, problems)
    test = _channel_cases(root / "imagesTs", info, problems)
    labels, others = nifti_files(root / "labelsTr", info.file_ending)
    problems += [Problem("*", f"{p}: unexpected entry in labelsTr (expected <case>{info.file_ending})") for p in others]
    label_of = {p.name[: -len(info.file_ending)]: p for p in labels}
    for case_id, label in label_of.items():
        if case_id not in training:
            problems.append(Problem(case_id, f"{label}: label without images (no {case_id}_0000{info.file_ending} "
                                             f"in {root / 'imagesTr'})"))
    if info.num_training != len(training):
        problems.append(Problem("*", f"{root / DATASET_JSON}: numTraining is {info.num_training} but "
                                     f"{root / 'imagesTr'} holds {len(training)} case(s)"))
    labelled = []
    for case_id, images in training.items():
        if images is None:
            continue
        if case_id not in label_of:
            problems.append(Problem(case_id, f"{root / 'labelsTr' / (case_id + info.file_ending)}: label file missing"))
            continue
        labelled.append(CaseFiles(case_id, images, label_of[case_id],
                                  border_path(root, case_id, border_dir)))
    unlabelled = [CaseFiles(case_id, images, None, None) for case_id, images in test.items() if images is not None]
    return make_scan(info, labelled, unlabelled, problems, check_grids)


def scan_msd(root: Path, border_dir: str | Path | None = None, check_grids: bool = True) -> LayoutScan:
    """Every case of a Decathlon task listed by its dataset.json, and every problem found."""
    info = read_msd_info(root)
    path = root / DATASET_JSON
    record = read_json(path)
    problems: list[Problem] = []
    channels = info.num_channels
    labelled, listed = [], set()
    for number, entry in enumerate(record["training"]):
        if not isinstance(entry, dict) or not {"image", "label"} <= set(entry):
            problems.append(Problem("*", f"{path}: training entry {number} needs 'image' and 'label', got {entry!r}"))
            continue
        image, label = root / entry["image"], root / entry["label"]
        case_id = _msd_case_id(image)
        listed.update({image.name, label.name})
        missing = [p for p in (image, label) if not p.is_file()]
        problems += [Problem(case_id, f"{p}: listed in {path.name} 'training' but missing") for p in missing]
        if not missing:
            labelled.append(CaseFiles(case_id, (image,) * channels, label,
                                      border_path(root, case_id, border_dir)))
    if info.num_training != len(record["training"]):
        problems.append(Problem("*", f"{path}: numTraining is {info.num_training} but 'training' lists "
                                     f"{len(record['training'])} case(s)"))
    images, stray_images = nifti_files(root / "imagesTr", MSD_FILE_ENDING)
    image_names = {p.name for p in images}
    labels, stray_labels = nifti_files(root / "labelsTr", MSD_FILE_ENDING)
    problems += [Problem(_msd_case_id(p), f"{p}: label without image (no {p.name} in {root / 'imagesTr'})")
                 for p in labels if p.name not in image_names]
    problems += [Problem(_msd_case_id(p), f"{p}: not listed in {path.name} 'training'")
                 for p in images if p.name not in listed]
    problems += [Problem("*", f"{p}: unexpected entry (expected <case>{MSD_FILE_ENDING})")
                 for p in stray_images + stray_labels]
    unlabelled = []
    for entry in record.get("test", []):
        image = root / (entry["image"] if isinstance(entry, dict) else str(entry))
        if image.is_file():
            unlabelled.append(CaseFiles(_msd_case_id(image), (image,) * channels, None, None))
        else:
            problems.append(Problem(_msd_case_id(image), f"{image}: listed in {path.name} 'test' but missing"))
    return make_scan(info, labelled, unlabelled, problems, check_grids)


def _channel_cases(folder: Path, info: DatasetInfo, problems: list[Problem]) -> dict[str, tuple[Path, ...] | None]:
    """Case id -> channel files in order (None when a channel is missing or extra) for ``<case>_XXXX<ending>`` files."""
    pattern = re.compile(rf"^(?P<case>.+)_(?P<channel>\d{{4}}){re.escape(info.file_ending)}$")
    files, others = nifti_files(folder, info.file_ending)
    problems += [Problem("*", f"{p}: unexpected entry in {folder.name} (expected <case>_XXXX{info.file_ending})")
                 for p in others]
    found: dict[str, dict[int, Path]] = {}
    for path in files:
        match = pattern.match(path.name)
        if match is None:
            problems.append(Problem("*", f"{path}: name is not <case>_XXXX{info.file_ending}"))
            continue
        found.setdefault(match["case"], {})[int(match["channel"])] = path
    cases: dict[str, tuple[Path, ...] | None] = {}
    for case_id, channels in found.items():
        extra = sorted(c for c in channels if c >= info.num_channels)
        problems += [Problem(case_id, f"{channels[c]}: channel {c} but {DATASET_JSON} names "
                                      f"{info.num_channels} channel(s)") for c in extra]
        missing = [c for c in range(info.num_channels) if c not in channels]
        problems += [Problem(case_id, f"{folder / f'{case_id}_{c:04d}{info.file_ending}'}: missing channel {c} "
                                      f"({info.channel_names[c]!r}) of case {case_id}") for c in missing]
        cases[case_id] = None if extra or missing else tuple(channels[c] for c in range(info.num_channels))
    return cases


def _indexed_names(mapping: Any, field: str, path: Path) -> tuple[str, ...]:
    """{"0": name, "1": name, ...} as names in index order; the indices must be 0..n-1."""
    if not isinstance(mapping, dict) or not mapping or not all(str(k).isdigit() for k in mapping):
        raise DatasetError(f"{path}: {field!r} must map channel indices 0..n-1 to names, got {mapping!r}")
    indices = sorted(int(k) for k in mapping)
    if indices != list(range(len(indices))):
        raise DatasetError(f"{path}: {field!r} indices must be 0..{len(indices) - 1}, got {indices}")
    by_index = {int(k): str(v) for k, v in mapping.items()}
    return tuple(by_index[i] for i in indices)


def _count(value: Any, field: str, path: Path) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise DatasetError(f"{path}: {field!r} must be a non-negative integer, got {value!r}")
    return value


def _msd_case_id(path: Path) -> str:
    return path.name[: -len(MSD_FILE_ENDING)] if path.name.endswith(MSD_FILE_ENDING) else path.name.split(".")[0]
