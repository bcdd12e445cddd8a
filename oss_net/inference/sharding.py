"""Sharded prediction: N jobs (a SLURM array, any scheduler, torchrun's ranks) share the cases and one output folder.

    oss-net-predict -i imagesTs -o predictions -m best.pt --num_parts 8 --part_id $SLURM_ARRAY_TASK_ID
    torchrun --nproc_per_node 4 -m oss_net.predict -i imagesTs -o predictions -m best.pt   # a part per GPU

nnU-Net's convention: the cases sorted by id, part `I` of `N` takes every N-th from the I-th on
(`sorted(cases)[I::N]`), so every job computes the same split without talking to the others and each case
belongs to exactly one part. Under torchrun (RANK and WORLD_SIZE set, no `--num_parts`), rank I of N takes
part I on its node's GPU LOCAL_RANK. What keeps the jobs from trampling each other in the one output folder
is `oss_net.io.outputs_lock`: the folder's manifest, oss-net-predict's predictions.json and oss-net-infer's
summary are read, changed and written under it, one process at a time; each part claims and cleans only its own
cases' outputs, and oss-net-infer's parts each hold their own run lock (`outputs.output_folder_lock`).
"""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from typing import Sequence, TypeVar

from .options import InferenceError

CaseT = TypeVar("CaseT")


@dataclass(frozen=True)
class Part:
    """Part `part_id` (0-based) of `num_parts`; Part(1, 0) is the whole run."""

    num_parts: int = 1
    part_id: int = 0

    def __post_init__(self) -> None:
        if self.num_parts < 1:
            raise InferenceError(f"--num_parts must be at least 1, got {self.num_parts}")
        if not 0 <= self.part_id < self.num_parts:
            raise InferenceError(f"--part_id must lie in 0..{self.num_parts - 1} for --num_parts {self.num_parts}, "
                                 f"got {self.part_id}")

    @property
    def sharded(self) -> bool:
        return self.num_parts > 1

    def take(self, cases: Sequence[CaseT]) -> list[CaseT]:
        """This part's cases: sorted by `case_id`, every `num_parts`-th from the `part_id`-th on."""
        ordered = sorted(cases, key=lambda case: case.case_id)  # type: ignore[attr-defined]
        return ordered[self.part_id::self.num_parts]

    def describe(self) -> str:
        return f"part {self.part_id + 1} of {self.num_parts}"

    @property
    def label(self) -> str:
        """`part-<I>-of-<N>` (0-based I, as --part_id): in the name of the part's run lock."""
        return f"part-{self.part_id}-of-{self.num_parts}"


def resolve_part(num_parts: int | None = None, part_id: int | None = None) -> Part:
    """The part a job runs: the given one, else torchrun's (RANK of WORLD_SIZE), else the whole run."""
    if num_parts is None and part_id is not None:
        raise InferenceError("--part_id needs --num_parts")
    if num_parts is not None:
        return Part(num_parts, 0 if part_id is None else part_id)
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    return Part(world, int(os.environ.get("RANK", "0") or 0)) if world > 1 else Part()


def rank_device(cpu: bool = False) -> str | None:
    """The device of a torchrun rank: its node's GPU LOCAL_RANK (None outside torchrun or with `cpu`)."""
    local = os.environ.get("LOCAL_RANK")
    return None if cpu or local is None or int(os.environ.get("WORLD_SIZE", "1") or 1) < 2 else f"cuda:{int(local)}"


def add_sharding_flags(parser: argparse.ArgumentParser) -> None:
    """`--num_parts N --part_id I` (oss-net-predict and oss-net-infer)."""
    parser.add_argument("--num_parts", type=int, default=None, metavar="N",
                        help="split the sorted cases into N parts for N jobs sharing one output folder (a SLURM array); "
                             "default: 1, or torchrun's WORLD_SIZE")
    parser.add_argument("--part_id", type=int, default=None, metavar="I",
                        help="the part this job predicts, 0..N-1: the cases sorted[I::N] (default: 0, or torchrun's "
                             "RANK)")
