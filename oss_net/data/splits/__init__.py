"""How the cases of a dataset are split into training and validation, and the original's fixed splits.

In order of precedence: a split file given by the user (lines "<case_id> train|val", `read_split_file`);
nnU-Net's ``splits_final.json`` (one fold, nnunet/msd/flare only, `split_assignment`); the original's
fixed list (BraTS 2020, shipped as package data); otherwise a seeded split (`default_split`).

BraTS 2020: the original trained on a fixed list of 324 cases and validated on the other 45
(docs/reference.md §6.1). `original_split` gives that assignment whenever every case of the list
is present, so a full BraTS 2020 training set is split exactly as the paper's; a dataset missing any
of them (a subset, the synthetic demo data) keeps the seeded split. LiTS has no such list: the
original's TrainingData/TestData folders are its split.
"""
from __future__ import annotations

import functools
import json
from importlib import resources
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from oss_net.data.case_files import CaseFiles
from oss_net.datasets import DatasetError

SPLITS = ("train", "val", "all", "test")  # "all" = train + val (labelled); "test" = unlabelled cases
# The original held out 45 of 369 BraTS and 20 of 131 LiTS training cases; the default split keeps these fractions.
# nnU-Net, Decathlon and FLARE21 hold out one case in five, like one fold of nnU-Net's 5-fold cross-validation.
VALIDATION_FRACTION = {"brats": 45 / 369, "lits": 20 / 131, "nnunet": 0.2, "msd": 0.2, "flare": 0.2}
ORIGINAL_SPLIT_FILES = {"brats": "brats2020_original.txt"}
SPLITS_FINAL = "splits_final.json"  # nnU-Net's cross-validation folds: [{"train": [ids], "val": [ids]}, ...]
PREPROCESSED = "nnUNet_preprocessed"  # nnU-Net's folder for plans and splits, a sibling of the raw data's folder


def check_split(split: str) -> None:
    """DatasetError naming the valid splits for anything but one of SPLITS."""
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")


def default_split(case_ids: Sequence[str], dataset: str, seed: int = 0) -> dict[str, str]:
    """A deterministic split: round(fraction · n) validation cases (≥ 1 when n ≥ 2), chosen by `seed`."""
    ids = sorted(case_ids)
    count = len(ids)
    validation = min(max(round(VALIDATION_FRACTION[dataset] * count), 1 if count >= 2 else 0), max(count - 1, 0))
    order = np.random.default_rng(seed).permutation(count)
    held_out = {ids[i] for i in order[:validation]}
    return {case_id: "val" if case_id in held_out else "train" for case_id in ids}


def read_split_file(path: str | Path, known: Iterable[str]) -> dict[str, str]:
    """Parse a split file: one case per line, "<case_id> train|val" (either order; '#' comments)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: split file not found")
    known = set(known)
    words = {"train": "train", "training": "train", "val": "val", "validation": "val"}
    split: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        tokens = line.split("#", 1)[0].replace(",", " ").split()
        if not tokens:
            continue
        kinds = [t for t in tokens if t.lower() in words]
        ids = [t for t in tokens if t.lower() not in words]
        if len(kinds) != 1 or len(ids) != 1:
            raise DatasetError(f"{path}:{number}: expected '<case_id> train|val', got {line.strip()!r}")
        case_id = ids[0]
        if case_id not in known:
            raise DatasetError(f"{path}:{number}: case {case_id!r} is not in the dataset")
        if case_id in split:
            raise DatasetError(f"{path}:{number}: case {case_id!r} listed twice")
        split[case_id] = words[kinds[0].lower()]
    missing = sorted(known - set(split))
    if missing:
        raise DatasetError(f"{path}: {len(missing)} case(s) not assigned to a split, e.g. {missing[:3]}")
    return split


def select_split(cases: list[CaseFiles], split: str, split_file: str | Path | None, dataset: str,
                 seed: int) -> list[CaseFiles]:
    """The cases of `split` ("all" keeps every case): by `split_file`, else the original's list, else seeded."""
    if split == "all":
        return cases
    ids = [c.case_id for c in cases]
    if split_file is not None:
        assignment = read_split_file(split_file, ids)
    else:
        assignment = original_split(dataset, ids) or default_split(ids, dataset, seed)
    return [c for c in cases if assignment[c.case_id] == split]


def original_split_file(dataset: str) -> Path | None:
    """The shipped split file of `dataset`'s original split, or None when the original had none (LiTS)."""
    name = ORIGINAL_SPLIT_FILES.get(dataset)
    return None if name is None else Path(str(resources.files(__name__).joinpath(name)))


@functools.cache
def listed_split(dataset: str) -> dict[str, str]:
    """{case_id: "train" | "val"} of the original's split of `dataset` ({} when there is none)."""
    path = original_split_file(dataset)
    if path is None:
        return {}
    lines = (line.split("#", 1)[0].split() for line in path.read_text().splitlines())
    return read_split_file(path, [tokens[0] for tokens in lines if tokens])


def original_split(dataset: str, case_ids: Iterable[str]) -> dict[str, str] | None:
    """The original's assignment of `case_ids` when every case of its list is among them, else None.

    Cases the list does not name (a larger dataset) train, so the validation set stays the original's.
    """
    listed = listed_split(dataset)
    ids = list(case_ids)
    if not listed or not set(listed) <= set(ids):
        return None
    return {case_id: listed.get(case_id, "train") for case_id in ids}


def find_splits_final(root: Path) -> Path | None:
    """nnU-Net's splits_final.json in the dataset folder or in ``nnUNet_preprocessed/<name>/`` next to it."""
    candidates = [root / SPLITS_FINAL] + [base / PREPROCESSED / root.name / SPLITS_FINAL
                                          for base in (root.parent, root.parent.parent)]
    return next((path for path in candidates if path.is_file()), None)


def read_splits_final(path: Path, fold: int, known: Iterable[str]) -> dict[str, str]:
    """Case id -> "train" | "val" from fold `fold` of nnU-Net's splits_final.json; each known case exactly once."""
    try:
        folds = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise DatasetError(f"{path}: not a readable JSON file ({error})") from error
    if not isinstance(folds, list) or not all(isinstance(f, dict) and {"train", "val"} <= set(f) for f in folds):
        raise DatasetError(f"{path}: expected a list of {{'train': [...], 'val': [...]}} folds")
    if not 0 <= fold < len(folds):
        raise DatasetError(f"{path}: fold {fold} requested but the file has {len(folds)} fold(s)")
    known = set(known)
    assignment: dict[str, str] = {}
    for kind in ("train", "val"):
        for case_id in folds[fold][kind]:
            if case_id not in known:
                raise DatasetError(f"{path}: fold {fold} lists case {case_id!r}, which is not in the dataset")
            if case_id in assignment:
                raise DatasetError(f"{path}: fold {fold} lists case {case_id!r} twice")
            assignment[case_id] = kind
    missing = sorted(known - set(assignment))
    if missing:
        raise DatasetError(f"{path}: fold {fold} leaves {len(missing)} case(s) out, e.g. {missing[:3]}")
    return assignment


def split_assignment(case_ids: Iterable[str], root: Path, dataset: str, split_file: str | Path | None = None,
                     seed: int = 0, fold: int = 0) -> dict[str, str]:
    """Case id -> "train" | "val": the split file if given, else splits_final.json's `fold`, else the seeded split."""
    ids = sorted(case_ids)
    if split_file is not None:
        return read_split_file(split_file, ids)
    splits_final = find_splits_final(root)
    if splits_final is not None:
        return read_splits_final(splits_final, fold, ids)
    return default_split(ids, dataset, seed)
