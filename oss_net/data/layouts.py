"""One entry point for the dataset layouts beyond BraTS and LiTS, and the layout detector for all five.

`oss_net.data.layout.discover` hands "nnunet", "msd" and "flare" to `discover_layout`; `dataset_info`
describes any dataset (channels, modalities, labels), and `detect_dataset` lets `--dataset` be omitted.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from oss_net.data.dataset_info import BRATS_INFO, LITS_INFO, DatasetInfo
from oss_net.data.errors import DatasetError
from oss_net.data.flare import FLARE_IMAGES, scan_flare
from oss_net.data.layout import SPLITS, CaseFiles, canonical_dataset, discover_brats, discover_lits
from oss_net.data.nnunet import DATASET_JSON, read_json, scan_msd, scan_nnunet
from oss_net.data.scan import LayoutScan, split_assignment

EXTERNAL_DATASETS = ("nnunet", "msd", "flare")
_SCANNERS = {"nnunet": scan_nnunet, "msd": scan_msd, "flare": scan_flare}


def scan_layout(dataset: str, root: str | Path, border_dir: str | Path | None = None,
                check_grids: bool = True) -> LayoutScan:
    """Every case and every problem of an nnU-Net, Decathlon or FLARE21 folder (no error for the problems)."""
    dataset = canonical_dataset(dataset)
    if dataset not in _SCANNERS:
        raise DatasetError(f"{dataset!r} is not one of the layouts {', '.join(EXTERNAL_DATASETS)}")
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder not found (check the path)")
    return _SCANNERS[dataset](root, border_dir, check_grids)


def discover_layout(dataset: str, root: str | Path, split: str = "train", split_file: str | Path | None = None,
                    border_dir: str | Path | None = None, seed: int = 0, fold: int = 0) -> list[CaseFiles]:
    """The cases of `split` of an nnU-Net, Decathlon or FLARE21 dataset, sorted by case id.

    Every problem of the folder (a label without images, a missing channel, numTraining disagreeing,
    channels on different grids) is raised at once. The train/val split comes from `split_file`,
    else nnU-Net's splits_final.json fold `fold`, else the seeded default split (1 case in 5 held out).
    "test" is the unlabelled cases (imagesTs, the Decathlon's 'test' list, FLARE21's ValidationImg).
    """
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    root = Path(root)
    scan = scan_layout(dataset, root, border_dir)
    scan.raise_problems(root)
    if split == "test":
        if not scan.test:
            raise DatasetError(f"{root}: no unlabelled (test) cases found")
        return list(scan.test)
    if not scan.training:
        raise DatasetError(f"{root}: no labelled cases found")
    if split == "all":
        return list(scan.training)
    assignment = split_assignment([c.case_id for c in scan.training], root, canonical_dataset(dataset),
                                  split_file, seed, fold)
    return [case for case in scan.training if assignment[case.case_id] == split]


def dataset_info(dataset: str, root: str | Path) -> DatasetInfo:
    """The channels, modalities and labels of any dataset; `num_training` counts its labelled cases."""
    dataset = canonical_dataset(dataset)
    if dataset == "brats":
        return dataclasses.replace(BRATS_INFO, num_training=len(discover_brats(root, "all")))
    if dataset == "lits":
        return dataclasses.replace(LITS_INFO, num_training=len(discover_lits(root, "all")))
    return scan_layout(dataset, root, check_grids=False).info


def detect_dataset(root: str | Path) -> str:
    """The dataset whose layout `root` has: a dataset.json with channel_names (nnunet) or modality (msd),
    a TrainingImg folder (flare), BraTS 2020 folders or case folders (brats), LiTS volumes (lits)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder not found (check the path)")
    if (root / DATASET_JSON).is_file():
        record = read_json(root / DATASET_JSON)
        if "channel_names" in record:
            return "nnunet"
        if "modality" in record:
            return "msd"
        raise DatasetError(f"{root / DATASET_JSON}: has neither 'channel_names' (nnU-Net v2) nor 'modality' "
                           "(Decathlon); pass --dataset")
    if (root / FLARE_IMAGES).is_dir():
        return "flare"
    if any(root.glob("MICCAI_BraTS2020_*")) or any(root.glob("*/*_flair.nii*")):
        return "brats"
    if (root / "TrainingData" / "input").is_dir() or any(root.rglob("volume-*.nii*")):
        return "lits"
    raise DatasetError(f"{root}: not a BraTS 2020, LiTS, nnU-Net, Decathlon or FLARE21 layout; pass --dataset")
