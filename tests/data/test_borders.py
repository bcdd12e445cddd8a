"""Border maps: equal to scipy's Sobel magnitude + 13³ dilation, written by the scripts, used by loading."""
from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from scipy import ndimage

from oss_net.data import discover, load_case
from oss_net.data.borders import compute_border
from oss_net.data.layouts.brats import BRATS_TRAINING

ROOT = Path(__file__).resolve().parents[2]


def _scipy_border(label: np.ndarray) -> np.ndarray:
    shell = ndimage.generic_gradient_magnitude(label > 0, ndimage.sobel)
    return ndimage.maximum_filter(shell.astype(np.uint8), size=13) > 0


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equals_scipy_on_random_blobs_touching_the_edges(seed):
    rng = np.random.default_rng(seed)
    smooth = ndimage.gaussian_filter(rng.normal(size=(44, 36, 28)), 2.0)
    label = (smooth > np.quantile(smooth, 0.97)).astype(np.uint8) * 2
    border = compute_border(label)
    assert border.dtype == bool and border.any() and not border.all()
    assert np.array_equal(border, _scipy_border(label))
    assert np.array_equal(border, ndimage.binary_dilation(
        ndimage.generic_gradient_magnitude(label > 0, ndimage.sobel), np.ones((13, 13, 13), bool)))


def test_equals_scipy_on_a_synthetic_case(synthetic_lits_root):
    label = np.asarray(nib.load(str(synthetic_lits_root / "segmentation-0.nii")).dataobj)
    assert np.array_equal(compute_border(torch.from_numpy(label)), _scipy_border(label))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_gives_the_same_map(synthetic_lits_root):
    label = np.asarray(nib.load(str(synthetic_lits_root / "segmentation-1.nii")).dataobj)
    assert np.array_equal(compute_border(label, "cuda"), compute_border(label, "cpu"))


def test_brats_script_writes_next_to_cases_skips_existing_and_loading_uses_it(synthetic_brats_root, tmp_path, brats_config,
                                                                             capsys):
    root = tmp_path / "brats"
    shutil.copytree(synthetic_brats_root, root)
    script = _script("generate_borders_bra_ts_2020")
    assert script.main([str(root), "--device", "cpu"]) == 0
    assert "wrote 4 border map(s)" in capsys.readouterr().out
    case_dir = root / BRATS_TRAINING / "BraTS20_Training_001"
    stored = nib.load(str(case_dir / "BraTS20_Training_001_border.nii.gz"))
    label = nib.load(str(case_dir / "BraTS20_Training_001_seg.nii.gz"))
    assert np.allclose(stored.affine, label.affine)
    assert np.array_equal(np.asarray(stored.dataobj) > 0, _scipy_border(np.asarray(label.dataobj)))
    assert script.main([str(root)]) == 0
    assert "wrote 0 border map(s)" in capsys.readouterr().out
    # Loading reads the stored map: make it recognisably different and check it is what load_case returns.
    marked = np.zeros(stored.shape, np.uint8)
    marked[10, 11, 12] = 1
    nib.save(nib.Nifti1Image(marked, stored.affine), str(case_dir / "BraTS20_Training_001_border.nii.gz"))
    case = next(c for c in discover("brats", root, "all") if c.case_id == "BraTS20_Training_001")
    loaded = load_case(case, brats_config)
    assert loaded.border.sum() == 1 and loaded.border[12, 13, 13]  # + pad (2, 2, 1)


def test_lits_script_into_an_output_folder(synthetic_lits_root, tmp_path, lits_config):
    output = tmp_path / "borders"
    output.mkdir()
    assert _script("generate_borders_lits").main([str(synthetic_lits_root), "--output", str(output)]) == 0
    assert sorted(p.name for p in output.iterdir()) == [f"border-{n}.nii.gz" for n in range(3)]
    cases = discover("lits", synthetic_lits_root, "all", border_dir=output)
    assert [c.border.name for c in cases] == [f"border-{n}.nii.gz" for n in range(3)]
    assert np.array_equal(load_case(cases[0], lits_config).border,
                          load_case(discover("lits", synthetic_lits_root, "all")[0], lits_config).border)
