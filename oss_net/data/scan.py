"""What the nnU-Net, Decathlon and FLARE21 layouts share: a scan result, splits and border-map lookup.

A scan lists every case it could assemble plus every problem it met (each naming its file), so
`discover` can raise them all in one error and `python -m oss_net.data.check` can report them per case.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path
from typing import Iterable

from oss_net.data.channels import check_case_grids
from oss_net.data.dataset_info import DatasetInfo
from oss_net.data.errors import DatasetError
from oss_net.data.layout import BORDER_FOLDER, CaseFiles, border_file_name, default_split, read_split_file

SPLITS_FINAL = "splits_final.json"  # nnU-Net's cross-validation folds: [{"train": [ids], "val": [ids]}, ...]
PREPROCESSED = "nnUNet_preprocessed"  # nnU-Net's folder for plans and splits, a sibling of the raw data's folder


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a dataset; `case_id` is "*" when it concerns no single case."""

    case_id: str
    message: str


@dataclass(frozen=True)
class LayoutScan:
    """Everything found in a dataset folder: its description, labelled and unlabelled cases, and problems.

    A case with a problem is left out of `training`/`test`, so each problem is reported once.
    """

    info: DatasetInfo
    training: tuple[CaseFiles, ...]
    test: tuple[CaseFiles, ...]
    problems: tuple[Problem, ...]

    def raise_problems(self, root: Path) -> None:
        """One DatasetError listing every problem, if any."""
        if self.problems:
            lines = "\n".join(problem.message for problem in self.problems)
            raise DatasetError(f"{root}: {len(self.problems)} problem(s):\n{lines}")


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


def make_scan(info: DatasetInfo, labelled: list[CaseFiles], unlabelled: list[CaseFiles], problems: list[Problem],
              check_grids: bool = True) -> LayoutScan:
    """A LayoutScan with cases sorted by id; with `check_grids`, cases whose files disagree in grid become problems."""
    if check_grids:
        labelled, bad_training = grid_problems(labelled)
        unlabelled, bad_test = grid_problems(unlabelled)
        problems = problems + bad_training + bad_test
    by_id = attrgetter("case_id")
    return LayoutScan(info, tuple(sorted(labelled, key=by_id)), tuple(sorted(unlabelled, key=by_id)), tuple(problems))


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


def border_path(root: Path, case_id: str, border_dir: str | Path | None) -> Path | None:
    """A case's border map ``<case>_border.nii.gz`` in `border_dir`, else in ``<root>/bordersTr``, when it exists."""
    folder = Path(border_dir) if border_dir is not None else root / BORDER_FOLDER
    path = folder / border_file_name(case_id, "nnunet")
    return path if path.is_file() else None


def nifti_files(folder: Path, file_ending: str) -> tuple[list[Path], list[Path]]:
    """(files ending in `file_ending`, other visible entries) of `folder`, sorted; dotfiles (macOS ``._*``) skipped."""
    if not folder.is_dir():
        return [], []
    entries = [p for p in sorted(folder.iterdir()) if not p.name.startswith(".")]
    return ([p for p in entries if p.is_file() and p.name.endswith(file_ending)],
            [p for p in entries if not (p.is_file() and p.name.endswith(file_ending))])
