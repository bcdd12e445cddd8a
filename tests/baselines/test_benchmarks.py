"""The memory measures behind the Table-2 benchmark, and both benchmarks' smoke modes."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import benchmarks.bench_chunks as bench_chunks
import benchmarks.bench_memory as bench_memory
import benchmarks.common as common
from oss_net.models.memory import saved_tensor_bytes


def test_saved_bytes_of_a_linear_layer_is_its_input():
    """Linear(5, 7) on x [3, 5] keeps x for the weight gradient: 3 * 5 * 4 bytes (weights excluded)."""
    layer = nn.Linear(5, 7)
    x = torch.randn(3, 5)
    assert saved_tensor_bytes(lambda: layer(x).sum(), exclude=list(layer.parameters())) == 3 * 5 * 4


def test_unet_training_activations_grow_linearly_with_the_grid():
    """Doubling one axis of a grid that every level divides doubles the saved bytes (up to per-channel BN stats)."""
    sizes = []
    for depth in (8, 16):
        model = bench_memory.build("unet3d", "brats", "meta", volume_shape=(16, 16, depth), channels=(4, 8, 16), strides=(2, 2))
        sizes.append(bench_memory.training_activation_bytes(model))
    assert sizes[1] / sizes[0] == pytest.approx(2.0, rel=0.01)


def test_peak_live_bytes_hand_count():
    """x [100, 1000] -> Linear 1000 -> ReLU -> Linear 2000 -> ReLU: the peak holds x, the first ReLU output
    until the second Linear is done, then x + both 2000-wide tensors: 4 * 100 * (1000 + 2000 + 2000) bytes."""
    model = nn.Sequential(nn.Linear(1000, 1000), nn.ReLU(), nn.Linear(1000, 2000), nn.ReLU()).to("meta")
    with torch.inference_mode(), bench_memory.PeakLiveBytes(list(model.parameters())) as tracker:
        x = torch.empty(100, 1000, device="meta")
        y = model(x)
        del x, y
    assert tracker.peak == 4 * 100 * (1000 + 2000 + 2000)
    assert tracker.live == 0


@pytest.fixture
def results_dir(tmp_path, monkeypatch):
    """Benchmarks write into a temporary folder, so a test never overwrites real results."""
    for module in (common, bench_memory, bench_chunks):
        monkeypatch.setattr(module, "RESULTS_DIR", tmp_path)
    return tmp_path


def test_memory_smoke_writes_json_and_meets_the_target(results_dir):
    result = bench_memory.run(size="cpu", smoke=True)
    written = json.loads((results_dir / "memory.json").read_text())
    assert (results_dir / "memory.png").stat().st_size > 0
    assert {row["model"] for row in written["rows"]} == {"C", "unet3d"}
    ratio = result["ratio_unet3d_over_C_train_act_GB"]["brats"]
    assert written["ratio_unet3d_over_C_train_act_GB"]["brats"] == pytest.approx(ratio)
    assert ratio >= 6.0


def test_chunks_smoke_writes_json_and_prior_refines_the_same_object(results_dir):
    bench_chunks.run(size="cpu", smoke=True)
    written = json.loads((results_dir / "chunks.json").read_text())
    assert (results_dir / "chunks.png").stat().st_size > 0
    row = written["rows"][0]
    assert row["prior_points"] <= row["standard_points"]
    assert row["prior_foreground"] == row["standard_foreground"] > 0
    assert written["memory_rows"][0]["decode_memory_GB"] > 0
