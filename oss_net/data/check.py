"""Check a whole dataset before training on it: every file of every case, all problems in one report.

    python -m oss_net.data.check /data/BraTS2020 [--dataset brats]

Like nnU-Net's dataset-integrity check, every case is read fully (shape, affine, NaN/Inf, label
values, 2D/4D, corrupt files, stray or duplicate files) and every problem is listed in one table;
the command then fails once (exit status 1) if any case failed. Empty labels are warnings: such a
case trains with uniform instead of border-weighted sampling.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from oss_net.data.borders import read_border
from oss_net.data.errors import DatasetError
from oss_net.data.layout import CaseFiles, brats_case_folders, discover_lits, read_brats_case
from oss_net.data.nifti import check_same_grid, read_image, read_label


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


def detect_dataset(root: str | Path) -> str:
    """"brats" or "lits" from the folder layout."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder not found")
    if any(root.glob("MICCAI_BraTS2020_*")) or any(root.glob("*/*_flair.nii*")):
        return "brats"
    if (root / "TrainingData" / "input").is_dir() or any(root.rglob("volume-*.nii*")):
        return "lits"
    raise DatasetError(f"{root}: neither a BraTS 2020 nor a LiTS layout; pass --dataset")


def check_dataset(root: str | Path, dataset: str | None = None) -> list[CaseReport]:
    """One report per case; discovery problems that concern no single case are reported under "*"."""
    dataset = dataset or detect_dataset(root)
    reports = []
    if dataset == "brats":
        for folder, labelled in brats_case_folders(root):
            try:
                case = read_brats_case(folder, labelled)
            except DatasetError as error:
                reports.append(CaseReport(folder.name, errors=[str(error)]))
                continue
            reports.append(check_case(case, dataset))
    elif dataset == "lits":
        try:
            cases = discover_lits(root, "all")
        except DatasetError as error:
            return [CaseReport("*", errors=[str(error)])]
        reports = [check_case(case, dataset) for case in cases]
    else:
        raise DatasetError(f"unknown dataset {dataset!r}; expected brats or lits")
    if not reports:
        reports.append(CaseReport("*", errors=[f"{root}: no cases found"]))
    return reports


def verify_dataset(root: str | Path, dataset: str | None = None) -> list[CaseReport]:
    """`check_dataset`, raising one DatasetError listing every failing case."""
    reports = check_dataset(root, dataset)
    failed = [f"{r.case_id}: {problem}" for r in reports for problem in r.errors]
    if failed:
        raise DatasetError(f"{root}: {len(failed)} problem(s)\n" + "\n".join(failed))
    return reports


def check_case(case: CaseFiles, dataset: str) -> CaseReport:
    """Read every file of `case` and collect every problem instead of stopping at the first."""
    report = CaseReport(case.case_id)
    reference = None
    for path in case.images:
        try:
            volume = read_image(path)
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
        label = read_label(case.label, dataset)
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
    parser = argparse.ArgumentParser(description="Check every case of a BraTS 2020 or LiTS dataset.")
    parser.add_argument("root", type=Path, help="dataset folder")
    parser.add_argument("--dataset", choices=("brats", "lits"), default=None, help="layout (default: detected)")
    args = parser.parse_args(argv)
    try:
        reports = check_dataset(args.root, args.dataset)
    except DatasetError as error:
        print(f"error: {error}")
        return 1
    print(format_reports(reports))
    return 1 if any(r.errors for r in reports) else 0


if __name__ == "__main__":
    raise SystemExit(main())
