"""nnU-Net v2 raw datasets, described by their ``dataset.json``, in any of the image formats read here
(``file_ending`` .nii.gz, .nii, .nrrd, .nhdr, .mha or .mhd; `oss_net.io.IMAGE_SUFFIXES`)::

    DatasetXXX_Name/dataset.json         channel_names, labels (values or region lists), numTraining, file_ending
                                         [, regions_class_order: the value each region writes in a label map]
    DatasetXXX_Name/imagesTr/<case>_0000.nii.gz, <case>_0001.nii.gz, ...   one 3-D file per channel
    DatasetXXX_Name/labelsTr/<case>.nii.gz
    DatasetXXX_Name/imagesTs/<case>_0000.nii.gz, ...                       unlabelled
"""
from __future__ import annotations

import re
from pathlib import Path

from oss_net.data.case_files import CaseFiles, LayoutScan, Problem
from oss_net.data.dataset_info import DatasetInfo, parse_labels, parse_regions_class_order
from oss_net.data.layouts.common import border_path, image_files, make_scan, scanned_layout
from oss_net.data.layouts.dataset_json import (DATASET_JSON, dataset_json_layout, indexed_names, non_negative_count,
                                               read_dataset_json)
from oss_net.datasets import DatasetError
from oss_net.io import IMAGE_SUFFIXES

NNUNET_FIELDS = ("channel_names", "labels", "numTraining", "file_ending")


def read_nnunet_info(root: Path) -> DatasetInfo:
    """The DatasetInfo of an nnU-Net v2 raw dataset; every missing or malformed field in one DatasetError."""
    path, record = read_dataset_json(root, NNUNET_FIELDS)
    labels = parse_labels(record["labels"], str(path))
    order = parse_regions_class_order(record["regions_class_order"], labels, str(path)) \
        if "regions_class_order" in record else ()
    file_ending = str(record["file_ending"])
    if file_ending.lower() not in IMAGE_SUFFIXES:
        raise DatasetError(f"{path}: file_ending {file_ending!r} is not a 3-D image format read here; use one of "
                           f"{', '.join(IMAGE_SUFFIXES)}")
    return DatasetInfo(root.name, indexed_names(record["channel_names"], "channel_names", path), labels,
                       file_ending, non_negative_count(record["numTraining"], "numTraining", path), order)


def scan_nnunet(root: Path, border_dir: str | Path | None = None, check_grids: bool = True) -> LayoutScan:
    """Every case of an nnU-Net v2 raw dataset and every problem found (grids from headers when `check_grids`)."""
    info = read_nnunet_info(root)
    problems: list[Problem] = []
    training = _channel_cases(root / "imagesTr", info, problems)
    test = _channel_cases(root / "imagesTs", info, problems)
    labels, others = image_files(root / "labelsTr", info.file_ending)
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


def _channel_cases(folder: Path, info: DatasetInfo, problems: list[Problem]) -> dict[str, tuple[Path, ...] | None]:
    """Case id -> channel files in order (None when a channel is missing or extra) for ``<case>_XXXX<ending>`` files."""
    pattern = re.compile(rf"^(?P<case>.+)_(?P<channel>\d{{4}}){re.escape(info.file_ending)}$")
    files, others = image_files(folder, info.file_ending)
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


NNUNET = scanned_layout("nnunet", scan_nnunet, lambda root: dataset_json_layout(root) == "nnunet")
