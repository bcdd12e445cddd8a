"""oss_net.data.synthetic: real layouts, nested labels, distinct contrasts, a real affine, determinism."""
from __future__ import annotations

import filecmp

import nibabel as nib
import numpy as np
from scipy import ndimage

from oss_net.data.layouts.brats import BRATS_TRAINING
from oss_net.data.synthetic import gaussian_smooth, main, write_synthetic_dataset
from oss_net.geometry import spacing_from_affine


def _read(path):
    image = nib.load(str(path))
    return np.asarray(image.dataobj), image.affine


def test_brats_layout_labels_and_contrasts(synthetic_brats_root):
    case = synthetic_brats_root / BRATS_TRAINING / "BraTS20_Training_002"
    names = sorted(p.name for p in case.iterdir())
    assert names == [f"BraTS20_Training_002_{m}.nii.gz" for m in ("flair", "seg", "t1", "t1ce", "t2")]
    label, affine = _read(case / "BraTS20_Training_002_seg.nii.gz")
    assert label.shape == (60, 60, 38) and set(np.unique(label)) <= {0, 1, 2, 4}
    assert {2, 4} <= set(np.unique(label))
    # Nesting: necrosis (1) touches only the core, enhancing (4) lies on the core's rim inside the oedema.
    core = np.isin(label, (1, 4))
    assert not (ndimage.binary_dilation(label == 1) & ~core).any()
    assert (ndimage.binary_dilation(core) & (label > 0)).sum() > core.sum()
    flair = _read(case / "BraTS20_Training_002_flair.nii.gz")[0].astype(float)
    t1ce = _read(case / "BraTS20_Training_002_t1ce.nii.gz")[0].astype(float)
    brain = (flair > 0) & (label == 0)
    assert flair[label == 2].mean() > 1.8 * flair[brain].mean()
    assert t1ce[label == 4].mean() > 1.5 * t1ce[brain].mean()
    assert t1ce[label == 1].mean() < 0.7 * t1ce[label == 2].mean()  # necrosis dark on T1ce, the rim bright
    assert (label == 1).any() and ndimage.binary_erosion(label == 4).any()  # a rim thicker than one voxel
    spacing = spacing_from_affine(affine)
    assert np.allclose(spacing, (4.0, 4.0, 155 / 38), atol=1e-4) and np.linalg.det(affine[:3, :3]) > 0
    assert not np.allclose(affine[:3, 3], 0) and affine[0, 0] < 0


def test_brats_tumour_proportions_are_realistic(synthetic_brats_root):
    """Tumour core about half of the whole tumour and enhancing tumour about a quarter, as in BraTS cases."""
    core, enhancing = [], []
    for case in sorted((synthetic_brats_root / BRATS_TRAINING).iterdir()):
        label = _read(case / f"{case.name}_seg.nii.gz")[0]
        whole = (label > 0).sum()
        core.append(np.isin(label, (1, 4)).sum() / whole)
        enhancing.append((label == 4).sum() / whole)
    assert 0.3 < np.mean(core) < 0.7 and 0.15 < np.mean(enhancing) < 0.4
    assert min(core) > 0.15 and min(enhancing) > 0.1


def test_lits_layout_hounsfield_and_anisotropic_affine(synthetic_lits_root):
    names = sorted(p.name for p in synthetic_lits_root.iterdir())
    assert names == [f"{kind}-{n}.nii" for kind in ("segmentation", "volume") for n in range(3)]
    volume, affine = _read(synthetic_lits_root / "volume-1.nii")
    label, label_affine = _read(synthetic_lits_root / "segmentation-1.nii")
    assert volume.dtype == np.int16 and set(np.unique(label)) == {0, 1, 2}
    assert volume.min() <= -900 and np.median(volume[label == 1]) > np.median(volume[label == 2]) + 40
    spacing = spacing_from_affine(affine)
    assert spacing[2] > 1.3 * spacing[0] and np.allclose(affine, label_affine)


def test_same_seed_same_bytes_and_cli(tmp_path):
    first = write_synthetic_dataset("lits", tmp_path / "a", cases=1, shape=(20, 20, 16), seed=3)
    assert main(["--layout", "lits", "--cases", "1", "--shape", "20", "20", "16", "--seed", "3",
                 "--out", str(tmp_path / "b")]) == 0
    other = write_synthetic_dataset("lits", tmp_path / "c", cases=1, shape=(20, 20, 16), seed=4)
    assert filecmp.cmp(first / "volume-0.nii", tmp_path / "b" / "volume-0.nii", shallow=False)
    assert not filecmp.cmp(first / "volume-0.nii", other / "volume-0.nii", shallow=False)


def test_gaussian_smooth_is_scipys_gaussian_filter():
    # Kernels shorter than every axis (scipy's own loop), longer than some (the matrix product), and far
    # longer than an axis (the reflect boundary folds back more than once: 49 taps on a 3-voxel axis).
    noise = np.random.default_rng(0).normal(size=(30, 3, 12))
    for sigma in (0.7, 1.5, 6.0):
        expected = ndimage.gaussian_filter(noise, sigma)
        assert np.allclose(gaussian_smooth(noise, sigma), expected, rtol=0, atol=1e-13 * np.abs(expected).max())

