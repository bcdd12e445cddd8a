"""benchmarks/memory_curve.py: the curve's points are the device-free counts; where each model stops fitting."""
from __future__ import annotations

import math

import pytest

from benchmarks import memory_curve
from benchmarks.common import to_gib
from benchmarks.memory_counts import build, parameter_bytes, training_activation_bytes


def test_curve_points_equal_the_device_free_counts_at_the_same_sizes():
    points = memory_curve.curve_points(edges=(64, 128, 512), series=(("unet3d", False), ("C", True), ("C", False)))
    by_key = {(p["model"], p["recompute"], p["grid"]): p for p in points}
    assert ("C", True, "64x64x64") not in by_key  # below the smallest cube C's LiTS encoder takes
    unet = build("unet3d", "lits", "meta", volume_shape=(64, 64, 64), input_shape=(64, 64, 64))
    expected = to_gib(training_activation_bytes(unet) + 4 * parameter_bytes(unet))
    assert by_key[("unet3d", False, "64x64x64")]["train_GiB"] == pytest.approx(expected, rel=1e-12)
    c_128 = build("C", "lits", "meta", volume_shape=(128, 128, 128))
    expected = to_gib(training_activation_bytes(c_128, recompute=True) + 4 * parameter_bytes(c_128))
    assert by_key[("C", True, "128x128x128")]["train_GiB"] == pytest.approx(expected, rel=1e-12)
    lits = build("C", "lits", "meta")  # the curve's 512^3 point is the LiTS model of Table 2
    assert by_key[("C", False, "512x512x512")]["activations_GiB"] == pytest.approx(to_gib(training_activation_bytes(lits)), rel=1e-12)


def test_largest_fitting_edge_interpolates_log_log():
    points = [{"voxels": 10**6, "train_GiB": 1.0}, {"voxels": 8 * 10**6, "train_GiB": 8.0}]
    assert memory_curve.largest_fitting_edge(points, 2.0) == pytest.approx((2 * 10**6) ** (1 / 3))
    assert memory_curve.largest_fitting_edge(points, 0.5) is None
    assert math.isinf(memory_curve.largest_fitting_edge(points, 16.0))
    steep = [{"model": "unet3d", "recompute": False, "voxels": 10**6, "train_GiB": 10.0},
             {"model": "unet3d", "recompute": False, "voxels": 8 * 10**6, "train_GiB": 80.0}]
    assert memory_curve.stops_fitting(steep) == [
        {"series": "3D U-Net", "16_GiB": "117^3", "24_GiB": "134^3", "40_GiB": "159^3", "80_GiB": ">= 200^3 (80.0 GiB)"}]
