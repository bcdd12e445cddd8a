"""GridMeta: padding is undone exactly, resampling maps back to the input shape, voxels map to mm."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from oss_net.data.grid import GridMeta, nonzero_bounds
from oss_net.datasets import DatasetError
from oss_net.geometry import spacing_from_affine

AFFINE = np.array([[-1.0, 0, 0, 10.0], [0, -1.0, 0, 239.0], [0, 0, 1.2, -5.0], [0, 0, 0, 1]])


def test_brats_padding_matches_the_original_and_round_trips():
    meta = GridMeta.for_padding(AFFINE, None, (240, 240, 155), (256, 256, 160))
    assert meta.pad_before == (8, 8, 3) and meta.pad_after == (8, 8, 2)
    rng = np.random.default_rng(0)
    small = GridMeta.for_padding(AFFINE, None, (9, 8, 5), (12, 8, 8))
    array = rng.normal(size=(2, 9, 8, 5)).astype(np.float32)
    padded = small.to_model_grid(array, order=1)
    assert padded.shape == (2, 12, 8, 8) and padded[:, :2].sum() == 0 and padded[:, -1].sum() == 0
    assert np.array_equal(small.to_input_grid(padded), array)
    assert torch.equal(small.to_input_grid(torch.from_numpy(padded)), torch.from_numpy(array))


def test_a_scan_larger_than_the_grid_is_resampled_not_cropped(caplog):
    """Issue 12: padding never crops; the scan is resampled to fit, logged and recorded in the meta."""
    with caplog.at_level("WARNING", logger="oss_net.data.grid"):
        meta = GridMeta.for_padding(AFFINE, None, (10, 7, 6), (6, 7, 4), source="case-7")
    assert meta.mode == "resample" and meta.resampled_to_fit
    assert "case-7" in caplog.text and "(10, 7, 6)" in caplog.text and "(6, 7, 4)" in caplog.text
    label = np.zeros((10, 7, 6), dtype=np.uint8)
    label[0:2, 1:6, 0:2] = 1  # in the corner a centred crop would cut away
    assert meta.to_model_grid(label, order=0).sum() > 0
    assert GridMeta.from_dict(meta.to_dict()).resampled_to_fit
    fitting = GridMeta.for_padding(AFFINE, None, (6, 7, 4), (6, 7, 4))
    assert fitting.mode == "pad" and not fitting.resampled_to_fit and not fitting.cropped_background


def test_a_larger_scan_whose_content_fits_loses_only_empty_background(caplog):
    label = np.zeros((10, 7, 6), dtype=np.uint8)
    label[0:5, 1:6, 0:2] = 1  # content at the low end of axis 0 and 2: the centred window would cut it
    bounds = nonzero_bounds([label])
    assert bounds == ((0, 4), (1, 5), (0, 1))
    with caplog.at_level("WARNING", logger="oss_net.data.grid"):
        meta = GridMeta.for_padding(AFFINE, None, (10, 7, 6), (6, 7, 4), source="case-8", content=bounds)
    assert meta.mode == "pad" and meta.cropped_background and not meta.resampled_to_fit
    assert meta.pad_before == (0, 0, 0) and meta.pad_after == (-4, 0, -2) and "case-8" in caplog.text
    assert np.array_equal(meta.to_input_grid(meta.to_model_grid(label, order=0)), label)
    too_wide = GridMeta.for_padding(AFFINE, None, (10, 7, 6), (6, 7, 4), content=((0, 9), (0, 6), (0, 5)))
    assert too_wide.resampled_to_fit
    assert GridMeta.from_dict(meta.to_dict()) == meta
    assert nonzero_bounds([np.zeros((2, 3, 4, 5))]) == ((0, 0), (0, 0), (0, 0))


def test_stored_crop_meta_still_crops_and_restores_zeros():
    """A meta with negative padding (written before crops were replaced by resampling) still round trips."""
    meta = GridMeta(AFFINE, None, (10, 7, 6), (1.0, 1.0, 1.2), (6, 7, 4), "pad", (-2, 0, -1), (-2, 0, -1))
    array = np.arange(10 * 7 * 6).reshape(10, 7, 6)
    cropped = meta.to_model_grid(array, order=0)
    assert np.array_equal(cropped, array[2:8, :, 1:5])
    back = meta.to_input_grid(cropped)
    assert np.array_equal(back[2:8, :, 1:5], cropped) and back[:2].sum() == 0


def test_model_voxel_to_mm_goes_through_the_input_voxel_and_affine():
    meta = GridMeta.for_padding(AFFINE, None, (240, 240, 155), (256, 256, 160))
    points = np.array([[8.0, 8.0, 3.0], [100.0, 50.5, 20.0]])
    expected = (AFFINE @ np.c_[points - [8, 8, 3], np.ones(2)].T).T[:, :3]
    assert np.allclose(meta.model_voxel_to_mm(points), expected)
    assert torch.allclose(meta.model_voxel_to_mm(torch.tensor(points)), torch.tensor(expected))
    assert meta.spacing == (1.0, 1.0, 1.2)


def test_resampling_round_trip_and_voxel_centres():
    meta = GridMeta.for_resampling(AFFINE, None, (10, 20, 5), (20, 20, 20))
    label = np.zeros((10, 20, 5), dtype=np.uint8)
    label[2:7, 5:15, 1:4] = 2
    model = meta.to_model_grid(label, order=0)
    assert model.dtype == np.uint8 and model.shape == (20, 20, 20) and set(np.unique(model)) == {0, 2}
    assert np.array_equal(meta.to_input_grid(model, order=0), label)
    image = np.random.default_rng(1).normal(size=(1, 10, 20, 5)).astype(np.float32)
    assert meta.to_input_grid(meta.to_model_grid(image, order=1), order=1).shape == (1, 10, 20, 5)
    # Centre of the model grid maps to the centre of the input grid; first voxel centre to −0.25 (scale ½).
    assert np.allclose(meta.model_to_input_voxel(np.array([[9.5, 9.5, 9.5], [0, 0, 0]])),
                       [[4.5, 9.5, 2.0], [-0.25, 0.0, -0.375]])
    assert GridMeta.from_dict(meta.to_dict()) == meta


def test_spacing_from_rotated_flipped_affine() -> None:
    """The column norms of the 3×3 block, whatever the rotation or flip; numpy or torch; singular is an error."""
    spacing = (0.8, 1.0, 2.5)
    angle = 0.7
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, -1]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag(spacing)
    affine[:3, 3] = (10.0, -4.0, 3.0)
    assert spacing_from_affine(affine) == pytest.approx(spacing)
    assert spacing_from_affine(torch.from_numpy(affine)) == pytest.approx(spacing)
    assert spacing_from_affine(affine[:3, :3]) == pytest.approx(spacing)
    assert GridMeta.for_padding(affine, None, (4, 4, 4), (4, 4, 4)).spacing == pytest.approx(spacing)
    with pytest.raises(DatasetError, match="singular"):
        spacing_from_affine(np.diag([1.0, 0.0, 1.0, 1.0]))
    with pytest.raises(DatasetError, match=r"affine must be 4×4 .* got shape \(2, 2\)"):
        spacing_from_affine(np.eye(2))
