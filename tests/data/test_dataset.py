"""OSSNetDataset: item contract, reproducible per (seed, epoch, index), augmentation consistent with labels."""
from __future__ import annotations

import shutil

import nibabel as nib
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from oss_net.data import OSSNetDataset, collate_samples, discover, labels_at, load_case
from oss_net.data.augment import augment


def test_item_contract_and_point_labels(synthetic_brats_root, brats_config):
    dataset = OSSNetDataset(discover("brats", synthetic_brats_root, "train"), brats_config, samples=512)
    item = dataset[0]
    assert item["volume"].shape == (4, 64, 64, 40) and item["volume"].dtype == torch.float32
    assert item["label"].shape == (64, 64, 40) and item["label"].dtype == torch.uint8
    assert item["coords"].shape == (512, 3) and item["labels"].shape == (512, 1)
    assert item["case_id"] == "BraTS20_Training_001"
    index = item["coords"].long()
    assert torch.equal(item["labels"][:, 0], item["label"][index[:, 0], index[:, 1], index[:, 2]].float())


def test_continuous_items_have_points_inside_voxels_and_interpolated_labels(synthetic_brats_root, brats_config):
    dataset = OSSNetDataset(discover("brats", synthetic_brats_root, "train"), brats_config, samples=512,
                            border_balance=0.5, continuous=True)
    item = dataset[0]
    coords, labels, label = item["coords"], item["labels"][:, 0], item["label"].float()
    assert not torch.equal(coords, torch.round(coords))
    # the target is the foreground's indicator interpolated at the point, by an independent trilinear sampler
    grid = (2 * coords / (torch.tensor(label.shape) - 1) - 1).flip(-1)[None, :, None, None]  # [1, S, 1, 1, 3]
    expected = torch.nn.functional.grid_sample((label > 0).float()[None, None], grid, align_corners=True).reshape(-1)
    assert torch.allclose(labels, expected, atol=1e-6)
    assert ((labels > 0) & (labels < 1)).any()  # points near the boundary get a share


def test_same_seed_same_samples_new_epoch_new_samples(synthetic_brats_root, brats_config, tmp_path):
    cases = discover("brats", synthetic_brats_root, "train")
    a = OSSNetDataset(cases, brats_config, samples=256, border_balance=0.5, augment=True, seed=5, cache_dir=tmp_path)
    b = OSSNetDataset(cases, brats_config, samples=256, border_balance=0.5, augment=True, seed=5)
    first, second = a[1], b[1]
    assert torch.equal(first["coords"], second["coords"]) and torch.equal(first["volume"], second["volume"])
    a.set_epoch(1)
    assert not torch.equal(a[1]["coords"], first["coords"])
    loader = DataLoader(b, batch_size=2, collate_fn=collate_samples, num_workers=0)
    batch = next(iter(loader))
    assert batch["volume"].shape == (2, 4, 64, 64, 40) and batch["case_id"] == [c.case_id for c in cases[:2]]
    assert torch.equal(batch["coords"][1], first["coords"])


def test_border_balance_draws_from_the_band(synthetic_lits_root, lits_config):
    dataset = OSSNetDataset(discover("lits", synthetic_lits_root, "all"), lits_config, samples=300, border_balance=1.0)
    item = dataset[0]
    border = torch.from_numpy(np.asarray(load_case(dataset.cases[0], lits_config).border))
    index = item["coords"].long()
    assert border[index[:, 0], index[:, 1], index[:, 2]].all()


def test_empty_label_falls_back_to_uniform_with_a_warning(synthetic_lits_root, tmp_path, lits_config):
    for kind in ("volume", "segmentation"):
        shutil.copy(synthetic_lits_root / f"{kind}-0.nii", tmp_path / f"{kind}-0.nii")
    image = nib.load(str(tmp_path / "segmentation-0.nii"))
    nib.save(nib.Nifti1Image(np.zeros(image.shape, np.uint8), image.affine), str(tmp_path / "segmentation-0.nii"))
    dataset = OSSNetDataset(discover("lits", tmp_path, "all"), lits_config, samples=64, border_balance=0.5)
    with pytest.warns(RuntimeWarning, match="lits-0: empty label"):
        item = dataset[0]
    assert item["labels"].sum() == 0 and item["coords"].shape == (64, 3)


def test_augmentation_moves_label_and_border_with_the_image():
    label = torch.zeros(8, 6, 4, dtype=torch.uint8)
    label[1:3, 0:2, 1] = 1
    volume = torch.stack([label.float() * 10, torch.ones(8, 6, 4)])
    seen = set()
    for seed in range(12):
        out, (moved, border) = augment(volume, [label, label.bool()], torch.Generator().manual_seed(seed))
        assert torch.equal(out[0] > 5, moved.bool()) and torch.equal(border, moved.bool())
        assert int(moved.sum()) == int(label.sum())
        flipped = not torch.equal(moved, label)
        noisy = bool(out[1].std() > 0.05)  # the second channel is constant unless noise was added
        shifted = not noisy and not torch.allclose(out[1], torch.ones_like(out[1]))
        seen.update(k for k, v in (("flip", flipped), ("noise", noisy), ("brightness", shifted)) if v)
    assert seen == {"flip", "noise", "brightness"}
    assert torch.equal(labels_at(moved, torch.tensor([[1.0, 0.0, 1.0]])), moved[1:2, 0:1, 1].float().reshape(1, 1))
