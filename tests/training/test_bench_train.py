"""benchmarks/bench_train.py smoke run: both variants train and report speed and data-wait fraction."""
from __future__ import annotations

import json

import benchmarks.common
from benchmarks.bench_train import run


def test_smoke_run_reports_speed_and_data_wait(tmp_path, monkeypatch):
    monkeypatch.setattr(benchmarks.common, "RESULTS_DIR", tmp_path)
    result = run(smoke=True)
    rows = result["rows"]
    assert [(row["config"], row["amp"]) for row in rows] == [("O-Net", "off"), ("O-Net", "bf16")]
    assert all(row["it_per_s"] > 0 and 0.0 <= row["data_wait_fraction"] < 1.0 for row in rows)
    assert rows[0]["speed_vs_onet_fp32"] == 1.0
    assert json.loads((tmp_path / "train.json").read_text())["rows"][1]["amp"] == "bf16"
