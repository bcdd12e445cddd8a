"""benchmarks/bench_data.py smoke run: both gathers agree and the ratios are reported."""
from __future__ import annotations

import json

import benchmarks.common
from benchmarks.bench_data import run


def test_smoke_run_reports_ratios(tmp_path, monkeypatch):
    monkeypatch.setattr(benchmarks.common, "RESULTS_DIR", tmp_path)
    result = run(smoke=True)
    assert result["gathers_agree"] and result["points"] == 2**10
    assert result["nifti_over_cache"] > 0 and result["naive_over_device_gather"] > 0
    assert json.loads((tmp_path / "data.json").read_text())["volume_shape"] == [64, 64, 40]
