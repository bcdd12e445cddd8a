"""FLARE21 (abdominal organs in CT) as distributed: no dataset.json, fixed folders and names::

    <root>/TrainingImg/train_000_0000.nii.gz      one CT channel
    <root>/TrainingMask/train_000.nii.gz          liver 1, kidney 2, spleen 3, pancreas 4
    <root>/ValidationImg/validation_000_0000.nii.gz   unlabelled (the "test" split)

Other folders (e.g. a ``TrainingImg_small`` written by other pipelines) are ignored.
"""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from oss_net.data.case_files import CaseFiles, LayoutScan, Problem
from oss_net.data.dataset_info import FLARE_INFO
from oss_net.data.layouts.common import border_path, image_files, make_scan, scanned_layout

FLARE_IMAGES = "TrainingImg"
FLARE_MASKS = "TrainingMask"
FLARE_TEST = "ValidationImg"
_CHANNEL_FILE = re.compile(r"^(?P<case>.+)_0000\.nii\.gz$")


def scan_flare(root: Path, border_dir: str | Path | None = None, check_grids: bool = True) -> LayoutScan:
    """Every FLARE21 case and every problem found (an image without mask, a mask without image, a stray file)."""
    problems: list[Problem] = []
    images = _images(root / FLARE_IMAGES, problems)
    masks, others = image_files(root / FLARE_MASKS, FLARE_INFO.file_ending)
    problems += [Problem("*", f"{p}: unexpected entry in {FLARE_MASKS}") for p in others]
    mask_of = {p.name[: -len(FLARE_INFO.file_ending)]: p for p in masks}
    problems += [Problem(case_id, f"{mask}: label without image (no {case_id}_0000.nii.gz in {root / FLARE_IMAGES})")
                 for case_id, mask in mask_of.items() if case_id not in images]
    labelled = []
    for case_id, image in images.items():
        if case_id not in mask_of:
            problems.append(Problem(case_id, f"{root / FLARE_MASKS / (case_id + '.nii.gz')}: label file missing"))
            continue
        labelled.append(CaseFiles(case_id, (image,), mask_of[case_id],
                                  border_path(root, case_id, border_dir)))
    unlabelled = [CaseFiles(case_id, (image,), None, None)
                  for case_id, image in _images(root / FLARE_TEST, problems).items()]
    info = dataclasses.replace(FLARE_INFO, num_training=len(images))
    return make_scan(info, labelled, unlabelled, problems, check_grids)


def _images(folder: Path, problems: list[Problem]) -> dict[str, Path]:
    """Case id -> the ``<case>_0000.nii.gz`` file of each case in `folder` (a CT scan has one channel)."""
    files, others = image_files(folder, FLARE_INFO.file_ending)
    problems += [Problem("*", f"{p}: unexpected entry in {folder.name}") for p in others]
    images = {}
    for path in files:
        match = _CHANNEL_FILE.match(path.name)
        if match is None:
            problems.append(Problem("*", f"{path}: name is not <case>_0000.nii.gz (FLARE21 scans have one CT channel)"))
            continue
        images[match["case"]] = path
    return images


FLARE = scanned_layout("flare", scan_flare, lambda root: (root / FLARE_IMAGES).is_dir())
