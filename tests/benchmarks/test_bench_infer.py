"""benchmarks/bench_infer.py: the end-to-end full-scan path in smoke mode (rows, stage split, targets), the band floor."""
from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks import bench_infer


@pytest.mark.slow
def test_full_scan_smoke_writes_every_method_with_its_stage_split(results_dir):
    result = bench_infer.run("cpu-brats", smoke=True, original=True)
    written = json.loads((results_dir / "infer_cpu_brats.json").read_text())
    rows = {(row["method"], row["refinement"]): row for row in written["rows"]}
    methods = {(mode, rule) for mode in ("standard", "prior") for rule in ("ours", "original")} | {("unet3d", "-")}
    assert set(rows) == methods | {(bench_infer.HALF_SPACING, "ours")}
    half = rows.pop((bench_infer.HALF_SPACING, "ours"))  # prior at half the scan's spacing, on its own grid, once
    assert half["repeats"] == 1 and half["voxels_differing_from_standard"] == 0 and half["stride_8_s"] >= 0
    assert half["decoder_points"] > rows["prior", "ours"]["decoder_points"]
    assert result["half_spacing_vs_prior"]["points_ratio"] == pytest.approx(
        half["decoder_points"] / rows["prior", "ours"]["decoder_points"])
    assert all(row["points_per_boundary_voxel"] > 0 for row in rows.values())
    for (method, _), row in rows.items():
        split = ["read_s", "dense_pass_s", "write_s"] if method == "unet3d" else [
            "read_s", "encode_s", "stride_4_s", "stride_2_s", "stride_1_s", "write_s"]
        assert all(row[key] >= 0 for key in split)
        assert row["seconds"] >= sum(row[key] for key in split) - 1e-6  # the split is part of the end-to-end time
    # the oracle answers are the same object: both rules and both modes give the same mask
    assert all(row["voxels_differing_from_standard"] == 0 for key, row in rows.items() if key[0] != "unet3d")
    assert rows["unet3d", "-"]["voxel_fraction"] == 1.0
    standard, prior = rows["standard", "ours"], rows["prior", "ours"]
    assert result["speedup_prior_vs_standard"] == pytest.approx(standard["seconds"] / prior["seconds"])
    assert result["points_ratio_standard_vs_prior"] == pytest.approx(standard["decoder_points"] / prior["decoder_points"])
    assert prior["decoder_points"] < standard["decoder_points"]
    assert result["targets_met"]["prior_decodes_at_most_5%_of_voxels"] == (prior["voxel_fraction"] <= 0.05)
    assert result["columns"][:4] == ["method", "refinement", "repeats", "seconds"] and "prior vs standard" in result["headline"]
    # each OSS-Net row is the median of FULL_SCAN_REPEATS runs; the dense pass runs once
    assert bench_infer.FULL_SCAN_REPEATS == 3
    for (method, _), row in rows.items():
        runs = row["seconds_of_each_run"]
        assert row["repeats"] == len(runs) == (1 if method == "unet3d" else 3)
        assert row["seconds"] == sorted(runs)[len(runs) // 2]


def test_original_rows_belong_to_the_full_scan():
    with pytest.raises(ValueError, match="--original adds rows to the full scan"):
        bench_infer.run("cpu", smoke=True, original=True)


def test_stride_1_floor_counts_both_sides_of_the_surface_off_the_previous_lattice():
    voxel = np.zeros((9, 9, 9), dtype=bool)
    voxel[3, 3, 3] = True  # band: the 3x3x3 block around it; 8 of its points (even indices) lie on the stride-2 lattice
    assert bench_infer.stride_1_floor(voxel) == 27 - 8
    cube = np.zeros((9, 9, 9), dtype=bool)
    cube[3:6, 3:6, 3:6] = True  # inner 26 + outer 98 voxels (the 5x5x5 block); its 27 even points were decoded at stride 2
    assert bench_infer.stride_1_floor(cube) == 125 - 27
    assert bench_infer.stride_1_floor(cube, previous_stride=1) == 0  # every voxel already on the previous lattice
    slab = np.zeros((4, 4, 4), dtype=bool)
    slab[:2] = True  # the volume's faces are no surface: only the planes i = 1 and 2; the lattice is {0, 2, 3} per axis
    assert bench_infer.stride_1_floor(slab) == 32 - 9
