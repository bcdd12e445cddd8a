"""benchmarks/bench_train.py smoke run: a fair comparison (same steps on the same data from the same
weights), losses that agree across AMP modes, and the documented JSON."""
from __future__ import annotations

import json
import math

import pytest

from benchmarks.bench_train import CPU_COLUMNS, run


def test_smoke_rows_train_the_same_steps_on_the_same_data(results_dir):
    result = run(smoke=True)
    rows = result["rows"]
    assert [(row["config"], row["amp"]) for row in rows] == [("O-Net", "off"), ("O-Net", "bf16")]
    assert rows[0]["steps"] == rows[1]["steps"] == len(rows[0]["losses"]) == 1
    assert rows[0]["cases"] == rows[1]["cases"]  # the seed fixes the batches, whatever the AMP mode
    assert all(0.0 <= row["data_wait_fraction"] < 1.0 for row in rows)
    fp32, bf16 = rows[0]["losses"][0], rows[1]["losses"][0]
    assert math.isfinite(fp32) and math.isfinite(bf16)
    # Same weights, same points: bf16 changes the loss only by its rounding.
    assert bf16 == pytest.approx(fp32, rel=0.05)

    saved = json.loads((results_dir / "train.json").read_text())
    assert set(saved) == {"size", "smoke", "threads", "rows"}
    assert all(set(CPU_COLUMNS) <= set(row) for row in saved["rows"])
    assert saved["rows"][1]["amp"] == "bf16" and saved["rows"][0]["cases"] == rows[0]["cases"]


def test_gpu_size_without_cuda_is_skipped_with_a_note(results_dir, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert run(size="gpu") == {"size": "gpu", "skipped": "no CUDA device"}
    assert json.loads((results_dir / "train.json").read_text())["skipped"] == "no CUDA device"
