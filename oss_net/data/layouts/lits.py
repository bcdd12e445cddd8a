"""LiTS as distributed or in the original's folders, volumes paired with their segmentations by case number::

    <root>/**/volume-N.nii  +  <root>/**/segmentation-N.nii          (as distributed, paired by N)
    <root>/{TrainingData,TestData}/{input,segmentation,border}/       (the original's layout)

Border maps are ``border-N.nii.gz`` next to the segmentation (or in the sibling ``border/`` folder).
"""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Iterable

from oss_net.data.case_files import CaseFiles, Layout
from oss_net.data.dataset_info import LITS_INFO, DatasetInfo
from oss_net.data.layouts.common import NIFTI_NAME, border_file_name, existing_folder
from oss_net.data.splits import check_split, select_split
from oss_net.datasets import DatasetError

_NUMBER = re.compile(r"(\d+)(?!.*\d)")


def discover_lits(root: str | Path, split: str = "train", split_file: str | Path | None = None,
                  border_dir: str | Path | None = None, seed: int = 0) -> list[CaseFiles]:
    """LiTS cases of one split, sorted by case number.

    In the original's layout ``TrainingData/`` is the training and ``TestData/`` the validation split;
    otherwise `split_file` or a deterministic seeded split holding out 20/131 of the cases (at least one).
    """
    root = existing_folder(root)
    check_split(split)
    if split == "test":
        raise DatasetError(f"{root}: LiTS has no unlabelled split here; use train, val or all")
    if (root / "TrainingData" / "input").is_dir() and split_file is None:
        training = _lits_original_cases(root / "TrainingData", border_dir)
        held_out = _lits_original_cases(root / "TestData", border_dir) if (root / "TestData").is_dir() else []
        return {"train": training, "val": held_out, "all": sorted(training + held_out, key=_lits_order)}[split]
    return select_split(_lits_distributed_cases(root, border_dir), split, split_file, "lits", seed)


def read_lits_volume(path: Path, border_dir: str | Path | None = None) -> CaseFiles:
    """One LiTS case given by its volume file ``volume-N.nii``, with its segmentation when one lies beside it."""
    if not path.is_file():
        raise DatasetError(f"{path}: expected a LiTS volume file (volume-N.nii)")
    number = _case_number(path)
    folders = [path.parent] + ([path.parent.parent / "segmentation"] if path.parent.name == "input" else [])
    candidates = [folder / f"segmentation-{number}{suffix}" for folder in folders for suffix in (".nii", ".nii.gz")]
    label = next((c for c in candidates if c.is_file()), None)
    return CaseFiles(f"lits-{number}", (path,), label, _lits_border(label, number, border_dir))


def detect_lits(root: Path) -> bool:
    """The original's ``TrainingData/input`` folder, or ``volume-N`` files anywhere below `root`."""
    return (root / "TrainingData" / "input").is_dir() or any(root.rglob("volume-*.nii*"))


def lits_info(root: Path) -> DatasetInfo:
    """LiTS's fixed description with its labelled cases counted."""
    return dataclasses.replace(LITS_INFO, num_training=len(discover_lits(root, "all")))


def _lits_distributed_cases(root: Path, border_dir: str | Path | None) -> list[CaseFiles]:
    """Pair ``volume-N`` with ``segmentation-N`` anywhere under `root` by N."""
    volumes = _by_number(root.rglob("volume-*.nii*"))
    labels = _by_number(root.rglob("segmentation-*.nii*"))
    return _pair_lits(volumes, labels, root, border_dir)


def _lits_original_cases(folder: Path, border_dir: str | Path | None) -> list[CaseFiles]:
    """The original's ``input/`` + ``segmentation/`` folders, paired by the number in each name."""
    volumes = _by_number((folder / "input").glob("*.nii*"))
    labels = _by_number((folder / "segmentation").glob("*.nii*")) if (folder / "segmentation").is_dir() else {}
    return _pair_lits(volumes, labels, folder, border_dir)


def _pair_lits(volumes: dict[int, list[Path]], labels: dict[int, list[Path]], root: Path,
               border_dir: str | Path | None) -> list[CaseFiles]:
    problems = [f"duplicate files for case {n}: {[str(p) for p in paths]}"
                for group in (volumes, labels) for n, paths in group.items() if len(paths) > 1]
    problems += [f"{labels[n][0]}: no matching volume-{n} file" for n in sorted(set(labels) - set(volumes))]
    problems += [f"{volumes[n][0]}: no matching segmentation-{n} file" for n in sorted(set(volumes) - set(labels))]
    if problems:
        raise DatasetError(f"{root}: " + "\n".join(problems))
    if not volumes:
        raise DatasetError(f"{root}: no LiTS volume-N.nii files found")
    cases = []
    for number in sorted(volumes):
        label = labels[number][0]
        cases.append(CaseFiles(f"lits-{number}", (volumes[number][0],), label, _lits_border(label, number, border_dir)))
    return cases


def _lits_border(label: Path | None, number: int, border_dir: str | Path | None) -> Path | None:
    if label is None:
        return None
    name = border_file_name(f"lits-{number}", "lits")
    folder = Path(border_dir) if border_dir is not None else label.parent
    candidates = [folder / name]
    if border_dir is None and label.parent.name == "segmentation":
        candidates.insert(0, label.parent.parent / "border" / name)
    return next((c for c in candidates if c.is_file()), None)


def _by_number(paths: Iterable[Path]) -> dict[int, list[Path]]:
    grouped: dict[int, list[Path]] = {}
    for path in sorted(paths):
        if path.name.startswith(".") or NIFTI_NAME.match(path.name) is None:
            continue
        grouped.setdefault(_case_number(path), []).append(path)
    return grouped


def _case_number(path: Path) -> int:
    match = _NUMBER.search(NIFTI_NAME.match(path.name).group("stem") if NIFTI_NAME.match(path.name) else path.name)
    if match is None:
        raise DatasetError(f"{path}: no case number in the file name")
    return int(match.group(1))


def _lits_order(case: CaseFiles) -> int:
    return int(case.case_id.removeprefix("lits-"))


LITS = Layout(
    "lits", detect_lits,
    lambda root, split, split_file, border_dir, seed, fold: discover_lits(root, split, split_file, border_dir, seed),
    lits_info, read_case=read_lits_volume)
