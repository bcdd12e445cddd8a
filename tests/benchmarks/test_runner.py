"""benchmarks.run: every benchmark runs in smoke mode through the one runner and lands in summary.md."""
from __future__ import annotations

import importlib
import json

import pytest

import benchmarks.run as runner


@pytest.mark.slow
def test_all_benchmarks_run_in_smoke_mode_and_write_json(results_dir):
    results = runner.run_all("cpu", smoke=True)
    assert {name: r["status"] for name, r in results.items()} == {name: "ok" for name in runner.BENCHMARKS}
    runner.write_summary(results, "cpu")
    for name in runner.BENCHMARKS:
        assert isinstance(json.loads((results_dir / f"{name}.json").read_text()), dict)
    summary = (results_dir / "summary.md").read_text()
    assert summary.startswith("# Benchmark results (size=cpu)")
    assert all(f"## {name}" in summary for name in runner.BENCHMARKS)


def test_a_failing_benchmark_is_recorded_and_the_others_still_run(results_dir, monkeypatch):
    def broken(size: str, smoke: bool) -> dict:
        raise RuntimeError("no such device")

    monkeypatch.setattr(importlib.import_module("benchmarks.bench_model"), "run", broken)
    results = runner.run_all("cpu", smoke=True, names=("model", "pau"))
    assert results["model"]["status"] == "failed: no such device"
    assert results["pau"]["status"] == "ok"


def test_summary_has_the_unit_a_table_per_benchmark_and_json_for_results_without_rows(results_dir):
    results = {
        "memory": {"status": "ok", "seconds": 1.5, "result": {"rows": [{"model": "C", "train_act_GiB": 1.25}]}},
        "pau": {"status": "failed: no such device", "seconds": 0.25, "result": {}},
    }
    runner.write_summary(results, "cpu")
    lines = (results_dir / "summary.md").read_text().splitlines()
    assert lines[:3] == ["# Benchmark results (size=cpu)", "", "Memory in GiB (2^30 bytes)."]
    assert "| memory | ok | 1.5 |" in lines and "| pau | failed: no such device | 0.25 |" in lines
    memory = lines.index("## memory")
    assert lines[memory + 2: memory + 5] == ["| model | train_act_GiB |", "|---|---|", "| C | 1.25 |"]
    assert lines[lines.index("## pau") + 2: lines.index("## pau") + 5] == ["```", "{}", "```"]


def test_the_full_scan_runs_bench_infer_at_cpu_brats_size_and_only_for_cpu(results_dir, monkeypatch):
    sizes = []
    monkeypatch.setattr(importlib.import_module("benchmarks.bench_infer"), "run",
                        lambda size, smoke: sizes.append(size) or {"rows": [{"a": 1, "b": 2}], "columns": ["b"], "headline": "2x"})
    assert runner.run_all("gpu", smoke=True, names=("infer_cpu_brats",)) == {}
    results = runner.run_all("cpu", smoke=True, names=("infer_cpu_brats",))
    assert sizes == ["cpu-brats"] and results["infer_cpu_brats"]["status"] == "ok"
    runner.write_summary(results, "cpu")
    lines = (results_dir / "summary.md").read_text().splitlines()
    section = lines.index("## infer_cpu_brats")
    assert lines[section + 2: section + 7] == ["| b |", "|---|", "| 2 |", "", "2x"]  # its columns, then its headline


def test_the_resolution_benchmark_runs_only_for_cpu(results_dir, monkeypatch):
    sizes = []
    monkeypatch.setattr(importlib.import_module("benchmarks.bench_resolution"), "run",
                        lambda size, smoke: sizes.append(size) or {"rows": [{"method": "fine_queries", "msd_mm": 0.3}]})
    assert runner.run_all("gpu", smoke=True, names=("resolution",)) == {}
    results = runner.run_all("cpu", smoke=True, names=("resolution",))
    assert sizes == ["cpu"] and results["resolution"]["status"] == "ok"
