"""benchmarks/bench_pau.py smoke run: the rows it times and ratios that are the quotients of its rows."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from benchmarks import bench_pau
from pade_activation_unit import backend_state


def test_smoke_run_writes_rows_and_consistent_ratios(results_dir):
    result = bench_pau.run(smoke=True)
    written = json.loads((results_dir / "pau.json").read_text())
    cpu_rows = {row["implementation"]: row for row in written["rows"] if row["section"] == "cpu"}
    kernel = {"cpu-kernel"} if backend_state().cpu_kernel else set()
    assert set(cpu_rows) == {"eager reference"} | kernel  # no torch.compile in smoke
    for row in cpu_rows.values():
        assert row["shape"] == f"[{2**14}]" and row["pass"] == "fwd+bwd"
        # Achieved bandwidth is the traffic floor (20 bytes per element) over the time.
        assert row["GB/s"] == pytest.approx(bench_pau.BYTES_FORWARD_BACKWARD * 2**14 / (row["ms"] / 1e3) / 1e9)
    if "cpu-kernel" in cpu_rows:
        eager, kernel_ms = cpu_rows["eager reference"]["ms"], cpu_rows["cpu-kernel"]["ms"]
        assert result["cpu"]["kernel_vs_eager"] == pytest.approx(eager / kernel_ms)
    else:
        assert result["cpu"] == {}


def test_dram_peak_from_memory_clock_and_bus_width_else_the_datasheet():
    h100 = SimpleNamespace(memory_clock_rate=2_619_000, memory_bus_width=5120)  # kHz, bits: the H100 SXM's
    gbps, source = bench_pau.dram_peak_gbps(h100, "NVIDIA H100 80GB HBM3")
    assert gbps == pytest.approx(3352.32) and source == "2619 MHz x 5120-bit bus x 2"
    no_clock = SimpleNamespace(memory_clock_rate=0, memory_bus_width=6144)  # CUDA 13 builds may report 0
    assert bench_pau.dram_peak_gbps(no_clock, "NVIDIA H200") == (4800.0, "datasheet")
    assert bench_pau.dram_peak_gbps(SimpleNamespace(), "Some GPU") == (None, "unknown")


def test_bandwidth_section_rows_are_traffic_over_time_against_the_copy_peak(single_thread):
    rows, ratios = bench_pau.bandwidth_section(torch.device("cpu"), smoke=True)
    elements = bench_pau.SMOKE_BANDWIDTH_SHAPE[0] * bench_pau.SMOKE_BANDWIDTH_SHAPE[1]
    kernel = {"cpu-kernel"} if backend_state().cpu_kernel else set()
    assert {(row["implementation"], row["pass"]) for row in rows} == {
        (name, p) for name in {"eager reference"} | kernel for p in ("fwd", "fwd+bwd")}
    for row in rows:
        traffic = bench_pau.BYTES_FORWARD if row["pass"] == "fwd" else bench_pau.BYTES_FORWARD_BACKWARD
        assert row["GB/s"] == pytest.approx(traffic * elements / (row["ms"] / 1e3) / 1e9)
        assert row["% of copy"] == pytest.approx(100 * row["GB/s"] / ratios["copy_GBps"])
        assert row["% of DRAM peak"] is None  # no DRAM peak on the CPU
    assert (ratios["dram_peak_GBps"], ratios["shape"]) == (None, list(bench_pau.SMOKE_BANDWIDTH_SHAPE))
    if kernel:
        ms = {(row["implementation"], row["pass"]): row["ms"] for row in rows}
        assert ratios["kernel_vs_eager_fwd"] == pytest.approx(ms[("eager reference", "fwd")] / ms[("cpu-kernel", "fwd")])
