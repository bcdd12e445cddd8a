"""benchmarks/bench_decoder.py smoke run: FLOP counts of the folded and module decoders, ratios that are quotients of its rows."""
from __future__ import annotations

import json

import pytest
import torch

from benchmarks import bench_decoder
from oss_net.inference.efficiency import counted_flops


def test_in_place_baddbmm_is_counted_as_a_matmul():
    out, left, right = torch.zeros(2, 3, 5), torch.ones(2, 3, 4), torch.ones(2, 4, 5)
    assert counted_flops(lambda: out.baddbmm_(left, right)) == 2 * 2 * 3 * 4 * 5


def test_smoke_run_writes_rows_and_consistent_ratios(results_dir):
    result = bench_decoder.run(smoke=True)
    written = json.loads((results_dir / "decoder.json").read_text())
    folded, module, matmul = written["rows"]
    assert folded["what"].startswith("decoder C, folded") and module["what"].startswith("decoder C, module")
    # both count the unfolded module's FLOPs as the model's; the fold executes fewer (latent 0 is in the biases)
    assert folded["model MFLOP/point"] == module["model MFLOP/point"] == module["executed MFLOP/point"]
    assert folded["executed MFLOP/point"] < module["executed MFLOP/point"]
    for row in (folded, module):
        assert row["GFLOP/s"] == pytest.approx(row["executed MFLOP/point"] * 1e6 * row["points/s"] / 1e9)
        assert row["of matmul"] == pytest.approx(row["GFLOP/s"] / matmul["GFLOP/s"])
    assert result["decoder_of_matmul"] == pytest.approx(folded["of matmul"])
    assert result["folded_speedup_vs_module"] == pytest.approx(module["ms"] / folded["ms"])
    assert "of the" in result["headline"] and result["columns"][0] == "what"
