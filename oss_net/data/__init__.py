"""Datasets, preprocessing, border maps, point sampling and patch gathering for OSS-Net.

See docs/architecture.md §`oss_net.data` for the contract other packages rely on.
"""
from __future__ import annotations

from oss_net.data.borders import compute_border, generate_borders
from oss_net.data.cases import Case, load_case
from oss_net.data.channels import read_channels
from oss_net.data.dataset import OSSNetDataset, collate_samples
from oss_net.data.dataset_info import DatasetInfo
from oss_net.data.errors import DatasetError
from oss_net.data.grid import GridMeta, spacing_from_affine
from oss_net.data.layout import (DATASETS, SPLITS, CaseFiles, canonical_dataset, default_split, discover, discover_brats,
                                 discover_case_folder, discover_lits)
from oss_net.data.layouts import dataset_info, detect_dataset
from oss_net.data.patches import PATCH_SIZE, PatchSource, gather_patches
from oss_net.data.sampling import labels_at, sample_coordinates, segmentation_target

__all__ = [
    "DATASETS", "PATCH_SIZE", "SPLITS", "Case", "CaseFiles", "DatasetError", "DatasetInfo", "GridMeta", "OSSNetDataset", "PatchSource",
    "canonical_dataset", "collate_samples", "compute_border", "dataset_info", "default_split", "detect_dataset", "discover", "discover_brats",
    "discover_case_folder", "discover_lits", "gather_patches", "generate_borders", "labels_at", "load_case",
    "read_channels", "sample_coordinates", "segmentation_target", "spacing_from_affine",
]
