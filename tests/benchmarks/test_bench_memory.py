"""benchmarks/bench_memory.py and memory_counts.py: the memory measures behind the Table-2 benchmark, and its smoke mode."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import benchmarks.bench_memory as bench_memory
import benchmarks.memory_counts as memory_counts
from benchmarks.common import to_gib

pytestmark = pytest.mark.usefixtures("single_thread")


def test_unet_training_activations_grow_linearly_with_the_grid():
    """Doubling one axis of a grid that every level divides doubles the saved bytes (up to per-channel BN stats)."""
    sizes = []
    for depth in (8, 16):
        model = memory_counts.build("unet3d", "brats", "meta", volume_shape=(16, 16, depth), channels=(4, 8, 16), strides=(2, 2))
        sizes.append(memory_counts.training_activation_bytes(model))
    assert sizes[1] / sizes[0] == pytest.approx(2.0, rel=0.01)


def test_peak_live_bytes_hand_count():
    """x [100, 1000] -> Linear 1000 -> ReLU -> Linear 2000 -> ReLU: the peak holds x, the first ReLU output
    until the second Linear is done, then x + both 2000-wide tensors: 4 * 100 * (1000 + 2000 + 2000) bytes."""
    model = nn.Sequential(nn.Linear(1000, 1000), nn.ReLU(), nn.Linear(1000, 2000), nn.ReLU()).to("meta")
    with torch.inference_mode(), memory_counts.PeakLiveBytes(list(model.parameters())) as tracker:
        x = torch.empty(100, 1000, device="meta")
        y = model(x)
        del x, y
    assert tracker.peak == 4 * 100 * (1000 + 2000 + 2000)
    assert tracker.live == 0


def test_memory_smoke_writes_json_in_gib_and_meets_the_targets(results_dir):
    """Every memory column says GiB; the training total is activations + 4x the parameter bytes (weights,
    gradients, two Adam moments); the paper's columns are Table 2's; the 3D U-Net / C ratio is at least 6,
    and at least 10 against C with recomputation; recomputation lowers both models' activations."""
    result = bench_memory.run(size="cpu", smoke=True)
    written = json.loads((results_dir / "memory.json").read_text())
    assert (results_dir / "memory.png").stat().st_size > 0
    assert {row["model"] for row in written["rows"]} == {"C", "unet3d"}
    ratio = result["ratio_unet3d_over_C_train_act_GiB"]["brats"]
    assert written["ratio_unet3d_over_C_train_act_GiB"]["brats"] == pytest.approx(ratio)
    assert ratio >= 6.0
    assert written["ratio_unet3d_over_C_recompute"]["brats"] >= 10.0
    rows = {row["model"]: row for row in written["rows"]}
    assert written["ratio_unet3d_recompute_over_C_recompute"]["brats"] == pytest.approx(
        rows["unet3d"]["train_act_recompute_GiB"] / rows["C"]["train_act_recompute_GiB"])
    assert all(row["train_act_recompute_GiB"] < row["train_act_GiB"] / 1.5 for row in rows.values())
    assert set(rows["C"]) - {"model", "dataset", "params_M"} == {
        "train_act_GiB", "train_act_recompute_GiB", "param_state_GiB", "train_total_GiB", "infer_2^14_GiB",
        "infer_2^17_GiB", "paper_train_GiB", "paper_infer_2^14_GiB", "paper_infer_2^17_GiB"}
    c = rows["C"]
    weights = memory_counts.parameter_bytes(memory_counts.build("C", "brats", "meta"))
    assert c["param_state_GiB"] == pytest.approx(to_gib(4 * weights))
    assert c["train_total_GiB"] == pytest.approx(c["train_act_GiB"] + c["param_state_GiB"])
    assert (c["paper_train_GiB"], rows["unet3d"]["paper_train_GiB"]) == (2.59, 14.41)


def test_rows_can_be_chosen_but_must_hold_c_and_the_3d_unet(results_dir, monkeypatch):
    """`models`/`datasets` pick the rows (gpu_check: C and the 3D U-Net on both datasets); without matplotlib
    the figures are still written and the plot is reported as skipped. Rows are stubbed: only `run` is tested."""
    with pytest.raises(ValueError, match="models must include 'C' and 'unet3d'"):
        bench_memory.run(size="cpu", models=("C", "A"))
    activations = {"C": 2.0, "unet3d": 14.0}
    monkeypatch.setattr(bench_memory, "cpu_row", lambda name, dataset: {
        "model": name, "dataset": dataset, "train_act_GiB": activations[name], "train_act_recompute_GiB": activations[name] / 2})
    real_find_spec = bench_memory.importlib.util.find_spec
    monkeypatch.setattr(bench_memory.importlib.util, "find_spec",
                        lambda name, *args: None if name == "matplotlib" else real_find_spec(name, *args))
    result = bench_memory.run(size="cpu", smoke=True, models=("C", "unet3d"), datasets=("brats", "lits"))
    assert [(row["model"], row["dataset"]) for row in result["rows"]] == [
        ("C", "brats"), ("unet3d", "brats"), ("C", "lits"), ("unet3d", "lits")]
    assert result["ratio_unet3d_over_C_train_act_GiB"] == {"brats": 7.0, "lits": 7.0}
    assert result["ratio_unet3d_over_C_recompute"] == {"brats": 14.0, "lits": 14.0}
    assert result["plot"] == "skipped: matplotlib not installed" and not (results_dir / "memory.png").exists()
    assert json.loads((results_dir / "memory.json").read_text())["plot"] == result["plot"]
