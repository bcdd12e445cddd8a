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
GPU (only with a CUDA device and the built CUDA kernel): the decoder's shape [8*2^14, 512] float32,
forward and forward+backward, as achieved GB/s against the device's copy bandwidth (measured with
`clone`) and its nominal DRAM peak where known, and against torch.compile(reference).
"""
from __future__ import annotations

import statistics
from typing import Callable

import torch

from benchmarks.common import bench_main, format_table, interleaved_seconds, time_call, write_result
from pade_activation_unit import PAU, active_backend, backend_state, pau, pau_reference

BYTES_FORWARD = 8  # per float32 element: read x, write y
BYTES_FORWARD_BACKWARD = 20  # plus read x and grad_out, write grad_x
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


def gpu_section(smoke: bool) -> tuple[list[dict], dict]:
    shape = (8 * 2**10, 512) if smoke else (8 * 2**14, 512)
    elements = shape[0] * shape[1]
    x = torch.randn(shape, device="cuda") * 2
    grad = torch.randn(shape, device="cuda")
    module = PAU().cuda()
    a, b = module.numerator.detach(), module.denominator.detach()
    sync = torch.cuda.synchronize
    copy_seconds = time_call(lambda: x.clone(), repeats=20, warmup=3, synchronize=sync)
    copy_gbps = BYTES_FORWARD * elements / copy_seconds / 1e9
    peak = next((v for k, v in NOMINAL_DRAM_GBPS.items() if k in torch.cuda.get_device_name()), None)
    rows = []
    for name, function in implementations("cuda", smoke).items():
        leaves = (x, a, b)
        for pass_name, step, traffic in (
            ("fwd", lambda f=function: f(*leaves), BYTES_FORWARD),
            ("fwd+bwd", forward_backward(function, x, a, b, grad), BYTES_FORWARD_BACKWARD),
        ):
            with torch.no_grad() if pass_name == "fwd" else torch.enable_grad():
                seconds = time_call(step, repeats=20, warmup=3, synchronize=sync)
            gbps = traffic * elements / seconds / 1e9
            rows.append({"section": "gpu", "implementation": name, "shape": str(list(shape)), "pass": pass_name,
                         "ms": seconds * 1e3, "GB/s": gbps, "of copy bandwidth": gbps / copy_gbps,
                         "of nominal peak": gbps / peak if peak else None})
    times = {(row["implementation"], row["pass"]): row["ms"] for row in rows}
    ratios = {
        f"kernel_vs_{name.split()[0]}_{p}": times[(name, p)] / times[("cuda-kernel", p)]
        for name, p in times if name != "cuda-kernel"
    }
    ratios.update({"copy_GBps": copy_gbps, "nominal_peak_GBps": peak, "device": torch.cuda.get_device_name()})
    return rows, ratios


def run(size: str = "cpu", smoke: bool = False) -> dict:
    rows, ratios = cpu_section(smoke)
    result = {"backend": active_backend(), "threads": torch.get_num_threads(), "cpu": ratios}
    if torch.cuda.is_available() and backend_state().cuda_kernel:
        gpu_rows, gpu_ratios = gpu_section(smoke)
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
