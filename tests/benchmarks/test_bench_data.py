"""benchmarks/bench_data.py smoke run: both pipelines give the same item, both gathers the same patches,
and the written ratios are those of the written rows."""
from __future__ import annotations

import json

import pytest

from benchmarks.bench_data import run


def test_smoke_run_compares_equal_pipelines_and_reports_consistent_ratios(results_dir):
    result = run(smoke=True)
    assert result["items_agree"] and result["gathers_agree"] and result["points"] == 2**10
    written = json.loads((results_dir / "data.json").read_text())
    assert written["volume_shape"] == [64, 64, 40] and written["input_shape"] == [60, 60, 38]
    seconds = {row["step"]: row["seconds"] for row in written["rows"]}
    assert list(seconds) == [
        "dataset item from NIfTI", "dataset item from cache", "gather_patches (cpu)", "naive unfold gather (cpu)",
        "training sample from NIfTI (item + gather)", "training sample from cache (item + gather)",
    ]
    item_nifti, item_cache = seconds["dataset item from NIfTI"], seconds["dataset item from cache"]
    gather = seconds["gather_patches (cpu)"]
    sample_nifti = seconds["training sample from NIfTI (item + gather)"]
    sample_cache = seconds["training sample from cache (item + gather)"]
    assert (sample_nifti, sample_cache) == (pytest.approx(item_nifti + gather), pytest.approx(item_cache + gather))
    assert written["nifti_over_cache"] == pytest.approx(sample_nifti / sample_cache)
    assert written["item_nifti_over_cache"] == pytest.approx(item_nifti / item_cache)
    assert written["naive_over_device_gather"] == pytest.approx(seconds["naive unfold gather (cpu)"] / gather)
