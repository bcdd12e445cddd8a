"""Data order that depends only on (seed, epoch): resumable mid-epoch and split across ranks.

`torch.utils.data.DistributedSampler` shuffles per (seed, epoch) too, but cannot start in the middle
of an epoch; resuming at iteration granularity needs that, so this sampler does both. Every global
batch of `batch_size × world_size` consecutive indices of the epoch's permutation is cut into one
slice per rank; the tail that does not fill a global batch is dropped (drop_last, as the original).
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
from torch.utils.data import Sampler


def derive_seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from integers, e.g. (seed, epoch) or (seed, epoch, index)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, dtype=np.uint64)[0] >> np.uint64(1))


def epoch_order(length: int, seed: int, epoch: int) -> list[int]:
    """The shuffled order of the dataset in `epoch` (identical on every rank and every resume)."""
    generator = torch.Generator().manual_seed(derive_seed(seed, epoch))
    return torch.randperm(length, generator=generator).tolist()


class ResumableSampler(Sampler[int]):
    """Indices of this rank's samples for one epoch, optionally starting at batch `start_batch`."""

    def __init__(self, length: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1) -> None:
        self.length = length
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.start_batch = 0

    @property
    def batches_per_epoch(self) -> int:
        return self.length // (self.batch_size * self.world_size)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch = epoch
        self.start_batch = start_batch

    def __iter__(self) -> Iterator[int]:
        order = epoch_order(self.length, self.seed, self.epoch)
        global_batch = self.batch_size * self.world_size
        for batch in range(self.start_batch, self.batches_per_epoch):
            first = batch * global_batch + self.rank * self.batch_size
            yield from order[first:first + self.batch_size]

    def __len__(self) -> int:
        return max(0, self.batches_per_epoch - self.start_batch) * self.batch_size
