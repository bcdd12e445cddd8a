"""Small shared helpers for the benchmark scripts: timing, tables, JSON output and the one memory unit.

Every memory figure is in GiB (2^30 bytes) and says so in its column or key name ("..._GiB").
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Callable, Sequence

from oss_net.io import atomic_save_json

RESULTS_DIR = Path(__file__).resolve().parent / "results"
GIB = 2**30


def to_gib(nbytes: float) -> float:
    """Bytes as GiB (2^30 bytes), the one memory unit of every benchmark."""
    return nbytes / GIB


def time_call(fn: Callable[[], object], repeats: int = 5, warmup: int = 1, synchronize: Callable[[], None] | None = None) -> float:
    """Median wall-clock seconds of fn() over `repeats` runs after `warmup` runs."""
    for _ in range(warmup):
        fn()
    if synchronize:
        synchronize()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if synchronize:
            synchronize()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def interleaved_seconds(steps: dict[str, Callable[[], object]], rounds: int, warmup: int,
                        synchronize: Callable[[], None] | None = None) -> dict[str, list[float]]:
    """Seconds of each step over `rounds` rounds that run every step once, after `warmup` rounds.

    Interleaving makes a burst of load from other jobs on a shared machine hit every step alike.
    """
    samples: dict[str, list[float]] = {name: [] for name in steps}
    for round_index in range(warmup + rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            if synchronize:
                synchronize()
            if round_index >= warmup:
                samples[name].append(time.perf_counter() - start)
    return samples


def format_table(rows: Sequence[dict], columns: Sequence[str] | None = None) -> str:
    """A markdown table of dict rows (floats shown with 4 significant digits)."""
    if not rows:
        return "(no rows)"
    columns = list(columns or rows[0].keys())

    def cell(value: object) -> str:
        if isinstance(value, float):
            return f"{value:.4g}"
        return str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def write_result(name: str, result: dict) -> Path:
    """Write benchmarks/results/<name>.json atomically and return its path."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    atomic_save_json(result, path)
    return path


def bench_main(run: Callable[[str, bool], dict], description: str, smoke_help: str, argv: Sequence[str] | None = None) -> int:
    """The command line every benchmark shares: `--size {cpu,gpu}` and `--smoke`, then one call of run."""
    import argparse

    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--size", choices=("cpu", "gpu"), default="cpu", help="problem sizes (default: cpu)")
    parser.add_argument("--smoke", action="store_true", help=smoke_help)
    args = parser.parse_args(argv)
    run(args.size, args.smoke)
    return 0


def benchmark_device(size: str) -> "torch.device":
    """The device for a benchmark size: "cpu" runs here, "gpu" needs CUDA; anything else is an error."""
    import torch

    if size not in ("cpu", "gpu"):
        raise ValueError(f"size must be 'cpu' or 'gpu', got {size!r}")
    if size == "gpu" and not torch.cuda.is_available():
        raise RuntimeError("size='gpu' needs a CUDA device; use size='cpu'")
    return torch.device("cuda" if size == "gpu" else "cpu")
