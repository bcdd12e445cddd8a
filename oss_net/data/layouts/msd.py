"""Medical Segmentation Decathlon tasks, described by their ``dataset.json``::

    TaskXX_Name/dataset.json             modality, labels ({"0": "background", ...}), training, test[, numTraining]
    TaskXX_Name/imagesTr/<case>.nii.gz   4-D (last axis = channel) when the task has several modalities
    TaskXX_Name/labelsTr/<case>.nii.gz
    TaskXX_Name/imagesTs/<case>.nii.gz

A Decathlon case lists its 4-D file once per channel in `CaseFiles.images` (see `oss_net.data.channels`).
"""
from __future__ import annotations

from pathlib import Path

from oss_net.data.case_files import CaseFiles, LayoutScan, Problem
from oss_net.data.dataset_info import DatasetInfo, parse_labels
from oss_net.data.layouts.common import border_path, image_files, make_scan, scanned_layout
from oss_net.data.layouts.dataset_json import (DATASET_JSON, dataset_json_layout, indexed_names, non_negative_count,
                                               read_dataset_json, read_json)
from oss_net.datasets import DatasetError

MSD_FIELDS = ("modality", "labels", "training")
MSD_FILE_ENDING = ".nii.gz"


def read_msd_info(root: Path) -> DatasetInfo:
    """The DatasetInfo of a Decathlon task: channels from `modality`, labels from {"value": "name"}."""
    path, record = read_dataset_json(root, MSD_FIELDS)
    labels = record["labels"]
    if not isinstance(labels, dict) or not all(str(k).isdigit() for k in labels):
        raise DatasetError(f"{path}: 'labels' must map label values to names, got {labels!r}")
    training = record["training"]
    if not isinstance(training, list):
        raise DatasetError(f"{path}: 'training' must be a list of {{'image', 'label'}} entries")
    declared = non_negative_count(record["numTraining"], "numTraining", path) if "numTraining" in record else len(training)
    return DatasetInfo(str(record.get("name", root.name)), indexed_names(record["modality"], "modality", path),
                       parse_labels({str(name): int(value) for value, name in labels.items()}, str(path)),
                       MSD_FILE_ENDING, declared)


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
    images, stray_images = image_files(root / "imagesTr", MSD_FILE_ENDING)
    image_names = {p.name for p in images}
    labels, stray_labels = image_files(root / "labelsTr", MSD_FILE_ENDING)
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


def _msd_case_id(path: Path) -> str:
    return path.name[: -len(MSD_FILE_ENDING)] if path.name.endswith(MSD_FILE_ENDING) else path.name.split(".")[0]


MSD = scanned_layout("msd", scan_msd, lambda root: dataset_json_layout(root) == "msd")
