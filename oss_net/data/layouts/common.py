"""What the layout scanners share: border-map names and folders, image file listing, and the scan-based discovery
of the layouts that list every case and problem at once (nnU-Net, Decathlon, FLARE21).
"""
from __future__ import annotations

import functools
import re
from operator import attrgetter
from pathlib import Path
from typing import Callable

from oss_net.data.case_files import CaseFiles, Layout, LayoutScan, Problem
from oss_net.data.channels import grid_problems
from oss_net.data.dataset_info import DatasetInfo
from oss_net.data.splits import check_split, split_assignment
from oss_net.datasets import DatasetError

BORDER_FOLDER = "bordersTr"  # nnunet/msd/flare border maps: <root>/bordersTr/<case>_border.nii.gz, outside labelsTr
DETACHED_HEADER_SUFFIXES = (".mhd", ".nhdr")  # headers whose voxels sit in a data file beside them
DETACHED_DATA_SUFFIXES = (".raw", ".zraw", ".raw.gz")  # what SimpleITK names those data files
NIFTI_NAME = re.compile(r"^(?P<stem>.+?)\.nii(\.gz)?$", re.IGNORECASE)
Scanner = Callable[[Path, str | Path | None, bool], LayoutScan]  # (root, border_dir, check_grids) -> LayoutScan


def existing_folder(path: str | Path) -> Path:
    """`path` as a Path; DatasetError when it is not a folder."""
    path = Path(path)
    if not path.is_dir():
        raise DatasetError(f"{path}: dataset folder not found (check the path)")
    return path


def border_file_name(case_id: str, dataset: str) -> str:
    """File name of a case's border map: ``<case>_border.nii.gz`` (BraTS) or ``border-N.nii.gz`` (LiTS)."""
    if dataset == "lits":
        return f"border-{case_id.removeprefix('lits-')}.nii.gz"
    return f"{case_id}_border.nii.gz"


def default_border_path(case: CaseFiles, dataset: str) -> Path:
    """Where the border scripts write a case's border map when no output folder is given."""
    if case.label is None:
        raise DatasetError(f"{case.case_id}: no label, so no border map")
    folder = case.label.parent
    if dataset in ("nnunet", "msd", "flare"):
        folder = folder.parent / BORDER_FOLDER
    if dataset == "lits" and folder.name == "segmentation":
        folder = folder.parent / "border"
    return folder / border_file_name(case.case_id, dataset)


def border_path(root: Path, case_id: str, border_dir: str | Path | None) -> Path | None:
    """A case's border map ``<case>_border.nii.gz`` in `border_dir`, else in ``<root>/bordersTr``, when it exists."""
    folder = Path(border_dir) if border_dir is not None else root / BORDER_FOLDER
    path = folder / border_file_name(case_id, "nnunet")
    return path if path.is_file() else None


def image_files(folder: Path, file_ending: str) -> tuple[list[Path], list[Path]]:
    """(files ending in `file_ending`, other visible entries) of `folder`, sorted; dotfiles (macOS ``._*``) skipped,
    and so are the data files of detached headers (`<stem>.raw`, `.zraw`, `.raw.gz` beside `<stem>.mhd` / `.nhdr`)."""
    if not folder.is_dir():
        return [], []
    entries = [p for p in sorted(folder.iterdir()) if not p.name.startswith(".")]
    images = [p for p in entries if p.is_file() and p.name.endswith(file_ending)]
    companions = {f"{p.name[: -len(file_ending)]}{data}" for p in images for data in DETACHED_DATA_SUFFIXES
                  if file_ending in DETACHED_HEADER_SUFFIXES}
    return images, [p for p in entries if p not in images and p.name not in companions]


def make_scan(info: DatasetInfo, labelled: list[CaseFiles], unlabelled: list[CaseFiles], problems: list[Problem],
              check_grids: bool = True) -> LayoutScan:
    """A LayoutScan with cases sorted by id; with `check_grids`, cases whose files disagree in grid become problems."""
    if check_grids:
        labelled, bad_training = grid_problems(labelled)
        unlabelled, bad_test = grid_problems(unlabelled)
        problems = problems + bad_training + bad_test
    by_id = attrgetter("case_id")
    return LayoutScan(info, tuple(sorted(labelled, key=by_id)), tuple(sorted(unlabelled, key=by_id)), tuple(problems))


def scan_folder(scan: Scanner, root: str | Path, border_dir: str | Path | None = None,
                check_grids: bool = True) -> LayoutScan:
    """`scan` of the folder `root`, which must exist."""
    return scan(existing_folder(root), border_dir, check_grids)


def discover_scanned(dataset: str, scan: Scanner, root: str | Path, split: str = "train",
                     split_file: str | Path | None = None, border_dir: str | Path | None = None, seed: int = 0,
                     fold: int = 0) -> list[CaseFiles]:
    """The cases of `split` of a scanned layout (nnU-Net, Decathlon, FLARE21), sorted by case id.

    Every problem of the folder (a label without images, a missing channel, numTraining disagreeing,
    channels on different grids) is raised at once. The train/val split comes from `split_file`,
    else nnU-Net's splits_final.json fold `fold`, else the seeded default split (1 case in 5 held out).
    "test" is the unlabelled cases (imagesTs, the Decathlon's 'test' list, FLARE21's ValidationImg).
    """
    check_split(split)
    root = Path(root)
    found = scan_folder(scan, root, border_dir)
    found.raise_problems(root)
    if split == "test":
        if not found.test:
            raise DatasetError(f"{root}: no unlabelled (test) cases found")
        return list(found.test)
    if not found.training:
        raise DatasetError(f"{root}: no labelled cases found")
    if split == "all":
        return list(found.training)
    assignment = split_assignment([c.case_id for c in found.training], root, dataset, split_file, seed, fold)
    return [case for case in found.training if assignment[case.case_id] == split]


def scanned_layout(name: str, scan: Scanner, detect: Callable[[Path], bool]) -> Layout:
    """The registry entry of a layout that a scan describes whole: discovery and description come from `scan`."""
    return Layout(name, detect, functools.partial(discover_scanned, name, scan),
                  lambda root: scan_folder(scan, root, check_grids=False).info, scan)
