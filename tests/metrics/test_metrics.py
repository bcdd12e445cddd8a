"""Metrics: known values, empty-mask conventions, BraTS regions, summaries, and agreement with MONAI."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from scipy import ndimage

from oss_net.metrics import (
    MetricError,
    UndefinedMetricWarning,
    brats_regions,
    dice,
    evaluate_brats,
    evaluate_case,
    hd95,
    iou,
    msd,
    nsd,
    summarise,
)

SPACING = (0.8, 1.0, 2.5)


def cube(shape: tuple[int, int, int], start: tuple[int, int, int], size: int) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[tuple(slice(s, s + size) for s in start)] = True
    return mask


def blob(shape: tuple[int, int, int], seed: int, threshold: float = 0.05) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(size=shape)
    return ndimage.gaussian_filter(noise, 2.0) > threshold


def test_mask_with_itself_is_perfect() -> None:
    mask = blob((24, 20, 12), seed=1)
    assert evaluate_case(mask, mask, SPACING) == {"dice": 1.0, "iou": 1.0, "hd95_mm": 0.0, "nsd": 1.0}


def test_shifted_cube_overlap_known_values() -> None:
    a = cube((12, 12, 12), (2, 2, 2), 4)
    b = cube((12, 12, 12), (3, 2, 2), 4)  # one voxel along axis 0: 48 of 64 voxels shared
    assert dice(a, b) == pytest.approx(0.75)
    assert iou(a, b) == pytest.approx(0.6)
    # The two surfaces are one voxel (0.8 mm) apart at most along axis 0.
    assert hd95(a, b, SPACING) == pytest.approx(0.8)


def test_disjoint_cubes_known_surface_distances() -> None:
    # 4³ cubes 8 voxels apart along axis 2 (2.5 mm): each surface has 56 voxels, in layers of
    # 16, 12, 12, 16 at 5, 6, 7, 8 voxels from the other cube's facing layer → 12.5 … 20 mm.
    a = cube((8, 8, 16), (2, 2, 2), 4)
    b = cube((8, 8, 16), (2, 2, 10), 4)
    assert dice(a, b) == 0.0
    assert iou(a, b) == 0.0
    assert hd95(a, b, SPACING) == pytest.approx(20.0)
    assert nsd(a, b, SPACING, tolerance_mm=1.0) == 0.0
    assert nsd(a, b, SPACING, tolerance_mm=12.5) == pytest.approx(32 / 112)  # the 16 facing voxels per side
    assert hd95(a, b, (2.5, 1.0, 0.8)) == pytest.approx(8 * 0.8)  # spacing is per array axis
    assert msd(a, b, SPACING) == pytest.approx(2.5 * (16 * 5 + 12 * 6 + 12 * 7 + 16 * 8) / 56)  # 16.25 mm both ways


def test_mean_surface_distance_conventions() -> None:
    mask = blob((24, 20, 12), seed=1)
    empty = np.zeros_like(mask)
    assert msd(mask, mask, SPACING) == 0.0 and msd(empty, empty, SPACING) == 0.0
    with pytest.warns(UndefinedMetricWarning, match="msd: exactly one of prediction and target is empty"):
        assert math.isnan(msd(mask, empty, SPACING))


def test_both_empty_convention() -> None:
    empty = np.zeros((6, 6, 6), dtype=bool)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert evaluate_case(empty, empty, SPACING) == {"dice": 1.0, "iou": 1.0, "hd95_mm": 0.0, "nsd": 1.0}


@pytest.mark.parametrize("empty_side", ["pred", "target"])
def test_one_empty_convention(empty_side: str) -> None:
    full = cube((8, 8, 8), (2, 2, 2), 3)
    empty = np.zeros_like(full)
    pred, target = (empty, full) if empty_side == "pred" else (full, empty)
    assert dice(pred, target) == 0.0
    assert iou(pred, target) == 0.0
    assert nsd(pred, target, SPACING) == 0.0
    with pytest.warns(UndefinedMetricWarning, match="exactly one of prediction and target is empty"):
        assert math.isnan(hd95(pred, target, SPACING))
    with pytest.warns(UndefinedMetricWarning):
        result = evaluate_case(pred, target, SPACING)
    assert result["dice"] == 0.0 and result["nsd"] == 0.0 and math.isnan(result["hd95_mm"])


def test_summarise_excludes_and_counts_nan() -> None:
    cases = [
        {"case": "a", "dice": 0.8, "iou": 0.6, "hd95_mm": 2.0, "nsd": 0.9, "seconds": 1.0, "cached": True},
        {"case": "b", "dice": 0.0, "iou": 0.0, "hd95_mm": math.nan, "nsd": 0.0, "seconds": 3.0, "cached": False},
        {"case": "c", "dice": 1.0, "iou": 1.0, "hd95_mm": 4.0, "nsd": 1.0, "seconds": 2.0, "cached": True},
    ]
    summary = summarise(cases)
    assert summary["dice"] == pytest.approx(0.6)
    assert summary["hd95_mm"] == pytest.approx(3.0)
    assert summary["seconds"] == pytest.approx(2.0)
    assert summary["hd95_undefined"] == 1
    assert summary["cases"] == 3
    assert "case" not in summary and "cached" not in summary
    assert math.isnan(summarise([cases[1]])["hd95_mm"])


def test_bad_inputs_raise_clear_errors() -> None:
    with pytest.raises(MetricError, match=r"same grid, got shapes \(4, 4, 4\) and \(4, 4, 5\)"):
        dice(np.ones((4, 4, 4)), np.ones((4, 4, 5)))
    with pytest.raises(MetricError, match="one value per axis"):
        hd95(np.ones((4, 4, 4)), np.ones((4, 4, 4)), (1.0, 1.0))
    with pytest.raises(MetricError, match="positive"):
        nsd(np.ones((4, 4, 4)), np.ones((4, 4, 4)), (1.0, -1.0, 1.0))
    with pytest.raises(MetricError, match="tolerance_mm"):
        evaluate_case(np.ones((4, 4, 4)), np.ones((4, 4, 4)), SPACING, tolerance_mm=-1.0)


def test_torch_and_probability_inputs_match_numpy() -> None:
    a, b = blob((20, 18, 10), seed=3), blob((20, 18, 10), seed=4)
    probabilities = torch.from_numpy(np.where(b, 0.9, 0.2).astype(np.float32))
    assert evaluate_case(torch.from_numpy(a), probabilities, SPACING) == evaluate_case(a, b, SPACING)


def test_brats_regions_and_evaluation() -> None:
    label = np.zeros((10, 10, 10), dtype=np.uint8)
    label[2:8, 2:8, 2:8] = 2
    label[3:7, 3:7, 3:7] = 1
    label[4:6, 4:6, 4:6] = 4
    regions = brats_regions(label)
    assert [int(regions[k].sum()) for k in ("WT", "TC", "ET")] == [216, 64, 8]
    perfect = evaluate_brats(label, label, SPACING)
    assert set(perfect) == {"WT", "TC", "ET"}
    assert all(perfect[r]["dice"] == 1.0 for r in perfect)
    binary = evaluate_brats(label > 0, label, SPACING)
    assert set(binary) == {"WT"} and binary["WT"]["dice"] == 1.0
    core_only = evaluate_brats(label > 1, label, SPACING)  # bool → whole tumour, scored on WT only
    assert core_only["WT"]["dice"] == pytest.approx(2 * 160 / (160 + 216))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_agreement_with_monai(seed: int) -> None:
    monai_metrics = pytest.importorskip("monai.metrics")
    pred = blob((32, 28, 16), seed)
    target = blob((32, 28, 16), seed + 50) | (pred & (np.random.default_rng(seed).random(pred.shape) > 0.3))
    y_pred = torch.from_numpy(pred)[None, None].float()  # [B=1, C=1, D, H, W]
    y = torch.from_numpy(target)[None, None].float()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # MONAI's own deprecation notice
        monai_dice = monai_metrics.DiceMetric(include_background=True)(y_pred, y).item()
        monai_hd95 = monai_metrics.HausdorffDistanceMetric(include_background=True, percentile=95)(
            y_pred, y, spacing=SPACING
        ).item()
        monai_nsd = {
            tol: monai_metrics.SurfaceDiceMetric([tol], include_background=True, use_subvoxels=False)(
                y_pred, y, spacing=SPACING
            ).item()
            for tol in (1.0, 2.5)
        }
    ours = evaluate_case(pred, target, SPACING)
    assert 0.3 < ours["dice"] < 0.9  # a non-trivial pair
    assert ours["dice"] == pytest.approx(monai_dice, abs=1e-6)
    assert ours["hd95_mm"] == pytest.approx(monai_hd95, rel=1e-5)
    assert ours["nsd"] == pytest.approx(monai_nsd[1.0], abs=1e-6)
    assert nsd(pred, target, SPACING, tolerance_mm=2.5) == pytest.approx(monai_nsd[2.5], abs=1e-6)
