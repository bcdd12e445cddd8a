"""The U-Net baselines: shapes on odd grids, slicing, resizing, training signal, checkpoints, the mask writer."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from oss_net.models import load_model, save_model
from oss_net.models.unet import build_unet, get_unet_config, segmentation_loss

ODD_GRID = (13, 10, 7)
TINY = {"volume_shape": ODD_GRID, "channels": (4, 8, 8), "strides": (2, 2)}


@pytest.mark.parametrize(
    ("name", "overrides"),
    [("unet3d", {}), ("unet2d", {"slice_axis": 0}), ("unet2d", {"slice_axis": 1}), ("unet2d", {"slice_axis": 2})],
)
def test_output_shape_on_odd_grid(name, overrides):
    model = build_unet(get_unet_config(name, "brats", **TINY, **overrides)).eval()
    volume = torch.randn(2, 4, *ODD_GRID)
    assert model(volume).shape == (2, 1, *ODD_GRID)
    probs = model.predict_volume(volume)
    assert probs.shape == (2, 1, *ODD_GRID)
    assert float(probs.min()) >= 0 and float(probs.max()) <= 1


def test_2d_net_treats_slices_independently():
    """Slice k of the output depends only on slice k of the input (slices are folded into the batch)."""
    model = build_unet(get_unet_config("unet2d", "lits", **TINY, slice_axis=1)).eval()
    volume = torch.randn(1, 1, *ODD_GRID)
    changed = volume.clone()
    changed[:, :, :, 3] += 5.0
    difference = (model.predict_volume(volume) - model.predict_volume(changed)).abs().amax(dim=(0, 1, 2, 4))  # [10]
    assert float(difference[3]) > 0
    assert float(difference[torch.arange(10) != 3].max()) == 0


def test_3d_net_resizes_to_input_shape_and_back():
    config = get_unet_config("unet3d", "lits", volume_shape=(20, 20, 12), input_shape=(16, 16, 8), channels=(4, 8), strides=(2,))
    model = build_unet(config).eval()
    volume = torch.randn(1, 1, 20, 20, 12)
    label = torch.zeros(1, 20, 20, 12, dtype=torch.uint8)
    label[:, 5:15, 5:15, 3:9] = 2
    inputs, target = model.training_pair(volume, label)
    assert inputs.shape == (1, 1, 16, 16, 8) and target.shape == (1, 1, 16, 16, 8)
    assert set(target.unique().tolist()) == {0.0, 1.0}
    assert model.predict_volume(volume).shape == (1, 1, 20, 20, 12)


def test_2d_training_pair_draws_slices_of_the_configured_axis():
    model = build_unet(get_unet_config("unet2d", "brats", **TINY, slice_axis=2, training_slices=3))
    volume = torch.randn(2, 4, *ODD_GRID)
    label = torch.zeros(2, *ODD_GRID, dtype=torch.uint8)
    label[..., 4] = 1  # only slice 4 of axis 2 is foreground
    inputs, target = model.training_pair(volume, label, torch.Generator().manual_seed(0))
    assert inputs.shape == (2, 4, 13, 10, 3) and target.shape == (2, 1, 13, 10, 3)
    picked = [k for k in range(7) if any(torch.equal(inputs[:, :, :, :, j], volume[:, :, :, :, k]) for j in range(3))]
    assert len(picked) == 3
    assert float(target.sum()) == (4 in picked) * 2 * 13 * 10


def _sphere_batch(shape: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    axes = [torch.arange(n, dtype=torch.float32) - (n - 1) / 2 for n in shape]
    radius = (axes[0][:, None, None] ** 2 + axes[1][None, :, None] ** 2 + axes[2][None, None, :] ** 2).sqrt()
    label = (radius < min(shape) / 3).to(torch.uint8)[None]  # [1, *shape]
    generator = torch.Generator().manual_seed(0)
    volume = label[:, None].float() + 0.3 * torch.randn(1, 1, *shape, generator=generator)  # [1, 1, *shape]
    return volume, label


@pytest.mark.parametrize("name", ["unet3d", "unet2d"])
def test_training_decreases_the_loss(name):
    torch.manual_seed(0)
    shape = (12, 12, 8)
    config = get_unet_config(name, "lits", volume_shape=shape, channels=(4, 8), strides=(2,), training_slices=8, activation="leaky_relu")
    model = build_unet(config).train()
    volume, label = _sphere_batch(shape)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(8):
        inputs, target = model.training_pair(volume, label, torch.Generator().manual_seed(1))
        loss = segmentation_loss(model(inputs), target, config.dice_weight)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.8 * losses[0], losses


def test_checkpoint_round_trip(tmp_path):
    model = build_unet(get_unet_config("unet2d", "brats", **TINY)).eval()
    save_model(tmp_path / "unet.pt", model)
    loaded = load_model(tmp_path / "unet.pt").eval()
    assert loaded.config == model.config
    volume = torch.randn(1, 4, *ODD_GRID)
    assert torch.equal(loaded.predict_volume(volume), model.predict_volume(volume))


def test_mask_goes_through_the_inference_writer(synthetic_brats_root, tmp_path):
    """A U-Net mask on the model grid is written on the input grid with the input affine, as OSS-Net's."""
    import nibabel as nib

    from oss_net.data import discover_brats, load_case
    from oss_net.inference.writers import save_input_grid_image

    config = get_unet_config("unet3d", "brats", volume_shape=(64, 64, 40), channels=(4, 8), strides=(2,), activation="leaky_relu")
    files = discover_brats(synthetic_brats_root, split="val")[0]
    case = load_case(files, config, with_border=False)
    probs = build_unet(config).eval().predict_volume(torch.as_tensor(case.image)[None])[0, 0]  # [64, 64, 40]
    mask = np.asarray(case.meta.to_input_grid((probs > 0.5).numpy().astype(np.uint8), order=0), dtype=np.uint8)
    save_input_grid_image(mask, case.meta, tmp_path / "mask.nii.gz")
    written = nib.load(str(tmp_path / "mask.nii.gz"))
    source = nib.load(str(files.images[0]))
    assert written.shape == source.shape
    np.testing.assert_allclose(written.affine, source.affine)
    assert np.array_equal(np.asarray(written.dataobj), mask)
