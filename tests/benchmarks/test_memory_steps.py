"""benchmarks/memory_steps.py: a real training step in a fresh process, its own peak, and its failures."""
from __future__ import annotations

import pytest

from benchmarks import bench_memory, memory_steps
from benchmarks.memory_steps import MeasuredStepError, StepSpec

TINY = StepSpec("unet3d", "brats", (32, 32, 32), recompute=False)  # 0.05 GiB of activations, about a second


def test_the_probe_reports_the_step_peak_and_seconds():
    result = memory_steps.run_probe(TINY, timeout_s=300)
    assert result["peak_bytes"] > 0 and result["seconds"] > 0
    assert result["before_bytes"] > result["peak_bytes"]  # python + torch + the model are there before the step
    assert result["measure"].startswith(("VmHWM", "VmRSS"))


def test_a_failing_child_raises_with_its_output():
    with pytest.raises(MeasuredStepError, match="unknown configuration 'no-such-model'"):
        memory_steps.run_probe(StepSpec("no-such-model", "brats", (32, 32, 32), False), timeout_s=300)


def test_out_of_memory_under_the_cap_and_out_of_time_are_reported_not_raised():
    assert "out_of_memory" in memory_steps.run_probe(TINY, 300, address_space_bytes=2**20)
    assert memory_steps.run_probe(TINY, timeout_s=0.5) == {"timed_out": 0.5}


def test_a_step_that_would_not_fit_is_not_run(monkeypatch):
    monkeypatch.setattr(memory_steps, "available_bytes", lambda: 3 * 2**30)
    row = memory_steps.measured_row(StepSpec("unet3d", "brats", (256, 256, 160), False), timeout_s=1)
    assert row["status"].startswith("not run: needs about 18.0 GiB, 3.0 GiB free")
    assert row["predicted_GiB"] == pytest.approx(13.57, abs=0.01) and "peak_rss_GiB" not in row
    native = memory_steps.device_free_row(StepSpec("unet3d", "lits", (512, 512, 512), False))
    assert native["fits_this_machine"] is False and "does not fit" in native["status"]


def test_the_cross_check_compares_measured_and_predicted_ratios():
    peaks = {("C", "64x64x40"): (1.5, 1.4), ("C", "128x128x80"): (1.6, 1.5), ("unet3d", "64x64x40"): (0.5, 0.25),
             ("unet3d", "128x128x80"): (2.0, 1.5)}
    rows = [{"model": m, "dataset": "brats", "grid": g, "voxels": 8 if g == "128x128x80" else 1, "recompute": False,
             "peak_rss_GiB": p, "predicted_GiB": c} for (m, g), (p, c) in peaks.items()]
    checks = {row["comparison"]: (row["measured"], row["predicted"]) for row in bench_memory.cross_check(rows)}
    assert checks["3D U-Net / C at 128x128x80"] == pytest.approx((2.0 / 1.6, 1.0))
    assert checks["unet3d: 128x128x80 / 64x64x40"] == pytest.approx((4.0, 6.0))
    assert checks["C: 128x128x80 / 64x64x40"] == pytest.approx((1.6 / 1.5, 1.5 / 1.4))
    assert len(checks) == 4
