"""What one case costs a model at inference, as the FLARE21 challenge reports it: parameters, GFLOPs per case,
seconds per case and peak memory.

    cost = case_cost("OSS-Net C", make_predictor(model), case.image)
    print(efficiency_table([cost, unet_cost]))

- GFLOPs: what `torch.utils.flop_counter` counts for one prediction (convolutions and matrix products, 2 per
  multiply-add; element-wise work is not counted), the folded decoder's in-place `baddbmm_` included. For
  OSS-Net it follows the points the refinement decodes, so it depends on the case.
- seconds: the median wall-clock time of `repeats` predictions after one warm-up.
- peak memory: on a GPU `torch.cuda.max_memory_allocated` over one prediction; on the CPU the highest total of
  live tensor allocations the profiler records over one prediction (tensors only, as on the GPU; not the
  process's resident size).
"""
from __future__ import annotations

import contextlib
import itertools
import os
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import torch
from torch.utils.flop_counter import FlopCounterMode

from oss_net.models import count_parameters


@dataclass(frozen=True)
class CaseCost:
    """One model's cost for one case."""

    name: str
    parameters: int
    gflops: float
    seconds: float
    peak_mib: float
    points_evaluated: int


def baddbmm_flops(self_shape: torch.Size, left: torch.Size, right: torch.Size, *args: object, **kwargs: object) -> int:
    """2 B M K N: the matmul FLOPs of an (in-place) baddbmm of [B, M, K] and [B, K, N]."""
    return 2 * left[0] * left[1] * left[2] * right[2]


# the folded decoder's identity shortcuts accumulate with in-place baddbmm_, which the counter does not know
FLOP_COUNTS = {torch.ops.aten.baddbmm_: baddbmm_flops}


def counted_flops(call: Callable[[], object]) -> float:
    """The FLOPs `torch.utils.flop_counter` counts for one call (with `FLOP_COUNTS`)."""
    with FlopCounterMode(display=False, custom_mapping=FLOP_COUNTS) as counter:
        call()
    return float(counter.get_total_flops())


def peak_memory_bytes(call: Callable[[], object], device: torch.device) -> int:
    """The most tensor memory live at once during `call`, above what was live before it (module docstring)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        call()
        torch.cuda.synchronize(device)
        return int(torch.cuda.max_memory_allocated(device) - before)
    with _quiet_native_stderr(), torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU],
                                                        profile_memory=True) as profile:
        call()
    events = sorted((event.start_ns(), event.nbytes()) for event in profile.profiler.kineto_results.events()
                    if event.name() == "[memory]")
    return int(max(itertools.accumulate(nbytes for _, nbytes in events), default=0))


def case_cost(name: str, predictor: Any, image: Any, repeats: int = 3) -> CaseCost:
    """Parameters, GFLOPs, median seconds and peak memory of `predictor` (`make_predictor`'s) on one image."""
    prediction = predictor.predict(image)  # the warm-up, and the points this case needs
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        predictor.predict(image)
        seconds.append(time.perf_counter() - start)
    return CaseCost(name, count_parameters(predictor.model), counted_flops(lambda: predictor.predict(image)) / 1e9,
                    statistics.median(seconds), peak_memory_bytes(lambda: predictor.predict(image), predictor.device) / 2**20,
                    prediction.points_evaluated)


def efficiency_table(costs: Sequence[CaseCost]) -> str:
    """The FLARE-style table: one row per model, and each figure's ratio to the first row's."""
    first = costs[0]
    ratios = [f"  {cost.name} / {first.name}" for cost in costs[1:]]
    width = max(len(label) for label in ["model", *(cost.name for cost in costs), *ratios])
    lines = [f"{'model':<{width}} {'parameters':>11} {'GFLOPs/case':>12} {'s/case':>8} {'peak MiB':>9} {'points':>9}"]
    for cost in costs:
        lines.append(f"{cost.name:<{width}} {cost.parameters:>11,} {cost.gflops:>12.2f} {cost.seconds:>8.2f} "
                     f"{cost.peak_mib:>9.1f} {cost.points_evaluated:>9,}")
    for label, cost in zip(ratios, costs[1:]):
        lines.append(f"{label:<{width}} {cost.parameters / first.parameters:>10.2f}x "
                     f"{cost.gflops / first.gflops:>11.2f}x {cost.seconds / first.seconds:>7.2f}x "
                     f"{cost.peak_mib / max(first.peak_mib, 1e-9):>8.2f}x")
    return "\n".join(lines)


@contextlib.contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """Silence what native code writes to file descriptor 2 (the CPU profiler's start/stop lines)."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
