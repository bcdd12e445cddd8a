"""Datasets, preprocessing, border maps, point sampling and patch gathering for OSS-Net.

`DATASETS`, `canonical_dataset`, `DatasetError` (`oss_net.datasets`) and `PATCH_SIZE`, `spacing_from_affine`
(`oss_net.geometry`) are re-exported from their leaf modules, which the models and metrics use directly.

See docs/architecture.md §`oss_net.data` for the contract other packages rely on.
"""
from __future__ import annotations

from oss_net.data.borders import compute_border, generate_borders
from oss_net.data.case_files import CaseFiles
from oss_net.data.cases import Case, load_case
from oss_net.data.channels import read_channels
from oss_net.data.dataset import OSSNetDataset, collate_samples
from oss_net.data.dataset_info import DatasetInfo
from oss_net.data.grid import GridMeta
from oss_net.data.layouts import dataset_info, detect_dataset, discover, discover_case_folder
from oss_net.data.layouts.brats import discover_brats
from oss_net.data.layouts.lits import discover_lits
from oss_net.data.patches import PatchSource, gather_patches
from oss_net.data.sampling import labels_at, sample_coordinates, segmentation_target
from oss_net.data.splits import SPLITS, default_split
from oss_net.datasets import DATASETS, DatasetError, canonical_dataset
from oss_net.geometry import PATCH_SIZE, spacing_from_affine

__all__ = [
    "DATASETS", "PATCH_SIZE", "SPLITS", "Case", "CaseFiles", "DatasetError", "DatasetInfo", "GridMeta", "OSSNetDataset", "PatchSource",
    "canonical_dataset", "collate_samples", "compute_border", "dataset_info", "default_split", "detect_dataset", "discover", "discover_brats",
    "discover_case_folder", "discover_lits", "gather_patches", "generate_borders", "labels_at", "load_case",
    "read_channels", "sample_coordinates", "segmentation_target", "spacing_from_affine",
]
