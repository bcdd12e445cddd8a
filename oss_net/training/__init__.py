"""Training of OSS-Net: `train(settings)` and the command line of `train_oss_net.py` / `oss-net-train`."""
from __future__ import annotations

from oss_net.training.cli import build_parser, main, settings_from_args, train
from oss_net.training.settings import SettingsError, TrainSettings, learning_rate, lr_milestones, resolve_settings
from oss_net.training.step import StepLosses, step_losses, train_step


def demo_settings(dataset_path: str, output_dir: str, **overrides) -> TrainSettings:
    """The `--demo` preset on `dataset_path` (used by `make demo`), with field overrides.

    Border-weighted sampling (0.5) as the preset needs; pass uniform_sampling=True for the paper's BraTS choice.
    """
    return resolve_settings({"train": True, "test": True, "demo": True, "cpu": True,
                             "dataset_path": str(dataset_path), "output_dir": str(output_dir), **overrides})


__all__ = ["SettingsError", "StepLosses", "TrainSettings", "build_parser", "demo_settings", "learning_rate", "lr_milestones",
           "main", "resolve_settings", "settings_from_args", "step_losses", "train", "train_step"]
