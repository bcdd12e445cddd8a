"""Check a whole dataset before training on it: every file of every case, all problems in one report.

    python -m oss_net.data.check /data/BraTS2020 [--dataset brats|lits|nnunet|msd|flare] [--prefer sform|qform]

Like nnU-Net's dataset-integrity check, every case is read fully (shape, affine, NaN/Inf, label
values, 2D/4D, corrupt files, a header declaring more than the file holds, a degenerate affine or
disagreeing qform and sform, stray or duplicate files) and every problem is listed in one table;
the command then fails once (exit status 1) if any case failed. Empty labels are warnings: such a
case trains with uniform instead of border-weighted sampling.
"""
from __future__ import annotations

import argparse
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from oss_net.cli_errors import add_verbose_flag, run_command
from oss_net.data.borders import read_border
from oss_net.data.case_files import CaseFiles, Problem
from oss_net.data.channels import read_file_channels, read_label_values
from oss_net.data.dataset_info import DatasetInfo
from oss_net.data.layouts import EXTERNAL_DATASETS, detect_dataset, scan_layout
from oss_net.data.layouts.brats import brats_case_folders, read_brats_case
from oss_net.data.layouts.lits import discover_lits
from oss_net.data.nifti import check_same_grid, read_label
from oss_net.datasets import DATASETS, DatasetError, canonical_dataset
from oss_net.geometry import add_prefer_flag, preferred_affine


@dataclass
class CaseReport:
    """The outcome for one case (or for the dataset as a whole when `case_id` is "*")."""

    case_id: str
    shape: tuple[int, ...] | None = None
    spacing: tuple[float, ...] | None = None
    labels: tuple[int, ...] = ()
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        return "FAIL" if self.errors else "WARN" if self.warnings else "ok"


def check_dataset(root: str | Path, dataset: str | None = None) -> list[CaseReport]:
    """One report per case; discovery problems that concern no single case are reported under "*"."""
    dataset = canonical_dataset(dataset) if dataset else detect_dataset(root)
    reports = []
    if dataset == "brats":
        for labelled in (True, False):  # training folders, then the unlabelled validation folder
            cases, rejected = discover_each(root, dataset, labelled)
            reports += [CaseReport(problem.case_id, errors=[problem.message]) for problem in rejected]
            reports += [check_case(case, dataset) for case in cases]
    elif dataset in EXTERNAL_DATASETS:
        try:
            scan = scan_layout(dataset, root, check_grids=False)  # check_case reads every file fully
        except DatasetError as error:
            return [CaseReport("*", errors=[str(error)])]
        failed: dict[str, CaseReport] = {}
        for problem in scan.problems:
            failed.setdefault(problem.case_id, CaseReport(problem.case_id)).errors.append(problem.message)
        reports = list(failed.values()) + [check_case(case, dataset, scan.info) for case in scan.training + scan.test]
    else:
        try:
            cases = discover_lits(root, "all")
        except DatasetError as error:
            return [CaseReport("*", errors=[str(error)])]
        reports = [check_case(case, dataset) for case in cases]
    if not reports:
        reports.append(CaseReport("*", errors=[f"{root}: no cases found"]))
    return reports


def discover_each(root: str | Path, dataset: str, labelled: bool = True) -> tuple[list[CaseFiles], list[Problem]]:
    """The cases discovery accepts, each found on its own, and a Problem for each case it rejects.

    `labelled`: the labelled (training) cases, else the unlabelled (test) ones. Unlike `discover`, one bad
    case folder does not hide the others, so a run can set the rejected cases aside (inference's
    --skip_bad_cases). A layout problem of nnU-Net, Decathlon or FLARE21 may concern either part, so
    every one is listed (those of no single case under "*"); LiTS pairs its files as a whole, so its
    problems still raise.
    """
    dataset = canonical_dataset(dataset)
    if dataset == "brats":
        cases, problems = [], []
        for folder, in_labelled_part in brats_case_folders(root):
            if in_labelled_part != labelled:
                continue
            try:
                cases.append(read_brats_case(folder, labelled))
            except DatasetError as error:
                problems.append(Problem(folder.name, str(error)))
        return cases, problems
    if dataset in EXTERNAL_DATASETS:
        scan = scan_layout(dataset, root)
        return list(scan.training if labelled else scan.test), list(scan.problems)
    return (discover_lits(root, "all") if labelled else []), []


def check_case(case: CaseFiles, dataset: str, info: DatasetInfo | None = None) -> CaseReport:
    """Read every file of `case` and collect every problem instead of stopping at the first.

    `info` (nnunet, msd, flare) gives the label values its dataset.json allows.
    """
    report = CaseReport(case.case_id)
    reference = None
    for path, channels in Counter(case.images).items():  # a Decathlon 4-D file holds every channel of its case
        try:
            with warnings.catch_warnings(record=True) as caught:  # e.g. a constant image: listed, not fatal
                warnings.simplefilter("always", RuntimeWarning)
                volume = read_file_channels(path, channels)[0]
            report.warnings.extend(str(warning.message) for warning in caught)
            grid = (volume.array.shape, volume.affine, path)
            if reference is None:
                reference = grid
                report.shape, report.spacing = volume.array.shape, tuple(round(s, 3) for s in volume.spacing)
            else:
                check_same_grid(reference, grid)
        except DatasetError as error:
            report.errors.append(str(error))
    if case.label is None:
        return report
    try:
        label = read_label(case.label, dataset) if info is None else read_label_values(case.label, info.label_values)
        if reference is not None:
            check_same_grid(reference, (label.array.shape, label.affine, case.label))
        present = np.flatnonzero(np.bincount(label.array.ravel()))
        report.labels = tuple(int(v) for v in present)
        if label.array.max() == 0:
            report.warnings.append(f"{case.label}: empty label (border sampling falls back to uniform)")
        if case.border is not None:
            read_border(case.border, label.array.shape, label.affine, case.label)
    except DatasetError as error:
        report.errors.append(str(error))
    return report


def format_reports(reports: Sequence[CaseReport]) -> str:
    """A plain-text table: case, status, shape, spacing, label values, problems."""
    rows = [("case", "status", "shape", "spacing (mm)", "labels", "problems")]
    for r in reports:
        rows.append((r.case_id, r.status, "×".join(map(str, r.shape)) if r.shape else "-",
                     "×".join(map(str, r.spacing)) if r.spacing else "-", ",".join(map(str, r.labels)) or "-",
                     " | ".join(r.errors + r.warnings) or "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths)) + "  " + row[-1] for row in rows]
    counts = {s: sum(r.status == s for r in reports) for s in ("ok", "WARN", "FAIL")}
    lines.append(f"{len(reports)} case(s): {counts['ok']} ok, {counts['WARN']} with warnings, {counts['FAIL']} failed")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Exit status 0: every case is usable; 1: some case failed (see the table); 2: the dataset cannot be read."""
    parser = argparse.ArgumentParser(allow_abbrev=False, prog="python -m oss_net.data.check",
                                     description="Check every case of a BraTS 2020, LiTS, nnU-Net, Decathlon or "
                                                 "FLARE21 dataset.")
    parser.add_argument("root", type=Path, help="dataset folder")
    parser.add_argument("--dataset", choices=DATASETS, default=None, help="layout (default: detected)")
    add_prefer_flag(parser)
    add_verbose_flag(parser)
    args = parser.parse_args(argv)
    return run_command(lambda: print_check(args.root, args.dataset, args.prefer), prog=parser.prog,
                       verbose=args.verbose)


def print_check(root: Path, dataset: str | None, prefer: str | None = None) -> int:
    """Print the table of `check_dataset` (each file's affine as `prefer` says); 1 if any case failed, else 0."""
    with preferred_affine(prefer):
        reports = check_dataset(root, dataset)
    print(format_reports(reports))
    return 1 if any(r.errors for r in reports) else 0


if __name__ == "__main__":
    raise SystemExit(main())
