"""Training reads every case before its first write (issue 16): all bad voxel values in one error; the cache filled."""
from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from oss_net.data import DatasetError, discover
from oss_net.training import train


def _edit(path: Path, change, dtype=None) -> None:
    image = nib.load(str(path))
    array = np.asarray(image.dataobj).astype(dtype or image.get_data_dtype())
    change(array)
    nib.save(nib.Nifti1Image(array, image.affine), str(path))


def _first(folder: Path, suffix: str) -> Path:
    return next(folder.glob(f"*{suffix}"))


def test_every_bad_training_and_validation_value_is_listed_before_the_run_folder_exists(
        tiny_settings, synthetic_brats_root, tmp_path):
    root = shutil.copytree(synthetic_brats_root, tmp_path / "data")
    train_case, val_case = discover("brats", root, "train")[0], discover("brats", root, "val")[0]
    flair = _first(train_case.images[0].parent, "_flair.nii.gz")
    _edit(flair, lambda array: array.__setitem__((2, 3, 4), np.nan), np.float32)
    label = val_case.label
    _edit(label, lambda array: array.__setitem__((1, 1, 1), 7))
    settings = tiny_settings(dataset_path=str(root), test=True, max_iterations=1)
    with pytest.raises(DatasetError) as raised:
        train(settings)
    message = str(raised.value)
    assert message.startswith(f"{root}: 2 bad case(s), nothing written (fix or remove them; "
                              f"python -m oss_net.data.check {root} lists every problem): ")
    assert f"{flair}: image contains 1 NaN or Inf voxel(s)" in message
    assert f"{label}: label values [7] outside [0, 1, 2, 4] (brats)" in message
    assert not Path(settings.output_dir).exists()


def test_the_start_up_read_fills_the_cache_for_every_case(tiny_settings, synthetic_brats_root, tmp_path):
    """One iteration reads one training case in the loop and validates none; the scan cached all four."""
    cache = tmp_path / "cache"
    train(tiny_settings(test=True, max_iterations=1, cache_dir=str(cache), border_balance=0.5))
    cases = discover("brats", synthetic_brats_root, "all")
    entries = sorted(p.name.rsplit("-", 1)[0] for p in cache.iterdir() if (p / "meta.json").is_file())
    assert entries == sorted(case.case_id for case in cases)
    training = {case.case_id for case in discover("brats", synthetic_brats_root, "train")}
    with_border = {p.name.rsplit("-", 1)[0] for p in cache.iterdir() if (p / "border.npy").is_file()}
    assert with_border == training  # border sampling in training; validation samples uniformly here
