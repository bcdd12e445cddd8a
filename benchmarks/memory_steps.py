"""Real training steps, each in a fresh process, and the memory each one takes: `bench_memory`'s measured rows.

    python -m benchmarks.memory_steps '{"model": "C", "dataset": "lits", "grid": [512, 512, 512], "recompute": true}'

The child process builds the model on its device and takes a warm-up step (forward, loss, backward, Adam
step: the first call's allocations, Adam's moments), then measures a second step alone:

- CPU: resident memory. glibc hands back what the warm-up freed (malloc_trim), the kernel's high-water mark
  is reset (`/proc/self/clear_refs`), and the step's peak is VmHWM minus the resident size just before the
  step. Where the kernel does not reset the mark, a thread samples VmRSS every millisecond instead.
- CUDA: torch.cuda.max_memory_allocated after reset_peak_memory_stats, minus memory_allocated before.

So the peak is the step's own: activations, gradients in flight, temporaries. The weights, Adam's moments
and the batch exist before the step and are not in it; nor is the start-up (python, torch, libraries).
Beside it stands the device-free count of the same step's activations (`memory_counts`).

The parent guards this machine, which other jobs share: a step runs only when its predicted memory fits the
free memory, the child's address space is capped below that, and it has a time limit. A step that runs
out of memory under the cap, or out of time, is a row that says so; any other failure of the child raises
MeasuredStepError with its output.
"""
from __future__ import annotations

import ctypes
import gc
import json
import resource
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import GIB, interleaved_seconds, to_gib
from benchmarks.memory_counts import TRAIN_POINTS, build_at, training_batch, training_memory_bytes
from oss_net.models import set_activation_recomputation
from oss_net.training.step import train_step
from pade_activation_unit import backend_for

REPO = Path(__file__).resolve().parents[1]
OUT_OF_MEMORY_EXIT = 3  # the child's exit status when an allocation failed (under the cap, or on the GPU)
RESERVE_BYTES = 2 * GIB  # free memory left to the machine's other jobs
# A step needs its activations plus gradients in flight and temporaries: measured 1.05x to 1.41x the count
# at full size (3D U-Net 1.17x, U-Net + recompute 1.32x; up to 1.9x for the smallest U-Net step, 0.5 GiB),
# and the address-space cap stops one that needs more.
NEED_FACTOR = 1.25
NEED_EXTRA_BYTES = GIB  # plus the batch, the weights, Adam's moments and allocator slack
SAMPLE_SECONDS = 0.001


class MeasuredStepError(RuntimeError):
    """The child process of a measured step failed (other than by running out of memory or time)."""


@dataclass(frozen=True)
class StepSpec:
    """One measured training step: `model` ("C", any Table-1 name, or "unet3d") of `dataset` on the model grid
    `grid`, with or without activation recomputation, batch 1 with `points` points, on `device`."""

    model: str
    dataset: str
    grid: tuple[int, int, int]
    recompute: bool
    points: int = TRAIN_POINTS
    device: str = "cpu"

    @classmethod
    def from_json(cls, text: str) -> StepSpec:
        values = json.loads(text)
        return cls(**{**values, "grid": tuple(values["grid"])})

    def to_json(self) -> str:
        return json.dumps(asdict(self))


def status_bytes(field: str) -> int:
    """A memory field of /proc/self/status ("VmRSS", "VmHWM", "VmSize") in bytes."""
    with open("/proc/self/status") as status:
        return 1024 * next(int(line.split()[1]) for line in status if line.startswith(field + ":"))


def available_bytes() -> int:
    """MemAvailable of /proc/meminfo: what the machine can give a new process without swapping."""
    with open("/proc/meminfo") as meminfo:
        return 1024 * next(int(line.split()[1]) for line in meminfo if line.startswith("MemAvailable:"))


def machine_bytes() -> int:
    """MemTotal of /proc/meminfo."""
    with open("/proc/meminfo") as meminfo:
        return 1024 * next(int(line.split()[1]) for line in meminfo if line.startswith("MemTotal:"))


class ResidentPeak:
    """Peak resident memory of this process inside the `with` block, above the resident size at its start."""

    def __enter__(self) -> ResidentPeak:
        gc.collect()
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)  # give back what earlier steps freed, so it is not reused unseen
        except (OSError, AttributeError):
            pass
        self.before = status_bytes("VmRSS")
        self.samples: list[int] = []
        self.sampler: threading.Thread | None = None
        try:
            Path("/proc/self/clear_refs").write_text("5")
            reset = status_bytes("VmHWM") <= status_bytes("VmRSS") + 64 * 2**20
        except OSError:
            reset = False
        self.method = "VmHWM after a reset by /proc/self/clear_refs" if reset else "VmRSS sampled every ms"
        if not reset:
            self.running = True
            self.sampler = threading.Thread(target=self.sample, daemon=True)
            self.sampler.start()
        return self

    def sample(self) -> None:
        while self.running:
            self.samples.append(status_bytes("VmRSS"))
            time.sleep(SAMPLE_SECONDS)

    def __exit__(self, *exc: Any) -> None:
        if self.sampler is not None:
            self.running = False
            self.sampler.join()
            top = max(self.samples + [status_bytes("VmRSS")])
        else:
            top = status_bytes("VmHWM")
        self.peak = top - self.before


class CudaPeak:
    """Peak bytes the CUDA caching allocator handed out inside the `with` block, above those allocated at its start."""

    method = "torch.cuda.max_memory_allocated"

    def __enter__(self) -> CudaPeak:
        torch.cuda.synchronize()
        self.before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        return self

    def __exit__(self, *exc: Any) -> None:
        torch.cuda.synchronize()
        self.peak = torch.cuda.max_memory_allocated() - self.before


def probe(spec: StepSpec) -> dict[str, Any]:
    """In this process: a warm-up step, then one measured step of `spec`; its peak bytes and seconds."""
    torch.manual_seed(0)
    model = build_at(spec.model, spec.dataset, spec.grid, spec.device).train()
    set_activation_recomputation(model, spec.recompute)
    batch = training_batch(model, spec.points, spec.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    start = time.perf_counter()
    train_step(model, batch, optimizer)
    warmup_seconds = time.perf_counter() - start
    with (CudaPeak() if spec.device.startswith("cuda") else ResidentPeak()) as meter:
        start = time.perf_counter()
        train_step(model, batch, optimizer)
        if spec.device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    return {"peak_bytes": meter.peak, "before_bytes": meter.before, "seconds": seconds, "warmup_seconds": warmup_seconds,
            "measure": meter.method, "pau_backend": backend_for(torch.empty(1, device=spec.device))}


def is_out_of_memory(error: BaseException) -> bool:
    return isinstance(error, (MemoryError, torch.OutOfMemoryError)) or "can't allocate memory" in str(error)


def main(argv: list[str] | None = None) -> int:
    """The child: `python -m benchmarks.memory_steps SPEC_JSON [ADDRESS_SPACE_BYTES]`; prints one JSON line."""
    arguments = sys.argv[1:] if argv is None else argv
    spec = StepSpec.from_json(arguments[0])
    if len(arguments) > 1:  # cap the address space above what start-up has mapped
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        resource.setrlimit(resource.RLIMIT_AS, (status_bytes("VmSize") + int(arguments[1]), hard))
    try:
        result = probe(spec)
    except Exception as error:
        if not is_out_of_memory(error):
            raise
        print(json.dumps({"out_of_memory": str(error)[:300]}))
        return OUT_OF_MEMORY_EXIT
    print(json.dumps(result))
    return 0


def run_probe(spec: StepSpec, timeout_s: float, address_space_bytes: int | None = None) -> dict[str, Any]:
    """Run `probe(spec)` in a fresh python; its JSON, or {"out_of_memory": why} / {"timed_out": seconds}.

    Raises MeasuredStepError (with the child's output) when the child fails otherwise or reports no positive peak.
    """
    command = [sys.executable, "-m", "benchmarks.memory_steps", spec.to_json()]
    if address_space_bytes is not None:
        command.append(str(int(address_space_bytes)))
    try:
        completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, cwd=REPO)
    except subprocess.TimeoutExpired:
        return {"timed_out": timeout_s}
    lines = completed.stdout.strip().splitlines()
    if completed.returncode == OUT_OF_MEMORY_EXIT and lines:
        return json.loads(lines[-1])
    if completed.returncode != 0 or not lines:
        raise MeasuredStepError(f"measured step {spec.to_json()} failed (exit {completed.returncode}):\n"
                                f"{(completed.stdout + completed.stderr)[-3000:]}")
    result = json.loads(lines[-1])
    if not result.get("peak_bytes", 0) > 0:
        raise MeasuredStepError(f"measured step {spec.to_json()} reported no positive peak: {result}")
    return result


def predicted_row(spec: StepSpec) -> dict[str, Any]:
    """The row of `spec` before it runs: its device-free activations (the prediction) and parameter state."""
    model = build_at(spec.model, spec.dataset, spec.grid, "meta")
    activations, state = training_memory_bytes(model, spec.recompute, spec.points)
    return {"model": spec.model, "dataset": spec.dataset, "grid": "x".join(map(str, spec.grid)), "recompute": spec.recompute,
            "voxels": spec.grid[0] * spec.grid[1] * spec.grid[2], "predicted_GiB": to_gib(activations),
            "param_state_GiB": to_gib(state)}


def device_free_row(spec: StepSpec) -> dict[str, Any]:
    """A step that is counted, not run (the native LiTS U-Net): whether it would fit this machine's memory."""
    row = predicted_row(spec)
    need, total = row["predicted_GiB"] + row["param_state_GiB"], to_gib(machine_bytes())
    fits = "fits" if need < total else "does not fit"
    return {**row, "fits_this_machine": need < total,
            "status": f"device-free only: needs {need:.1f} GiB, {fits} this {total:.0f} GiB machine"}


def measured_row(spec: StepSpec, timeout_s: float) -> dict[str, Any]:
    """One `measured_steps` row: the step's peak and seconds next to the device-free count of its activations.

    On the CPU it runs only when that count (x NEED_FACTOR, plus NEED_EXTRA_BYTES) fits the free memory less
    RESERVE_BYTES, with the address space capped there; otherwise the row says what it would need.
    """
    row = predicted_row(spec)
    cap = None
    if spec.device == "cpu":
        need, free = NEED_FACTOR * row["predicted_GiB"] * GIB + NEED_EXTRA_BYTES, available_bytes()
        if need > free - RESERVE_BYTES:
            return {**row, "status": f"not run: needs about {to_gib(need):.1f} GiB, {to_gib(free):.1f} GiB free "
                                      f"on this {to_gib(machine_bytes()):.0f} GiB machine"}
        cap = free - RESERVE_BYTES
    start = time.perf_counter()
    outcome = run_probe(spec, timeout_s, cap)
    row["wall_seconds"] = time.perf_counter() - start  # the child's start-up and both steps
    if "out_of_memory" in outcome:
        limit = f"under the {to_gib(cap):.1f} GiB cap" if cap else "on the device"
        return {**row, "status": f"out of memory {limit}: {outcome['out_of_memory'][:120]}"}
    if "timed_out" in outcome:
        return {**row, "status": f"timed out after {outcome['timed_out']:.0f} s"}
    key = "peak_rss_GiB" if spec.device == "cpu" else "peak_cuda_GiB"
    peak = to_gib(outcome["peak_bytes"])
    return {**row, key: peak, "peak_over_predicted": peak / row["predicted_GiB"],
            "process_peak_GiB": to_gib(outcome["before_bytes"] + outcome["peak_bytes"]), "seconds": outcome["seconds"],
            "warmup_seconds": outcome["warmup_seconds"], "measure": outcome["measure"],
            "pau_backend": outcome["pau_backend"], "status": "measured"}


def recompute_time_cost(name: str, dataset: str, grid: tuple[int, int, int], rounds: int = 3, warmup: int = 1,
                        device: str = "cpu", threads: int | None = 1) -> dict[str, Any]:
    """Seconds per training step without and with recomputation: one model and batch, steps interleaved in
    rounds (so a burst of load from other jobs hits both alike), median of each. On the CPU with `threads`
    intra-op threads (one: on cores other jobs share, OpenMP's thread team waits on busy cores, which makes
    2-thread timings several times slower and noisier); None keeps torch's setting."""
    torch.manual_seed(0)
    model = build_at(name, dataset, grid, device).train()
    batch = training_batch(model, TRAIN_POINTS, device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step(recompute: bool) -> None:
        set_activation_recomputation(model, recompute)
        train_step(model, batch, optimizer)

    synchronize = torch.cuda.synchronize if device.startswith("cuda") else None
    previous = torch.get_num_threads()
    if threads is not None and device == "cpu":
        torch.set_num_threads(threads)
    try:
        samples = interleaved_seconds({"plain": lambda: step(False), "recompute": lambda: step(True)}, rounds, warmup, synchronize)
    finally:
        torch.set_num_threads(previous)
    plain, recompute = statistics.median(samples["plain"]), statistics.median(samples["recompute"])
    return {"model": name, "dataset": dataset, "grid": "x".join(map(str, grid)), "rounds": rounds,
            "threads": threads if device == "cpu" else None, "plain_s": plain, "recompute_s": recompute,
            "recompute_over_plain": recompute / plain, "samples_s": samples}


if __name__ == "__main__":
    raise SystemExit(main())
