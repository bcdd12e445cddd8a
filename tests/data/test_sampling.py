"""Point sampling, point labels, device patch gathering and the low-resolution target."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from oss_net.data.sampling import gather_patches, labels_at, sample_coordinates, segmentation_target

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


def _naive_patches(volume, coords, large):
    """Per point: slice the zero-padded volume on the CPU."""
    padded = F.pad(volume, [7] * 6)
    out = []
    for b in range(volume.shape[0]):
        rows = []
        for point in torch.round(coords[b]).long().tolist():
            i, j, k = (p + 7 for p in point)
            small = padded[b, :, i - 3:i + 4, j - 3:j + 4, k - 3:k + 4]
            if large:
                block = padded[b, :, i - 7:i + 7, j - 7:j + 7, k - 7:k + 7]
                small = torch.cat([small, F.avg_pool3d(block[None], 2)[0]])
            rows.append(small)
        out.append(torch.stack(rows))
    return torch.stack(out)


@pytest.mark.parametrize("large", [False, True])
def test_gather_patches_equals_a_naive_gather(large):
    generator = _generator(3)
    volume = torch.randn(2, 3, *SHAPE, generator=generator, dtype=torch.float64)
    coords = torch.stack([sample_coordinates(SHAPE, None, 50, 0.0, generator, continuous=True) for _ in range(2)])
    coords[0, 0] = torch.tensor([0.0, 0.0, 0.0])  # corners: mostly outside
    coords[1, 0] = torch.tensor([s - 1.0 for s in SHAPE])
    patches = gather_patches(volume, coords.double(), large=large)
    assert patches.shape == (2, 50, 6 if large else 3, 7, 7, 7) and patches.dtype == torch.float64
    assert torch.allclose(patches, _naive_patches(volume, coords, large), atol=1e-12)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gather_patches_on_gpu_equals_cpu():
    volume = torch.randn(1, 2, *SHAPE)
    coords = sample_coordinates(SHAPE, None, 200, 0.0, _generator())[None]
    gpu = gather_patches(volume.cuda(), coords.cuda(), large=True)
    assert gpu.device.type == "cuda" and torch.allclose(gpu.cpu(), gather_patches(volume, coords, large=True))


def test_segmentation_target_is_any_foreground_per_cell():
    label = torch.zeros(1, 8, 8, 4, dtype=torch.uint8)
    label[0, 5, 1, 3] = 2
    target = segmentation_target(label, (2, 2, 1))
    assert target.shape == (1, 1, 2, 2, 1)
    assert target.flatten().tolist() == [0.0, 0.0, 1.0, 0.0]
