"""PAU forward+backward: our kernels against the eager reference and torch.compile(reference).

    python -m benchmarks.bench_pau            # CPU: [2^22] float32 (and the GPU section when a GPU exists)
    python -m benchmarks.bench_pau --smoke    # seconds

CPU: forward+backward of [2^22] float32 through autograd (upstream gradient given), for the CPU kernel,
the eager reference and torch.compile of the reference, with torch's thread count (section "cpu") and
with one thread (section "cpu 1 thread": how much the second thread buys). The implementations are timed
in interleaved rounds (each round runs each once), so a burst of load from other jobs on a shared machine
hits all of them alike; each row gives the median ("ms") and the fastest round ("min ms"), and "x kernel"
is the row's median over the kernel's median (how many times faster the kernel is). The memory traffic
floor is 20 bytes per element (forward reads x and writes y; backward reads x and the gradient and writes
grad_x): about 84 MB, ~8 ms at 10 GB/s.
GPU (only with a CUDA device and the built CUDA kernel; `bandwidth_section`): the decoder's shape
[8*2^14, 512] float32, forward and forward+backward, timed with CUDA events, as achieved GB/s and as a
percentage of two peaks: the achievable one (a 1 GiB device-to-device `clone` in the same run) and the
theoretical DRAM bandwidth (memory clock x bus width from torch, else the datasheet); and against
torch.compile(reference). benchmarks/gpu_check.sh runs this section alone.
"""
from __future__ import annotations

import statistics
from typing import Callable

import torch

from benchmarks.common import bench_main, format_table, interleaved_seconds, time_call, write_result
from pade_activation_unit import PAU, active_backend, backend_state, pau, pau_reference

BYTES_FORWARD = 8  # per float32 element: read x, write y
BYTES_FORWARD_BACKWARD = 20  # plus read x and grad_out, write grad_x
BANDWIDTH_SHAPE = (8 * 2**14, 512)  # decoder-scale PAU input: 2^26 float32, 256 MiB, far beyond any cache
SMOKE_BANDWIDTH_SHAPE = (8 * 2**6, 512)
COPY_BYTES = 2**30  # the tensor cloned for the achievable peak: 1 GiB
SMOKE_COPY_BYTES = 2**24
# Datasheet DRAM bandwidth (GB/s) by device name, for torch builds that report no memory clock.
NOMINAL_DRAM_GBPS = {"H100 80GB HBM3": 3350.0, "H100 PCIe": 2000.0, "H200": 4800.0, "A100-SXM4-80GB": 2039.0,
                     "A100-SXM4-40GB": 1555.0, "A100 80GB PCIe": 1935.0, "L40S": 864.0, "RTX 4090": 1008.0}


def forward_backward(function: Callable, x: torch.Tensor, a: torch.Tensor, b: torch.Tensor, grad: torch.Tensor) -> Callable[[], object]:
    """A closure running forward and the backward to x and both coefficient tensors."""
    leaves = [t.detach().requires_grad_() for t in (x, a, b)]

    def step() -> object:
        return torch.autograd.grad(function(*leaves), leaves, grad)

    return step


def implementations(device: str, smoke: bool) -> dict[str, Callable]:
    """Kernel, eager and compiled reference; smoke mode leaves out torch.compile (its compile alone takes
    longer than the whole smoke run may)."""
    kernel = "cuda-kernel" if device == "cuda" else "cpu-kernel"
    candidates = {kernel: lambda x, a, b: pau(x, a, b, backend=kernel), "eager reference": pau_reference}
    if not smoke:
        candidates["compiled reference"] = torch.compile(pau_reference, fullgraph=True)
    return candidates


def cpu_rows(section: str, elements: int, samples: dict[str, list[float]]) -> list[dict]:
    """One row per implementation: median and fastest round, bandwidth at the traffic floor, kernel speed-up."""
    medians = {name: statistics.median(seconds) for name, seconds in samples.items()}
    rows = []
    for name, seconds in samples.items():
        row = {"section": section, "implementation": name, "shape": f"[{elements}]", "pass": "fwd+bwd",
               "ms": medians[name] * 1e3, "min ms": min(seconds) * 1e3,
               "GB/s": BYTES_FORWARD_BACKWARD * elements / medians[name] / 1e9}
        if "cpu-kernel" in medians:
            row["x kernel"] = medians[name] / medians["cpu-kernel"]
        rows.append(row)
    return rows


def cpu_section(smoke: bool) -> tuple[list[dict], dict]:
    elements = 2**14 if smoke else 2**22
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(elements, generator=generator) * 2
    grad = torch.randn(elements, generator=generator)
    module = PAU()
    a, b = module.numerator.detach(), module.denominator.detach()
    steps = {
        name: forward_backward(function, x, a, b, grad)
        for name, function in implementations("cpu", smoke).items()
        if name != "cpu-kernel" or backend_state().cpu_kernel
    }
    threads = torch.get_num_threads()
    rows = []
    for section, section_threads in (("cpu", threads), ("cpu 1 thread", 1)):
        torch.set_num_threads(section_threads)
        try:
            samples = interleaved_seconds(steps, rounds=3 if smoke else 15, warmup=2)
        finally:
            torch.set_num_threads(threads)
        rows += cpu_rows(section, elements, samples)
    times = {(row["section"], row["implementation"]): row for row in rows}
    ratios: dict[str, float] = {}
    if ("cpu", "cpu-kernel") in times:
        for (section, name), row in times.items():
            if name == "cpu-kernel":
                continue
            suffix = "" if section == "cpu" else "_1_thread"
            kernel = times[(section, "cpu-kernel")]
            ratios[f"kernel_vs_{name.split()[0]}{suffix}"] = row["ms"] / kernel["ms"]
            ratios[f"kernel_vs_{name.split()[0]}{suffix}_min"] = row["min ms"] / kernel["min ms"]
        ratios["kernel_threads_speedup"] = times[("cpu 1 thread", "cpu-kernel")]["ms"] / times[("cpu", "cpu-kernel")]["ms"]
    return rows, ratios


def dram_peak_gbps(properties: object, device_name: str) -> tuple[float | None, str]:
    """The theoretical DRAM bandwidth (GB/s) and where it comes from: the device's memory clock and bus
    width as torch reports them (two transfers per clock), else the datasheet table, else unknown.

    `properties` is a `torch.cuda.get_device_properties` result; older torch (and CUDA 13 builds that
    leave the clock at 0) lack the fields, hence the table."""
    clock_khz = getattr(properties, "memory_clock_rate", 0) or 0
    bus_bits = getattr(properties, "memory_bus_width", 0) or 0
    if clock_khz and bus_bits:
        return 2 * clock_khz * 1e3 * bus_bits / 8 / 1e9, f"{clock_khz / 1e3:.0f} MHz x {bus_bits}-bit bus x 2"
    nominal = next((gbps for name, gbps in NOMINAL_DRAM_GBPS.items() if name in device_name), None)
    return nominal, "datasheet" if nominal else "unknown"


def device_seconds(step: Callable[[], object], device: torch.device, repeats: int, warmup: int) -> float:
    """Seconds per call of step: on a GPU by CUDA events around `repeats` back-to-back calls (host overhead
    hidden behind the queue, as in a real decoder), on the CPU the median of `repeats` timed calls."""
    if device.type != "cuda":
        return time_call(step, repeats=repeats, warmup=warmup)
    for _ in range(warmup):
        step()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize(device)
    start.record()
    for _ in range(repeats):
        step()
    end.record()
    torch.cuda.synchronize(device)
    return start.elapsed_time(end) / 1e3 / repeats


def copy_gbps(device: torch.device, nbytes: int, repeats: int) -> float:
    """The achievable peak: GB/s of cloning a float32 tensor of `nbytes` (read + write counted)."""
    source = torch.empty(nbytes // 4, device=device)
    seconds = device_seconds(source.clone, device, repeats=repeats, warmup=2)
    return 2 * nbytes / seconds / 1e9


def bandwidth_section(device: torch.device, smoke: bool) -> tuple[list[dict], dict]:
    """PAU at the decoder-scale shape [8*2^14, 512] float32 (2^26 elements, 256 MiB; smoke: [8*2^6, 512]),
    forward and forward+backward, as GB/s against the achievable peak (`copy_gbps` of a 1 GiB tensor, smoke
    16 MiB, in the same run) and, on a GPU, the theoretical DRAM peak (`dram_peak_gbps`)."""
    shape = SMOKE_BANDWIDTH_SHAPE if smoke else BANDWIDTH_SHAPE
    elements = shape[0] * shape[1]
    generator = torch.Generator().manual_seed(0)
    x = (torch.randn(shape, generator=generator) * 2).to(device)
    grad = torch.randn(shape, generator=generator).to(device)
    module = PAU().to(device)
    a, b = module.numerator.detach(), module.denominator.detach()
    repeats = 3 if smoke else 50
    copy = copy_gbps(device, SMOKE_COPY_BYTES if smoke else COPY_BYTES, repeats)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak, peak_source = (None, "n/a on the CPU")
    if device.type == "cuda":
        peak, peak_source = dram_peak_gbps(torch.cuda.get_device_properties(device), name)
    section = "gpu" if device.type == "cuda" else "cpu bandwidth"
    rows = []
    for implementation, function in implementations(device.type, smoke).items():
        if implementation == "cpu-kernel" and not backend_state().cpu_kernel:
            continue
        for pass_name, step, traffic in (
            ("fwd", lambda f=function: f(x, a, b), BYTES_FORWARD),
            ("fwd+bwd", forward_backward(function, x, a, b, grad), BYTES_FORWARD_BACKWARD),
        ):
            with torch.no_grad() if pass_name == "fwd" else torch.enable_grad():
                seconds = device_seconds(step, device, repeats=repeats, warmup=3)
            gbps = traffic * elements / seconds / 1e9
            rows.append({"section": section, "implementation": implementation, "shape": str(list(shape)), "pass": pass_name,
                         "ms": seconds * 1e3, "GB/s": gbps, "% of copy": 100 * gbps / copy,
                         "% of DRAM peak": 100 * gbps / peak if peak else None})
    times = {(row["implementation"], row["pass"]): row["ms"] for row in rows}
    kernel = "cuda-kernel" if device.type == "cuda" else "cpu-kernel"
    ratios: dict = {
        f"kernel_vs_{impl.split()[0]}_{p}": ms / times[(kernel, p)]
        for (impl, p), ms in times.items() if impl != kernel and (kernel, p) in times
    }
    ratios.update({"device": name, "shape": list(shape), "copy_GBps": copy, "dram_peak_GBps": peak,
                   "dram_peak_source": peak_source})
    return rows, ratios


def run(size: str = "cpu", smoke: bool = False) -> dict:
    rows, ratios = cpu_section(smoke)
    result = {"backend": active_backend(), "threads": torch.get_num_threads(), "cpu": ratios}
    if torch.cuda.is_available() and backend_state().cuda_kernel:
        gpu_rows, gpu_ratios = bandwidth_section(torch.device("cuda"), smoke)
        rows += gpu_rows
        result["gpu"] = gpu_ratios
    else:
        result["gpu"] = "skipped: no CUDA device or CUDA kernel not built"
    result["rows"] = rows
    print(format_table(rows, list(dict.fromkeys(key for row in rows for key in row))))
    for section in ("cpu", "gpu"):
        print(f"{section}: {result[section]}")
    write_result("pau", result)
    return result


def main(argv: list[str] | None = None) -> int:
    return bench_main(run, __doc__, "tiny sizes, a few seconds", argv)


if __name__ == "__main__":
    raise SystemExit(main())
