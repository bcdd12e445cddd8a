"""Finding the cases of a dataset on disk: BraTS 2020 and LiTS in their distributed layouts.

Files are recognised by their name suffix (BraTS) or case number (LiTS), never by the order of a
folder listing, so an extra, missing or oddly named file is reported instead of silently shifting
every modality by one (docs/reference.md §12 item 19).

BraTS 2020::

    <root>/MICCAI_BraTS2020_TrainingData/<case>/<case>_{flair,t1,t1ce,t2,seg}.nii.gz
    <root>/MICCAI_BraTS2020_ValidationData/<case>/<case>_{flair,t1,t1ce,t2}.nii.gz   (no labels)

One real training case ships its label as ``..._Segm.nii``; any ``*_seg`` or ``*segm`` NIfTI counts
as the label. Border maps written by ``generate_borders_bra_ts_2020.py`` sit next to the images as
``<case>_border.nii.gz``; the original's ``*_bor.pt`` files are ignored.

LiTS::

    <root>/**/volume-N.nii  +  <root>/**/segmentation-N.nii          (as distributed, paired by N)
    <root>/{TrainingData,TestData}/{input,segmentation,border}/       (the original's layout)

Border maps are ``border-N.nii.gz`` next to the segmentation (or in the sibling ``border/`` folder).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from oss_net.data.errors import DatasetError
from oss_net.data.splits import original_split

BRATS_MODALITIES = ("flair", "t1", "t1ce", "t2")
BRATS_TRAINING = "MICCAI_BraTS2020_TrainingData"
BRATS_VALIDATION = "MICCAI_BraTS2020_ValidationData"
BRATS_TEST_ORIGINAL = "MICCAI_BraTS2020_TestData"  # where the original expected its 45 validation cases
# The original held out 45 of 369 BraTS and 20 of 131 LiTS training cases; the default split keeps these fractions.
# nnU-Net, Decathlon and FLARE21 hold out one case in five, like one fold of nnU-Net's 5-fold cross-validation.
VALIDATION_FRACTION = {"brats": 45 / 369, "lits": 20 / 131, "nnunet": 0.2, "msd": 0.2, "flare": 0.2}
SPLITS = ("train", "val", "all", "test")  # "all" = train + val (labelled); "test" = unlabelled cases
DATASETS = ("brats", "lits", "nnunet", "msd", "flare")
PAPER_DATASETS = ("brats", "lits")  # the datasets the paper's configurations and the original's weights exist for
BORDER_FOLDER = "bordersTr"  # nnunet/msd/flare border maps: <root>/bordersTr/<case>_border.nii.gz, outside labelsTr
# Other spellings of the two datasets: the original's scripts and folders say BraTS, bra_ts, BraTS2020, LiTS.
_DATASET_ALIASES = {"brats": "brats", "bra_ts": "brats", "brats2020": "brats", "lits": "lits", "nnunet": "nnunet",
                    "nnu_net": "nnunet", "msd": "msd", "decathlon": "msd", "flare": "flare", "flare21": "flare"}
_NIFTI = re.compile(r"^(?P<stem>.+?)\.nii(\.gz)?$", re.IGNORECASE)
_NUMBER = re.compile(r"(\d+)(?!.*\d)")


def canonical_dataset(name: str) -> str:
    """The name in DATASETS for any accepted spelling (case, surrounding blanks and "-" for "_" do not matter).

    The one dataset-name normaliser; raises DatasetError naming the valid datasets for anything else.
    """
    key = name.strip().lower().replace("-", "_") if isinstance(name, str) else None
    if key not in _DATASET_ALIASES:
        raise DatasetError(f"unknown dataset {name!r}; valid datasets: {', '.join(DATASETS)}")
    return _DATASET_ALIASES[key]


@dataclass(frozen=True)
class CaseFiles:
    """The files of one case: images in channel order, the label and the border map when present."""

    case_id: str
    images: tuple[Path, ...]
    label: Path | None
    border: Path | None


def discover(dataset: str, root: str | Path, split: str = "train", split_file: str | Path | None = None,
             border_dir: str | Path | None = None, seed: int = 0, fold: int = 0) -> list[CaseFiles]:
    """The cases of `split` ("train", "val", "all" labelled cases, or "test": unlabelled) of a dataset.

    `fold` picks the fold of an nnU-Net splits_final.json (nnunet, msd, flare only).
    """
    if canonical_dataset(dataset) not in ("brats", "lits"):
        from oss_net.data.layouts import discover_layout  # imported here: layouts builds on this module

        return discover_layout(dataset, root, split, split_file, border_dir, seed, fold)
    if canonical_dataset(dataset) == "brats":
        return discover_brats(root, split, split_file, border_dir, seed)
    return discover_lits(root, split, split_file, border_dir, seed)


def discover_brats(root: str | Path, split: str = "train", split_file: str | Path | None = None,
                   border_dir: str | Path | None = None, seed: int = 0) -> list[CaseFiles]:
    """BraTS 2020 cases of one split, sorted by case id.

    The split comes from, in order: `split_file` (lines "<case_id> train|val"); the original's layout
    with a ``MICCAI_BraTS2020_TestData`` folder holding the validation cases; the original's fixed
    324/45 list (`oss_net.data.splits`) when every case it names is present; otherwise a deterministic
    seeded split holding out 45/369 of the cases (at least one). "test" is the unlabelled
    ``MICCAI_BraTS2020_ValidationData`` folder.
    """
    root = _existing_folder(root)
    _check_split(split)
    if split == "test":
        return _brats_folder_cases(_require(root / BRATS_VALIDATION), labelled=False, border_dir=border_dir)
    training = root / BRATS_TRAINING if (root / BRATS_TRAINING).is_dir() else root
    cases = _brats_folder_cases(training, labelled=True, border_dir=border_dir)
    if (root / BRATS_TEST_ORIGINAL).is_dir() and split_file is None:
        held_out = _brats_folder_cases(root / BRATS_TEST_ORIGINAL, labelled=True, border_dir=border_dir)
        return {"train": cases, "val": held_out, "all": sorted(cases + held_out, key=lambda c: c.case_id)}[split]
    return _select(cases, split, split_file, "brats", seed)


def discover_lits(root: str | Path, split: str = "train", split_file: str | Path | None = None,
                  border_dir: str | Path | None = None, seed: int = 0) -> list[CaseFiles]:
    """LiTS cases of one split, sorted by case number.

    In the original's layout ``TrainingData/`` is the training and ``TestData/`` the validation split;
    otherwise `split_file` or a deterministic seeded split holding out 20/131 of the cases (at least one).
    """
    root = _existing_folder(root)
    _check_split(split)
    if split == "test":
        raise DatasetError(f"{root}: LiTS has no unlabelled split here; use train, val or all")
    if (root / "TrainingData" / "input").is_dir() and split_file is None:
        training = _lits_original_cases(root / "TrainingData", border_dir)
        held_out = _lits_original_cases(root / "TestData", border_dir) if (root / "TestData").is_dir() else []
        return {"train": training, "val": held_out, "all": sorted(training + held_out, key=_lits_order)}[split]
    return _select(_lits_distributed_cases(root, border_dir), split, split_file, "lits", seed)


def discover_case_folder(path: str | Path, dataset: str, border_dir: str | Path | None = None) -> CaseFiles:
    """One case given by its folder (BraTS) or by its volume file (LiTS ``volume-N.nii``)."""
    path = Path(path)
    if canonical_dataset(dataset) not in ("brats", "lits"):
        raise DatasetError(f"{path}: a single case can be given for brats or lits only, not {dataset!r}")
    if canonical_dataset(dataset) == "brats":
        return _brats_case(_existing_folder(path), labelled=None, border_dir=border_dir)
    if not path.is_file():
        raise DatasetError(f"{path}: expected a LiTS volume file (volume-N.nii)")
    number = _case_number(path)
    folders = [path.parent] + ([path.parent.parent / "segmentation"] if path.parent.name == "input" else [])
    candidates = [folder / f"segmentation-{number}{suffix}" for folder in folders for suffix in (".nii", ".nii.gz")]
    label = next((c for c in candidates if c.is_file()), None)
    return CaseFiles(f"lits-{number}", (path,), label, _lits_border(label, number, border_dir))


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


def brats_case_folders(root: str | Path) -> list[tuple[Path, bool]]:
    """Every BraTS case folder under `root` with whether it must carry a label (for dataset checks)."""
    root = _existing_folder(root)
    groups = [(root / BRATS_TRAINING, True), (root / BRATS_TEST_ORIGINAL, True), (root / BRATS_VALIDATION, False)]
    if not any(folder.is_dir() for folder, _ in groups):
        groups = [(root, True)]
    return [(entry, labelled) for folder, labelled in groups if folder.is_dir()
            for entry in sorted(folder.iterdir()) if entry.is_dir() and not entry.name.startswith(".")]


def read_brats_case(folder: Path, labelled: bool | None = None, border_dir: str | Path | None = None) -> CaseFiles:
    """One BraTS case folder; `labelled` None accepts it with or without a label."""
    return _brats_case(_existing_folder(folder), labelled, border_dir)


def brats_file_role(name: str) -> str | None:
    """What a file in a BraTS case folder is: a modality, "seg", "border", "ignored" or None (unknown)."""
    if name.startswith(".") or name.lower().endswith("_bor.pt"):
        return "ignored"
    match = _NIFTI.match(name)
    if match is None:
        return None
    stem = match.group("stem").lower()
    for role in ("t1ce", "flair", "t1", "t2", "seg", "border"):
        if stem.endswith(f"_{role}"):
            return role
    return "seg" if stem.endswith("segm") else None


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
        if path.name.startswith(".") or _NIFTI.match(path.name) is None:
            continue
        grouped.setdefault(_case_number(path), []).append(path)
    return grouped


def _case_number(path: Path) -> int:
    match = _NUMBER.search(_NIFTI.match(path.name).group("stem") if _NIFTI.match(path.name) else path.name)
    if match is None:
        raise DatasetError(f"{path}: no case number in the file name")
    return int(match.group(1))


def _lits_order(case: CaseFiles) -> int:
    return int(case.case_id.removeprefix("lits-"))


def _select(cases: list[CaseFiles], split: str, split_file: str | Path | None, dataset: str, seed: int) -> list[CaseFiles]:
    if split == "all":
        return cases
    ids = [c.case_id for c in cases]
    if split_file is not None:
        assignment = read_split_file(split_file, ids)
    else:
        assignment = original_split(dataset, ids) or default_split(ids, dataset, seed)
    return [c for c in cases if assignment[c.case_id] == split]


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")


def _existing_folder(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise DatasetError(f"{path}: dataset folder not found (check the path)")
    return path


def _require(path: Path) -> Path:
    if not path.is_dir():
        raise DatasetError(f"{path}: folder not found")
    return path
