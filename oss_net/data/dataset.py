"""The training/validation dataset: one model-grid volume plus sampled query points per item.

Patches are not built here: the training loop gathers them on its device with `gather_patches`
from the batched volume, so a worker never materialises 2^14 patches on the CPU.

Randomness: item `i` in epoch `e` draws everything (augmentation, points) from a torch.Generator
seeded by (seed, e, i), so the samples do not depend on the number of workers or their order, and
the same seed reproduces a run. Call `set_epoch(e)` before each epoch; DataLoader workers receive a
copy of the dataset when they start, so use `persistent_workers=False` (the default) for the new
epoch to reach them.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from oss_net.data.augment import AUGMENTATIONS, augment_with
from oss_net.data.case_files import CaseFiles
from oss_net.data.cases import load_case
from oss_net.data.class_targets import class_label_and_border
from oss_net.data.sampling import labels_at, sample_coordinates
from oss_net.datasets import DatasetError
from oss_net.labels import scheme_of


class OSSNetDataset(Dataset):
    """Items `{"volume": [C, *volume_shape] f32, "label": [*volume_shape] u8, "coords": [S, 3] f32,
    "labels": [S, 1] f32, "case_id": str}`.

    With a label mode other than binary (`config.label_mode`), "label" holds the dataset's values,
    "labels" is [S, K] (or [S, K + 1], see `oss_net.labels`) and the border band is the
    union of every class's band.

    Args:
        cases: labelled cases (from `discover`).
        config: needs `dataset`, `volume_shape`, `in_channels`.
        samples: S query points per volume (2^14 as the paper).
        border_balance: ρ, fraction of points drawn from the border band (0 = uniform).
        augment: the paper's flips / brightness / noise (training only).
        augmentation: "ours" or "original" (paper mode): see `oss_net.data.augment`.
        cache_dir: folder of the preprocessed cache; None re-reads the NIfTI files every time.
        include_last_index, continuous: see `sample_coordinates`; with `continuous` the targets are the label
            interpolated at the points (`LabelScheme.point_targets`).
        seed: base seed of every random draw.
    """

    def __init__(self, cases: Sequence[CaseFiles], config: Any, samples: int = 2**14, border_balance: float = 0.0,
                 augment: bool = False, cache_dir: str | Path | None = None, include_last_index: bool = True,
                 continuous: bool = False, seed: int = 0, augmentation: str = "ours") -> None:
        unlabelled = [c.case_id for c in cases if c.label is None]
        if unlabelled:
            raise DatasetError(f"cases without a label file cannot be used for training: {unlabelled[:5]}")
        if not 0.0 <= border_balance <= 1.0:
            raise ValueError(f"border_balance must lie in [0, 1], got {border_balance}")
        if augmentation not in AUGMENTATIONS:
            raise ValueError(f"augmentation must be one of {AUGMENTATIONS}, got {augmentation!r}")
        self.cases = list(cases)
        self.config = config
        self.samples = int(samples)
        self.border_balance = float(border_balance)
        self.augment = augment
        self.augmentation = augmentation
        self.cache_dir = cache_dir
        self.include_last_index = include_last_index
        self.continuous = continuous
        self.seed = int(seed)
        self.epoch = 0
        self.scheme = scheme_of(config)

    def set_epoch(self, epoch: int) -> None:
        """Select the random stream of `epoch` (new augmentations and points each epoch)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.cases)

    def generator(self, index: int) -> torch.Generator:
        """The generator of item `index` in the current epoch."""
        state = np.random.SeedSequence([self.seed, self.epoch, index]).generate_state(1, dtype=np.uint64)[0]
        return torch.Generator().manual_seed(int(state))

    def __getitem__(self, index: int) -> dict:
        files = self.cases[index]
        needs_border = self.border_balance > 0
        case = load_case(files, self.config, self.cache_dir, with_border=needs_border)
        generator = self.generator(index)
        volume = torch.from_numpy(np.array(case.image, dtype=np.float32))  # [C, D, H, W]
        label = torch.from_numpy(np.asarray(case.raw_label) > 0).to(torch.uint8)  # [D, H, W]
        border = torch.from_numpy(np.array(case.border)) if needs_border else None
        if self.scheme.mode != "binary":  # the dataset's values, and every class's border band [K, D, H, W]
            label, border = class_label_and_border(self.scheme, case.raw_label, border, files.label)
        if self.augment:
            volume, (label, border) = augment_with(self.augmentation, volume, [label, border], generator, case.meta)
        if border is not None and not bool(border.any()):
            warnings.warn(f"{files.case_id}: empty label, no border band; sampling uniformly", RuntimeWarning,
                          stacklevel=2)
            border = None
        coords = sample_coordinates(volume.shape[1:], border, self.samples, self.border_balance if border is not None
                                    else 0.0, generator, self.include_last_index, self.continuous)
        if self.scheme.mode == "binary" and not self.continuous:
            labels = labels_at(label, coords)
        else:  # continuous points: the label interpolated there (binary included, as the foreground's indicator)
            labels = self.scheme.point_targets(label, coords, interpolate=self.continuous)
        return {"volume": volume.contiguous(), "label": label.contiguous(), "coords": coords,
                "labels": labels, "case_id": files.case_id}


def collate_samples(items: list[dict]) -> dict:
    """Stack a list of items into a batch: tensors gain a leading B axis, `case_id` becomes a list."""
    batch = {key: torch.stack([item[key] for item in items]) for key in ("volume", "label", "coords", "labels")}
    batch["case_id"] = [item["case_id"] for item in items]
    return batch
