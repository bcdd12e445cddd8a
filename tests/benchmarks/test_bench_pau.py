"""benchmarks/bench_pau.py smoke run: the rows it times and ratios that are the quotients of its rows."""
from __future__ import annotations

import json

import pytest

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
