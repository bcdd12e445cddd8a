"""Patch gathering: one-shot (training) and from a per-case `PatchSource` (inference), against a naive gather."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from oss_net.data import PATCH_SIZE, PatchSource, gather_patches
from oss_net.data.sampling import sample_coordinates

SHAPE = (12, 10, 8)


def _generator(seed=0):
    return torch.Generator().manual_seed(seed)


def _naive_patches(volume, coords, large):
    """Per point: slice the zero-padded volume on the CPU at the nearest voxel (integer centres)."""
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


def _sampled_patches(volume, coords, large):
    """Trilinear interpolation of the zero-padded volume (and of its 2³ box average) at each patch position,
    by grid_sample: an independent reference for fractional centres (clamped into the grid, as documented)."""
    upper = torch.tensor([s - 1.0 for s in volume.shape[2:]], dtype=torch.float64)
    centres = torch.minimum(coords.double().clamp(min=0), upper)  # [B, N, 3]
    padded = F.pad(volume, [7] * 6)  # index p of the volume is p + 7 here
    box = F.avg_pool3d(padded, 2, stride=1)  # box[q] = mean(padded[q..q+1]): pooled cell m of c's block is box[c + 2m]
    offsets = torch.arange(7, dtype=torch.float64)
    parts = [(padded, offsets - 3 + 7)] + ([(box, 2 * offsets)] if large else [])
    out = []
    for grid_volume, steps in parts:
        positions = centres[..., None, :] + torch.stack(torch.meshgrid(steps, steps, steps, indexing="ij"), -1).reshape(-1, 3)
        size = torch.tensor(grid_volume.shape[2:], dtype=torch.float64)
        normalised = (2 * positions / (size - 1) - 1).flip(-1)  # [B, N, 343, 3] as (x, y, z) = (k, j, i)
        values = F.grid_sample(grid_volume, normalised[:, :, :, None, :], mode="bilinear", align_corners=True)
        out.append(values[..., 0].permute(0, 2, 1, 3))  # [B, N, C, 343]
    return torch.cat(out, dim=2).reshape(*coords.shape[:2], -1, 7, 7, 7)


@pytest.mark.parametrize("large", [False, True])
def test_gather_patches_at_fractional_centres_interpolates_the_volume(large):
    generator = _generator(3)
    volume = torch.randn(2, 3, *SHAPE, generator=generator, dtype=torch.float64)
    coords = torch.stack([sample_coordinates(SHAPE, None, 50, 0.0, generator, continuous=True) for _ in range(2)]).double()
    coords[0, 0] = torch.tensor([0.0, 0.0, 0.0])  # corners: mostly outside
    coords[1, 0] = torch.tensor([s - 1.0 for s in SHAPE])
    coords[1, 1] = torch.tensor([-0.4, 4.5, SHAPE[2] - 0.6])  # beyond the outer centres: clamped
    patches = gather_patches(volume, coords, large=large)
    assert patches.shape == (2, 50, 6 if large else 3, 7, 7, 7) and patches.dtype == torch.float64
    assert torch.allclose(patches, _sampled_patches(volume, coords, large), atol=1e-12)


@pytest.mark.parametrize("large", [False, True])
def test_integer_centres_give_todays_patches_bit_for_bit(large):
    """Integer centres read the voxels as they are, as float or int, alone or among fractional centres."""
    generator = _generator(4)
    volume = torch.randn(1, 4, *SHAPE, generator=generator)
    volume[0, 0, 5, 5, 4] = -0.0  # a negative zero keeps its sign: no blend arithmetic touches an integer centre
    whole = sample_coordinates(SHAPE, None, 60, 0.0, generator)[None]  # [1, 60, 3] integer-valued float32
    whole[0, 0] = torch.tensor([5.0, 5.0, 4.0])
    mixed = whole.clone()
    mixed[0, 1::2] += torch.rand(30, 3, generator=generator) * 0.9 + 0.05  # every other centre fractional
    read = gather_patches(volume, whole.long(), large=large)
    assert torch.equal(gather_patches(volume, whole, large=large), read)
    assert torch.equal(gather_patches(volume, mixed, large=large)[:, ::2], read[:, ::2])
    if not large:  # the small patch is a plain copy of the padded volume
        assert torch.equal(read, _naive_patches(volume, whole, large))
    assert torch.signbit(read[0, 0, 0, 3, 3, 3])
    assert torch.allclose(gather_patches(volume, mixed, large=large)[:, 1::2].double(),
                          _sampled_patches(volume.double(), mixed[:, 1::2], large), atol=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gather_patches_on_gpu_equals_cpu():
    volume = torch.randn(1, 2, *SHAPE)
    coords = sample_coordinates(SHAPE, None, 200, 0.0, _generator())[None]
    gpu = gather_patches(volume.cuda(), coords.cuda(), large=True)
    assert gpu.device.type == "cuda" and torch.allclose(gpu.cpu(), gather_patches(volume, coords, large=True))


@pytest.mark.parametrize("large", [False, True])
def test_patch_source_gathers_chunk_by_chunk_exactly_as_one_shot(large):
    """Inference pads (and pools) once per case, then gathers chunk after chunk: bit for bit the one-shot patches."""
    generator = _generator(5)
    volume = torch.randn(1, 4, *SHAPE, generator=generator)
    coords = sample_coordinates(SHAPE, None, 300, 0.0, generator)[None].long()  # integer lattice points, as refinement
    coords[0, :2] = torch.tensor([[0, 0, 0], [s - 1 for s in SHAPE]])
    source = PatchSource(volume, large=large)
    chunks = torch.cat([source.gather(chunk) for chunk in coords.split(37, dim=1)], dim=1)
    assert source.patch_channels == (8 if large else 4)
    assert chunks.shape == (1, 300, source.patch_channels, PATCH_SIZE, PATCH_SIZE, PATCH_SIZE)
    assert torch.equal(chunks, gather_patches(volume, coords, large=large))
    assert torch.allclose(chunks.double(), _naive_patches(volume.double(), coords, large), atol=1e-6)


def test_patch_source_gathers_in_bounded_steps(monkeypatch):
    """Many points are gathered a bounded number at a time; the steps join seamlessly."""
    import oss_net.data.patches as patches

    volume = torch.randn(2, 2, *SHAPE, generator=_generator(6), dtype=torch.float64)
    coords = torch.stack([sample_coordinates(SHAPE, None, 90, 0.0, _generator(b)) for b in range(2)])
    whole = gather_patches(volume, coords, large=True)
    monkeypatch.setattr(patches, "GATHER_ELEMENTS", 4 * PATCH_SIZE**3 * 7)  # 7 points per step
    assert torch.equal(gather_patches(volume, coords, large=True), whole)


def test_patch_source_rejects_a_volume_without_batch_and_channel_axes():
    with pytest.raises(ValueError, match=r"volume must be \[B, C, D, H, W\], got \[12, 10, 8\]"):
        PatchSource(torch.zeros(SHAPE))
