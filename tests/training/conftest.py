"""Tiny training settings on the shared synthetic BraTS set (3 training cases, 1 validation case)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest

from oss_net.training.settings import TrainSettings, resolve_settings

TINY = {
    "train": True, "demo": True, "cpu": True, "uniform_sampling": True, "batch_size": 1,
    "training_samples": 64, "val_samples": 128, "dense_validation": False, "augment": True,
}


@pytest.fixture
def tiny_settings(synthetic_brats_root: Path, tmp_path: Path) -> Callable[..., TrainSettings]:
    """settings(**overrides): the demo preset shrunk to a few seconds per run, in tmp_path/run."""

    def build(**overrides: Any) -> TrainSettings:
        values = {**TINY, "dataset_path": str(synthetic_brats_root), "output_dir": str(tmp_path / "run"), **overrides}
        return resolve_settings(values)

    return build
