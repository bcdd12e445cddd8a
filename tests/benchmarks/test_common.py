"""benchmarks.common: the device of a size, the one memory unit, the tables."""
from __future__ import annotations

import pytest
import torch

from benchmarks.common import GIB, benchmark_device, format_table, to_gib


def test_benchmark_device_rejects_unknown_sizes_and_missing_gpus():
    assert benchmark_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="size must be 'cpu' or 'gpu', got 'tpu'"):
        benchmark_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="needs a CUDA device"):
            benchmark_device("gpu")


def test_memory_is_in_binary_gigabytes():
    assert GIB == 1024**3
    assert to_gib(3 * 2**30) == 3.0
    assert to_gib(2**29) == 0.5


def test_format_table_rounds_floats_and_leaves_missing_cells_empty():
    table = format_table([{"model": "C", "train_GiB": 2.0 / 3.0}, {"model": "D"}])
    assert table.splitlines() == ["| model | train_GiB |", "|---|---|", "| C | 0.6667 |", "| D |  |"]
    assert format_table([]) == "(no rows)"


def test_interleaved_seconds_runs_every_step_once_per_round_and_keeps_the_rounds_after_warmup() -> None:
    from benchmarks.common import interleaved_seconds

    calls: list[str] = []
    samples = interleaved_seconds({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, rounds=3, warmup=2)
    assert calls == ["a", "b"] * 5  # interleaved: a burst of load hits both alike
    assert {name: len(seconds) for name, seconds in samples.items()} == {"a": 3, "b": 3}
