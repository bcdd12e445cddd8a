"""benchmarks/bench_data.py smoke run: both pipelines give the same item, both gathers the same patches,
and the written ratios are those of the written rows; the synthetic inputs are written once per generator source."""
from __future__ import annotations

import json

import pytest

from benchmarks import bench_data
from benchmarks.bench_data import run, synthetic_inputs
from oss_net.data import discover


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


def test_synthetic_inputs_are_written_once_per_generator_source(tmp_path, monkeypatch):
    root = synthetic_inputs("nnunet", (8, 8, 8), 2, tmp_path)
    assert [case.case_id for case in discover("nnunet", root, "all")] == ["case_000", "case_001"]
    assert not (root / "imagesTs").exists()  # only the labelled cases the benchmark reads
    files = {path: path.stat().st_mtime_ns for path in root.rglob("*.nii.gz")}

    def no_writes(*args, **kwargs):
        raise AssertionError("the inputs were written again")

    monkeypatch.setattr(bench_data, "write_layout_dataset", no_writes)
    assert synthetic_inputs("nnunet", (8, 8, 8), 2, tmp_path) == root  # reused, not rewritten
    assert {path: path.stat().st_mtime_ns for path in root.rglob("*.nii.gz")} == files
    monkeypatch.undo()
    monkeypatch.setattr(bench_data, "generator_hash", lambda: "changed")
    fresh = synthetic_inputs("nnunet", (8, 8, 8), 2, tmp_path)
    assert fresh != root and not root.exists() and len(discover("nnunet", fresh, "all")) == 2  # stale one gone
    assert [entry.name for entry in tmp_path.iterdir()] == ["nnunet_8x8x8_2cases_seed0_changed"]
