"""benchmarks/bench_model.py smoke run: parameters, the scaled count against the full-size count, FLOPs."""
from __future__ import annotations

import pytest

from benchmarks import bench_model


def test_model_benchmark_smoke(results_dir) -> None:
    result = bench_model.run(smoke=True)
    rows = {row["config"]: row for row in result["rows"]}
    assert rows["full"]["parameters"] == 8_695_733
    # The scaled CPU measurement must agree with the full-size meta-device count.
    assert abs(rows["full"]["scaled_over_meta_fused"] - 1) < 1e-3
    assert rows["full"]["fused_vs_onet"] > 1
    assert rows["full"]["decoder_mflops_per_point"] > rows["vanilla_o_net_wide"]["decoder_mflops_per_point"]
    # Memory in GiB, with the paper's Table-2 BraTS training figure (C 2.59, O-Net 2.35) next to it.
    assert rows["full"]["activation_GiB_fused"] == pytest.approx(8 * rows["full"]["activation_GiB_per_volume_fused"])
    assert (rows["full"]["paper_train_GiB"], rows["vanilla_o_net_wide"]["paper_train_GiB"]) == (2.59, 2.35)
    assert rows["full"]["paper_vs_onet"] == pytest.approx(2.59 / 2.35)
