"""The dataset layouts, one scanner each, behind one registry: `LAYOUTS` maps a dataset name to its `Layout`.

| name   | module   | layout                                                                   |
|--------|----------|--------------------------------------------------------------------------|
| nnunet | `nnunet` | nnU-Net v2 raw: dataset.json with channel_names, imagesTr/<case>_XXXX     |
| msd    | `msd`    | Decathlon task: dataset.json with modality, 4-D multi-channel images     |
| flare  | `flare`  | FLARE21: TrainingImg / TrainingMask / ValidationImg, no dataset.json     |
| brats  | `brats`  | BraTS 2020: a folder per case, files named by modality                   |
| lits   | `lits`   | LiTS: volume-N / segmentation-N, as distributed or in the original's folders |

Every question about a dataset on disk goes through the registry: `discover` (the cases of a split),
`scan_layout` (every case and problem, for the layouts that list them), `dataset_info` (channels and
labels), `detect_dataset` (the layout of a folder, so `--dataset` may be omitted) and
`discover_case_folder` (one case given alone). The types they share are in `oss_net.data.case_files`.
"""
from __future__ import annotations

from pathlib import Path

from oss_net.data.case_files import CaseFiles, Layout, LayoutScan
from oss_net.data.dataset_info import DatasetInfo
from oss_net.data.layouts.brats import BRATS
from oss_net.data.layouts.common import existing_folder, scan_folder
from oss_net.data.layouts.flare import FLARE
from oss_net.data.layouts.lits import LITS
from oss_net.data.layouts.msd import MSD
from oss_net.data.layouts.nnunet import NNUNET
from oss_net.datasets import DatasetError, canonical_dataset

# In detection order: a dataset.json decides before any folder name does.
LAYOUTS: dict[str, Layout] = {layout.name: layout for layout in (NNUNET, MSD, FLARE, BRATS, LITS)}
EXTERNAL_DATASETS = tuple(name for name, layout in LAYOUTS.items() if layout.scan is not None)  # nnunet, msd, flare


def layout_of(dataset: str) -> Layout:
    """The registry entry of a dataset name in any accepted spelling (`oss_net.datasets.canonical_dataset`)."""
    return LAYOUTS[canonical_dataset(dataset)]


def discover(dataset: str, root: str | Path, split: str = "train", split_file: str | Path | None = None,
             border_dir: str | Path | None = None, seed: int = 0, fold: int = 0) -> list[CaseFiles]:
    """The cases of `split` ("train", "val", "all" labelled cases, or "test": unlabelled) of a dataset.

    `fold` picks the fold of an nnU-Net splits_final.json (nnunet, msd, flare only).
    """
    return layout_of(dataset).discover(root, split, split_file, border_dir, seed, fold)


def scan_layout(dataset: str, root: str | Path, border_dir: str | Path | None = None,
                check_grids: bool = True) -> LayoutScan:
    """Every case and every problem of an nnU-Net, Decathlon or FLARE21 folder (no error for the problems)."""
    layout = layout_of(dataset)
    if layout.scan is None:
        raise DatasetError(f"{layout.name!r} is not one of the layouts {', '.join(EXTERNAL_DATASETS)}")
    return scan_folder(layout.scan, root, border_dir, check_grids)


def dataset_info(dataset: str, root: str | Path) -> DatasetInfo:
    """The channels, modalities and labels of any dataset; `num_training` counts its labelled cases."""
    return layout_of(dataset).info(root)


def detect_dataset(root: str | Path) -> str:
    """The dataset whose layout `root` has: a dataset.json with channel_names (nnunet) or modality (msd),
    a TrainingImg folder (flare), BraTS 2020 folders or case folders (brats), LiTS volumes (lits)."""
    root = existing_folder(root)
    for name, layout in LAYOUTS.items():
        if layout.detect(root):
            return name
    raise DatasetError(f"{root}: not a BraTS 2020, LiTS, nnU-Net, Decathlon or FLARE21 layout; pass --dataset")


def discover_case_folder(path: str | Path, dataset: str, border_dir: str | Path | None = None) -> CaseFiles:
    """One case given by its folder (BraTS) or by its volume file (LiTS ``volume-N.nii``)."""
    path = Path(path)
    layout = layout_of(dataset)
    if layout.read_case is None:
        alone = " or ".join(name for name, entry in LAYOUTS.items() if entry.read_case is not None)
        raise DatasetError(f"{path}: a single case can be given for {alone} only, not {dataset!r}")
    return layout.read_case(path, border_dir)
