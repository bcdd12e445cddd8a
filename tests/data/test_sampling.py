"""Point sampling, point labels and the low-resolution target (patch gathering: test_patches.py)."""
from __future__ import annotations

import pytest
import torch

from oss_net.data.sampling import labels_at, sample_coordinates, segmentation_target

SHAPE = (12, 10, 8)


def _generator(seed=0):
    return torch.Generator().manual_seed(seed)


def _border():
    mask = torch.zeros(SHAPE, dtype=torch.bool)
    mask[3:6, 2:5, 1:4] = True  # 27 voxels
    return mask


def test_border_share_is_exact_and_without_replacement():
    mask = torch.zeros(SHAPE, dtype=torch.bool)
    mask[2:9, 1:9, :] = True  # 448 voxels
    coords = sample_coordinates(SHAPE, mask, 1000, 0.3, _generator())
    assert coords.shape == (1000, 3) and coords.dtype == torch.float32
    only_border = sample_coordinates(SHAPE, mask, 400, 1.0, _generator())
    index = only_border.long()
    assert mask[index[:, 0], index[:, 1], index[:, 2]].all()
    assert len({tuple(p) for p in index.tolist()}) == 400  # no voxel twice
    # floor(S·ρ) border draws plus uniform draws, some of which also hit the band
    inside = mask[coords.long().unbind(1)].sum().item()
    assert 300 <= inside and abs(inside - (300 + 700 * 448 / 960)) < 60


def test_small_band_is_taken_whole_then_filled_uniformly():
    coords = sample_coordinates(SHAPE, _border(), 100, 0.5, _generator())
    voxels = {tuple(p) for p in coords.long().tolist()}
    assert {tuple(p) for p in _border().nonzero().tolist()} <= voxels and coords.shape == (100, 3)


def test_uniform_reaches_the_last_index_only_when_asked():
    last = sample_coordinates(SHAPE, None, 4000, 0.0, _generator(), include_last_index=True)
    legacy = sample_coordinates(SHAPE, None, 4000, 0.0, _generator(), include_last_index=False)
    assert last.amax(0).tolist() == [s - 1 for s in SHAPE] and last.amin(0).tolist() == [0, 0, 0]
    assert legacy.amax(0).tolist() == [s - 2 for s in SHAPE]
    assert torch.equal(last, torch.floor(last))


def test_continuous_points_are_off_grid_and_inside():
    coords = sample_coordinates(SHAPE, _border(), 500, 0.5, _generator(), continuous=True)
    assert not torch.equal(coords, torch.round(coords))
    assert (coords >= 0).all() and (coords <= torch.tensor(SHAPE) - 1).all()


def test_continuous_points_stay_inside_their_voxels():
    """Border points keep their meaning: each lies in a voxel of the band (within half a voxel of its centre);
    uniform points fill the whole grid up to its outer voxel centres, with no point mass on the faces."""
    border = sample_coordinates(SHAPE, _border(), 27, 1.0, _generator(), continuous=True)
    voxels = torch.round(border).long()
    assert _border()[voxels.unbind(1)].all() and len({tuple(v) for v in voxels.tolist()}) == 27
    assert (border - voxels).abs().max() <= 0.5 and (border - voxels).abs().mean() > 0.15
    uniform = sample_coordinates(SHAPE, None, 20000, 0.0, _generator(1), continuous=True)
    upper = torch.tensor(SHAPE, dtype=torch.float32) - 1
    assert (uniform >= 0).all() and (uniform <= upper).all()
    assert (uniform.amin(0) < 0.01).all() and (uniform.amax(0) > upper - 0.01).all()
    assert int((uniform == 0).sum() + (uniform == upper).sum()) == 0
    fraction = uniform - torch.floor(uniform)
    assert abs(float(fraction.mean()) - 0.5) < 0.02  # uniform within the voxels


def test_reproducible_and_empty_band_falls_back_with_a_warning():
    a = sample_coordinates(SHAPE, _border(), 64, 0.5, _generator(7))
    assert torch.equal(a, sample_coordinates(SHAPE, _border(), 64, 0.5, _generator(7)))
    assert not torch.equal(a, sample_coordinates(SHAPE, _border(), 64, 0.5, _generator(8)))
    with pytest.warns(RuntimeWarning, match="empty border band"):
        coords = sample_coordinates(SHAPE, torch.zeros(SHAPE, dtype=torch.bool), 64, 0.5, _generator())
    assert coords.shape == (64, 3)


def test_labels_at_nearest_voxel():
    label = torch.zeros(SHAPE, dtype=torch.uint8)
    label[4, 5, 6] = 4
    coords = torch.tensor([[4.0, 5.0, 6.0], [4.4, 4.6, 5.7], [4.6, 5.0, 6.0], [0.0, 0.0, 0.0]])
    assert labels_at(label, coords).squeeze(1).tolist() == [1.0, 1.0, 0.0, 0.0]
    batched = labels_at(label.expand(2, *SHAPE), coords.expand(2, 4, 3))
    assert batched.shape == (2, 4, 1)


def test_segmentation_target_is_any_foreground_per_cell():
    label = torch.zeros(1, 8, 8, 4, dtype=torch.uint8)
    label[0, 5, 1, 3] = 2
    target = segmentation_target(label, (2, 2, 1))
    assert target.shape == (1, 1, 2, 2, 1)
    assert target.flatten().tolist() == [0.0, 0.0, 1.0, 0.0]


def test_interpolated_targets_share_each_class_between_voxel_centres():
    """Continuous sampling's targets: each output's indicator interpolated trilinearly (binary and every label mode)."""
    from oss_net.labels import LabelScheme

    label = torch.zeros(SHAPE, dtype=torch.uint8)
    label[4, 5, 6] = 4
    label[5, 5, 6] = 1
    coords = torch.tensor([[4.0, 5.0, 6.0], [4.5, 5.0, 6.0], [4.25, 5.5, 6.0], [0.0, 0.0, 0.0], [11.0, 9.0, 7.0]])
    binary = LabelScheme().point_targets(label, coords, interpolate=True)
    assert binary[:, 0].tolist() == pytest.approx([1.0, 1.0, 0.5, 0.0, 0.0])
    assert torch.equal(LabelScheme().point_targets(label, coords[:1].long(), interpolate=True), labels_at(label, coords[:1]))
    regions = LabelScheme("regions", (("WT", (1, 4)), ("ET", (4,)))).point_targets(label, coords, interpolate=True)
    assert regions[:, 1].tolist() == pytest.approx([1.0, 0.5, 0.375, 0.0, 0.0])
    exclusive = LabelScheme("exclusive", (("a", (1,)), ("b", (4,)))).point_targets(label, coords, interpolate=True)
    assert exclusive.sum(1).tolist() == pytest.approx([1.0] * 5)
    assert exclusive[1].tolist() == pytest.approx([0.0, 0.5, 0.5]) and exclusive[2, 0] == pytest.approx(0.5)
