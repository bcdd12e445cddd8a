"""Shared session fixtures: small synthetic datasets in the real BraTS 2020 and LiTS layouts.

The dataset folders are built once per test session and shared by every test: treat them as
read-only (copy one with `shutil.copytree` into `tmp_path` before writing border maps or
breaking files). Configurations come from `oss_net.models.demo_config`.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from oss_net.data.synthetic import write_synthetic_dataset

BRATS_CASES = 4  # with the default split (45/369 held out, at least one) → 3 train + 1 val
LITS_CASES = 3  # → 2 train + 1 val
BRATS_SHAPE = (60, 60, 38)  # padded to the demo grid (64, 64, 40)
LITS_SHAPE = (40, 40, 24)


@pytest.fixture(scope="session")
def synthetic_brats_root(tmp_path_factory) -> Path:
    """A BraTS 2020 root (`MICCAI_BraTS2020_TrainingData/BraTS20_Training_00{1..4}/`), seed 0."""
    return write_synthetic_dataset("brats", tmp_path_factory.mktemp("brats"), BRATS_CASES, BRATS_SHAPE, seed=0)


@pytest.fixture(scope="session")
def synthetic_lits_root(tmp_path_factory) -> Path:
    """A LiTS root with `volume-{0,1,2}.nii` + `segmentation-{0,1,2}.nii`, seed 0."""
    return write_synthetic_dataset("lits", tmp_path_factory.mktemp("lits"), LITS_CASES, LITS_SHAPE, seed=0)


@pytest.fixture(scope="session")
def brats_config():
    """The demo configuration C for BraTS: model grid 64×64×40, 4 channels."""
    from oss_net.models import demo_config

    return demo_config("C", "brats")


@pytest.fixture(scope="session")
def lits_config():
    """The demo configuration C for LiTS with a 32³ model grid (small and fast), 1 channel."""
    from oss_net.models import demo_config

    return demo_config("C", "lits", volume_shape=(32, 32, 32))
