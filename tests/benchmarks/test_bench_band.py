"""benchmarks/bench_band.py: on the ellipsoid oracle every method equals dense and the narrow band decodes its floor."""
from __future__ import annotations

import pytest
import torch

from benchmarks import bench_band
from benchmarks.bench_chunks import oracle_model_and_volume


def test_the_narrow_band_decodes_exactly_its_floor_and_equals_dense(single_thread):
    torch.manual_seed(0)
    model, volume = oracle_model_and_volume("cpu", smoke=True, device=torch.device("cpu"))
    rows = {row["method"]: row for row in bench_band.measure_case(model, volume, "oracle")}
    assert set(rows) == set(bench_band.METHODS)
    assert all(row["voxels_differing_from_dense"] == 0 == row["voxels_differing_from_wide"] for row in rows.values())
    assert rows["dense"]["points"] == volume[0].numel() and rows["dense"]["stride_1_points"] is None
    for method in ("standard", "prior"):  # the last stage decodes the two-sided 26-neighbour band, no point more
        assert rows[method]["stride_1_points"] == rows[method]["stride_1_floor"] > 0
    assert rows["standard_wide"]["stride_1_points"] > rows["standard"]["stride_1_points"]
    assert rows["prior"]["points"] < rows["standard"]["points"]
    table = {row["method"]: row for row in bench_band.summary(list(rows.values()))}
    assert table["standard"]["stride_1_points_per_floor"] == 1.0 and table["dense"]["stride_1_points_per_floor"] is None


def test_the_summary_counts_cases_and_voxels_over_cases():
    def row(differing, points, floor):
        return {"method": "standard", "voxels_differing_from_dense": differing, "voxels_differing_from_wide": differing,
                "points_per_boundary_voxel": points / 10, "stride_1_points": points, "stride_1_floor": floor}

    (table,) = bench_band.summary([row(0, 30, 30), row(3, 20, 40), row(1, 40, 40)])
    assert (table["cases"], table["cases_equal_to_dense"], table["voxels_differing_from_dense"]) == (3, 1, 4)
    assert table["most_differing_in_a_case"] == 3 and table["voxels_differing_from_wide"] == 4
    assert table["points_per_boundary_voxel"] == pytest.approx(3.0)
    assert table["stride_1_points_per_floor"] == pytest.approx((1.0 + 0.5 + 1.0) / 3)


def test_a_case_without_a_surface_has_no_ratio_and_leaves_the_means_alone():
    empty = {"method": "standard", "voxels_differing_from_dense": 0, "voxels_differing_from_wide": 0,
             "points_per_boundary_voxel": None, "stride_1_points": 0, "stride_1_floor": 0}
    found = dict(empty, points_per_boundary_voxel=4.0, stride_1_points=30, stride_1_floor=30)
    (table,) = bench_band.summary([empty, found])
    assert table["cases"] == 2 and table["points_per_boundary_voxel"] == 4.0 and table["stride_1_points_per_floor"] == 1.0
    (alone,) = bench_band.summary([empty])
    assert alone["points_per_boundary_voxel"] is None and alone["stride_1_points_per_floor"] is None
