"""Datasets, preprocessing, border maps, point sampling and patch gathering for OSS-Net.

See docs/architecture.md §`oss_net.data` for the contract other packages rely on.
"""
from __future__ import annotations

from oss_net.data.borders import compute_border, generate_borders
from oss_net.data.cases import Case, load_case
from oss_net.data.dataset import OSSNetDataset, collate_samples
from oss_net.data.errors import DatasetError
from oss_net.data.grid import GridMeta
from oss_net.data.layout import (CaseFiles, default_split, discover, discover_brats, discover_case_folder,
                                 discover_lits)
from oss_net.data.sampling import gather_patches, labels_at, sample_coordinates, segmentation_target

__all__ = [
    "Case", "CaseFiles", "DatasetError", "GridMeta", "OSSNetDataset", "collate_samples", "compute_border",
    "default_split", "discover", "discover_brats", "discover_case_folder", "discover_lits", "gather_patches",
    "generate_borders", "labels_at", "load_case", "sample_coordinates", "segmentation_target",
]
