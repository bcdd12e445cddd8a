"""Which cases a run processes: `find_cases` (one case, or a split of a dataset root, with what
discovery rejected) and `screen_cases` (the header checks every case passes before anything is written).

A case left out is a `BadCase` with its reason, naming the file and the problem; `reasons` joins them
on the line the command prints.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from oss_net.data import DatasetError, discover, discover_case_folder
from oss_net.data.channels import grid_problems
from oss_net.data.check import discover_each
from oss_net.data.layouts.brats import brats_file_role
from oss_net.models import stored_split

from .options import InferenceError, InferenceSettings


@dataclass(frozen=True)
class BadCase:
    """A case left out of a run; `reason` names the file and the problem."""

    case_id: str
    reason: str


def is_single_case(path: Path, dataset: str) -> bool:
    """A LiTS volume file, or a folder holding a BraTS case's own image files rather than case folders.

    A LiTS folder is always a dataset root (volumes and labels may all lie in it); a file given for
    BraTS is an error naming its case folder.
    """
    if dataset == "brats" and path.is_file():
        raise InferenceError(f"{path}: BraTS takes a case folder, not one file (give its folder {path.parent})")
    if path.is_file():
        return True
    return dataset == "brats" and path.is_dir() and any(
        p.is_file() and brats_file_role(p.name) not in (None, "ignored") for p in path.iterdir())


def find_cases(settings: InferenceSettings, dataset: str) -> tuple[list[Any], list[BadCase]]:
    """The CaseFiles to process (one case folder / file, or a split of a dataset root), and the cases
    discovery rejects when `skip_bad_cases` sets them aside (else such a case stops the run here).

    For --split train|val the case ids stored in the checkpoint by training are used when it holds them,
    so a model is scored on exactly its own validation cases whatever seed split them.
    """
    path = Path(settings.dataset_path)
    if not path.exists():
        raise InferenceError(f"{path}: dataset path does not exist (check --dataset_path)")
    if is_single_case(path, dataset):
        return [discover_case_folder(path, dataset)], []
    split = stored_split(settings.load_model) if settings.split in ("train", "val") else None
    stored = None if split is None else split.get(settings.split)
    try:
        if stored is None:
            cases, rejected = discover(dataset, path, settings.split), []
        else:
            cases, rejected = cases_of_split(discover(dataset, path, "all"), stored, settings), []
    except DatasetError as error:
        cases, rejected = cases_despite_rejected(settings, dataset, stored, error)
    if not cases:
        raise InferenceError(f"{path}: no cases in split {settings.split!r}"
                             + (f" (every case was rejected: {reasons(rejected)})" if rejected else ""))
    return cases, rejected


def input_folders(settings: InferenceSettings, dataset: str, cases: Sequence[Any]) -> list[Path]:
    """Every folder holding a file of the dataset, of any split (not only the cases run): no output may go there,
    or the next read of the dataset would find it (`outputs.claim_output_folder`)."""
    found = list(cases)
    path = Path(settings.dataset_path)
    if path.is_dir() and not is_single_case(path, dataset):
        for split in ("all", "test"):
            try:
                found += discover(dataset, path, split)
            except DatasetError:  # what discovery rejects was reported before; its folders are the cases' own
                continue
    return sorted({file.parent for files in found for file in (*files.images, files.label, files.border)
                   if file is not None})


def cases_despite_rejected(settings: InferenceSettings, dataset: str, stored: list[str] | None,
                           error: DatasetError) -> tuple[list[Any], list[BadCase]]:
    """After discovery rejected the dataset: the accepted cases of the split and, with --skip_bad_cases, a
    BadCase per rejected one of the split; else `error` again, with what to do.

    Skipping needs a split whose members do not depend on which cases are usable: --split all or test,
    or the split stored in the checkpoint (a computed train/val split would move other cases between
    the splits). A problem of no single case (a missing folder, an unexpected file in a layout folder)
    is never skipped.
    """
    try:
        cases, problems = discover_each(settings.dataset_path, dataset, labelled=settings.split != "test")
    except DatasetError:
        raise error from None
    if not problems or any(problem.case_id == "*" for problem in problems):
        raise error
    computed_split = settings.split in ("train", "val") and stored is None
    if computed_split:
        raise DatasetError(f"{error} (fix them; --skip_bad_cases skips them with --split all or test, or with a "
                           f"checkpoint that stores its split)") from None
    rejected = [BadCase(problem.case_id, problem.message) for problem in problems
                if stored is None or problem.case_id in stored]  # a rejected case of another split does not matter
    if rejected and not settings.skip_bad_cases:
        raise DatasetError(f"{error} (pass --skip_bad_cases to go on without them)") from None
    if stored is not None:
        rejected_ids = {bad.case_id for bad in rejected}
        cases = cases_of_split(cases, [case_id for case_id in stored if case_id not in rejected_ids], settings)
    return cases, rejected


def cases_of_split(cases: list[Any], case_ids: list[str], settings: InferenceSettings) -> list[Any]:
    """The cases named by a checkpoint's stored split, in its order; an id missing from the dataset is an error."""
    by_id = {case.case_id: case for case in cases}
    missing = [case_id for case_id in case_ids if case_id not in by_id]
    if missing:
        raise InferenceError(f"{settings.dataset_path}: {len(missing)} case(s) of the checkpoint's {settings.split!r} "
                             f"split ({settings.load_model}) are not in the dataset, e.g. {missing[:3]}")
    return [by_id[case_id] for case_id in case_ids]


def screen_cases(cases: list[Any], config: Any) -> tuple[list[Any], list[BadCase]]:
    """The cases whose headers are usable, and a BadCase for each other one; reads no voxel.

    Checks every image and label header (readable, 3-D, no empty or single-voxel axis, one shared
    shape and affine) and the channel count the model expects.
    """
    bad = [BadCase(c.case_id, f"{c.images[0].parent if c.images else c.case_id}: {len(c.images)} image file(s) but the "
                   f"model expects {config.in_channels} channel(s)") for c in cases if len(c.images) != config.in_channels]
    counted = [c for c in cases if len(c.images) == config.in_channels]
    good, problems = grid_problems(counted)
    bad += [BadCase(problem.case_id, problem.message) for problem in problems]
    return good, bad


def reasons(bad: Sequence[BadCase]) -> str:
    """Every reason on one line (the command's edge prints one line)."""
    return "; ".join(" ".join(case.reason.split()) for case in bad)
