"""benchmarks.run: every benchmark runs in smoke mode through the one runner and lands in summary.md."""
from __future__ import annotations

import importlib
import json

import pytest

import benchmarks.common
import benchmarks.run as runner


@pytest.fixture
def results_dir(tmp_path, monkeypatch):
    """Send every benchmark's output to a temporary folder, not benchmarks/results/."""
    monkeypatch.setattr(benchmarks.common, "RESULTS_DIR", tmp_path)
    monkeypatch.setattr(runner, "RESULTS_DIR", tmp_path)
    for name in runner.BENCHMARKS:
        module = importlib.import_module(f"benchmarks.bench_{name}")
        if hasattr(module, "RESULTS_DIR"):
            monkeypatch.setattr(module, "RESULTS_DIR", tmp_path)
    return tmp_path


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


def test_benchmark_device_rejects_unknown_sizes_and_missing_gpus():
    import torch

    from benchmarks.common import benchmark_device

    assert benchmark_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="size must be 'cpu' or 'gpu', got 'tpu'"):
        benchmark_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="needs a CUDA device"):
            benchmark_device("gpu")
