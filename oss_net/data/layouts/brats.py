"""BraTS 2020 as distributed: one folder per case, files recognised by their name suffix.

    <root>/MICCAI_BraTS2020_TrainingData/<case>/<case>_{flair,t1,t1ce,t2,seg}.nii.gz
    <root>/MICCAI_BraTS2020_ValidationData/<case>/<case>_{flair,t1,t1ce,t2}.nii.gz   (no labels)

Files are recognised by their name suffix, never by the order of a folder listing, so an extra,
missing or oddly named file is reported instead of silently shifting every modality by one
(docs/reference.md §12 item 19). One real training case ships its label as ``..._Segm.nii``; any
``*_seg`` or ``*segm`` NIfTI counts as the label. Border maps written by
``generate_borders_bra_ts_2020.py`` sit next to the images as ``<case>_border.nii.gz``; the
original's ``*_bor.pt`` files are ignored.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from oss_net.data.case_files import CaseFiles, Layout
from oss_net.data.dataset_info import BRATS_INFO, DatasetInfo
from oss_net.data.layouts.common import NIFTI_NAME, border_file_name, existing_folder
from oss_net.data.splits import check_split, select_split
from oss_net.datasets import DatasetError

BRATS_MODALITIES = ("flair", "t1", "t1ce", "t2")
BRATS_TRAINING = "MICCAI_BraTS2020_TrainingData"
BRATS_VALIDATION = "MICCAI_BraTS2020_ValidationData"
BRATS_TEST_ORIGINAL = "MICCAI_BraTS2020_TestData"  # where the original expected its 45 validation cases


def discover_brats(root: str | Path, split: str = "train", split_file: str | Path | None = None,
                   border_dir: str | Path | None = None, seed: int = 0) -> list[CaseFiles]:
    """BraTS 2020 cases of one split, sorted by case id.

    The split comes from, in order: `split_file` (lines "<case_id> train|val"); the original's layout
    with a ``MICCAI_BraTS2020_TestData`` folder holding the validation cases; the original's fixed
    324/45 list (`oss_net.data.splits`) when every case it names is present; otherwise a deterministic
    seeded split holding out 45/369 of the cases (at least one). "test" is the unlabelled
    ``MICCAI_BraTS2020_ValidationData`` folder.
    """
    root = existing_folder(root)
    check_split(split)
    if split == "test":
        return _brats_folder_cases(_require(root / BRATS_VALIDATION), labelled=False, border_dir=border_dir)
    training = root / BRATS_TRAINING if (root / BRATS_TRAINING).is_dir() else root
    cases = _brats_folder_cases(training, labelled=True, border_dir=border_dir)
    if (root / BRATS_TEST_ORIGINAL).is_dir() and split_file is None:
        held_out = _brats_folder_cases(root / BRATS_TEST_ORIGINAL, labelled=True, border_dir=border_dir)
        return {"train": cases, "val": held_out, "all": sorted(cases + held_out, key=lambda c: c.case_id)}[split]
    return select_split(cases, split, split_file, "brats", seed)


def brats_case_folders(root: str | Path) -> list[tuple[Path, bool]]:
    """Every BraTS case folder under `root` with whether it must carry a label (for dataset checks)."""
    root = existing_folder(root)
    groups = [(root / BRATS_TRAINING, True), (root / BRATS_TEST_ORIGINAL, True), (root / BRATS_VALIDATION, False)]
    if not any(folder.is_dir() for folder, _ in groups):
        groups = [(root, True)]
    return [(entry, labelled) for folder, labelled in groups if folder.is_dir()
            for entry in sorted(folder.iterdir()) if entry.is_dir() and not entry.name.startswith(".")]


def read_brats_case(folder: Path, labelled: bool | None = None, border_dir: str | Path | None = None) -> CaseFiles:
    """One BraTS case folder; `labelled` None accepts it with or without a label."""
    return _brats_case(existing_folder(folder), labelled, border_dir)


def brats_file_role(name: str) -> str | None:
    """What a file in a BraTS case folder is: a modality, "seg", "border", "ignored" or None (unknown)."""
    if name.startswith(".") or name.lower().endswith("_bor.pt"):
        return "ignored"
    match = NIFTI_NAME.match(name)
    if match is None:
        return None
    stem = match.group("stem").lower()
    for role in ("t1ce", "flair", "t1", "t2", "seg", "border"):
        if stem.endswith(f"_{role}"):
            return role
    return "seg" if stem.endswith("segm") else None


def detect_brats(root: Path) -> bool:
    """BraTS 2020's own folders, or case folders holding a ``*_flair`` image."""
    return any(root.glob("MICCAI_BraTS2020_*")) or any(root.glob("*/*_flair.nii*"))


def brats_info(root: Path) -> DatasetInfo:
    """BraTS 2020's fixed description with its labelled cases counted."""
    return dataclasses.replace(BRATS_INFO, num_training=len(discover_brats(root, "all")))


def _brats_case(folder: Path, labelled: bool | None, border_dir: str | Path | None) -> CaseFiles:
    """One BraTS case folder; `labelled` None accepts a folder with or without a label."""
    found: dict[str, list[Path]] = {}
    unknown = []
    for entry in sorted(folder.iterdir()):
        role = brats_file_role(entry.name)
        if role == "ignored":
            continue
        if role is None or not entry.is_file():
            unknown.append(entry.name)
            continue
        found.setdefault(role, []).append(entry)
    problems = [f"unexpected file(s) {unknown}"] if unknown else []
    problems += [f"duplicate {role} files {[p.name for p in paths]}" for role, paths in found.items() if len(paths) > 1]
    missing = [m for m in BRATS_MODALITIES if m not in found]
    if labelled and "seg" not in found:
        missing.append("seg")
    if missing:
        problems.append(f"missing {', '.join(missing)} file(s)")
    if problems:
        raise DatasetError(f"{folder}: " + "; ".join(problems))
    label = found["seg"][0] if "seg" in found else None
    if labelled is False:
        label = None
    border = found["border"][0] if "border" in found else None
    if border_dir is not None:
        candidate = Path(border_dir) / border_file_name(folder.name, "brats")
        border = candidate if candidate.is_file() else None
    if label is None:
        border = None
    return CaseFiles(folder.name, tuple(found[m][0] for m in BRATS_MODALITIES), label, border)


def _brats_folder_cases(folder: Path, labelled: bool, border_dir: str | Path | None) -> list[CaseFiles]:
    """Every case folder under `folder`, all problems reported in one error."""
    cases, problems = [], []
    for entry in sorted(folder.iterdir()):
        if not entry.is_dir() or entry.name.startswith("."):
            continue
        try:
            cases.append(_brats_case(entry, labelled, border_dir))
        except DatasetError as error:
            problems.append(str(error))
    if problems:
        raise DatasetError(f"{len(problems)} bad case folder(s) (fix or remove them):\n" + "\n".join(problems))
    if not cases:
        raise DatasetError(f"{folder}: no BraTS case folders found (expected a folder per case holding its "
                           f"<case>_flair.nii.gz, _t1, _t1ce and _t2 files)")
    return cases


def _require(path: Path) -> Path:
    if not path.is_dir():
        raise DatasetError(f"{path}: folder not found")
    return path


BRATS = Layout(
    "brats", detect_brats,
    lambda root, split, split_file, border_dir, seed, fold: discover_brats(root, split, split_file, border_dir, seed),
    brats_info, read_case=lambda path, border_dir: read_brats_case(path, None, border_dir))
