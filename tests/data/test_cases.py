"""load_case: preprocessing, the affine kept, and the memory-mapped cache (reuse, staleness, corruption)."""
from __future__ import annotations

import dataclasses
import os
import shutil

import nibabel as nib
import numpy as np
import pytest

from oss_net.data import discover, load_case
from oss_net.data.borders import compute_border


def test_brats_case_is_zscored_padded_and_keeps_its_affine(synthetic_brats_root, brats_config):
    files = discover("brats", synthetic_brats_root, "all")[1]
    case = load_case(files, brats_config)
    assert case.image.shape == (4, 64, 64, 40) and case.image.dtype == np.float32
    assert case.meta.pad_before == (2, 2, 1) and case.meta.pad_after == (2, 2, 1)
    inner = case.meta.to_input_grid(case.image)  # [4, 60, 60, 38]
    assert np.allclose(inner.mean(axis=(1, 2, 3)), 0, atol=1e-5) and np.allclose(inner.std(axis=(1, 2, 3)), 1, atol=1e-4)
    source = nib.load(str(files.images[0]))
    assert np.allclose(case.meta.affine, source.affine) and case.meta.header == source.header.binaryblock
    raw = np.asarray(nib.load(str(files.label)).dataobj)
    assert np.array_equal(case.meta.to_input_grid(case.raw_label), raw)
    assert np.array_equal(case.label, (case.raw_label > 0).astype(np.uint8))
    assert np.array_equal(case.meta.to_input_grid(case.border), compute_border(raw))
    # A voxel's mm position is the same whether read from the model grid or the file.
    assert np.allclose(case.meta.model_voxel_to_mm(np.array([[2.0, 3.0, 4.0]])),
                       nib.affines.apply_affine(source.affine, [[0, 1, 3]]))


def test_lits_case_is_resampled_to_the_cube(synthetic_lits_root, lits_config):
    case = load_case(discover("lits", synthetic_lits_root, "all")[0], lits_config)
    assert case.image.shape == (1, 32, 32, 32) and case.raw_label.shape == (32, 32, 32)
    assert case.meta.mode == "resample" and case.meta.input_shape == (40, 40, 24)
    assert set(np.unique(case.raw_label)) == {0, 1, 2}
    assert case.meta.to_input_grid(case.raw_label, order=0).shape == (40, 40, 24)


def test_cache_is_reused_memory_mapped_and_equal(synthetic_brats_root, tmp_path, brats_config):
    files = discover("brats", synthetic_brats_root, "all")[0]
    direct = load_case(files, brats_config)
    first = load_case(files, brats_config, cache_dir=tmp_path)
    (entry,) = list(tmp_path.iterdir())
    assert sorted(p.name for p in entry.iterdir()) == ["border.npy", "image.npy", "meta.json", "raw_label.npy"]
    second = load_case(files, brats_config, cache_dir=tmp_path)
    assert isinstance(second.image, np.memmap) and isinstance(first.image, np.memmap)
    assert np.array_equal(second.image, direct.image) and np.array_equal(second.border, direct.border)
    assert np.array_equal(second.raw_label, direct.raw_label) and second.meta == direct.meta
    assert np.allclose(second.meta.affine, direct.meta.affine)


def test_stale_and_corrupt_entries_are_rebuilt(synthetic_brats_root, tmp_path, brats_config):
    root = tmp_path / "root"
    shutil.copytree(synthetic_brats_root, root)
    files = discover("brats", root, "all")[0]
    cache = tmp_path / "cache"
    reference = np.array(load_case(files, brats_config, cache_dir=cache).image)
    (entry,) = list(cache.iterdir())
    with open(entry / "image.npy", "r+b") as handle:  # a truncated array file
        handle.truncate(1000)
    assert np.array_equal(load_case(files, brats_config, cache_dir=cache).image, reference)
    assert (entry / "image.npy").stat().st_size > 1000
    # A source file changed (new mtime): a new entry under a new key.
    stat = files.images[0].stat()
    os.utime(files.images[0], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    load_case(files, brats_config, cache_dir=cache)
    assert len(list(cache.iterdir())) == 2


def test_zscore_statistics_come_from_the_window_that_reaches_the_model_grid():
    """A scan whose empty background was cropped is z-scored over the kept window only, as if it had fitted."""
    from oss_net.data.cases import zscore

    array = np.zeros((6, 2, 2))
    array[2:4] = [[[1.0, 3.0], [1.0, 3.0]]]  # window values 1 and 3: mean 2, std 1
    window = (slice(2, 4), slice(None), slice(None))
    out = zscore(array, window)
    assert np.allclose(out[window], [[[-1.0, 1.0], [-1.0, 1.0]]] * 2, atol=1e-5)
    assert np.allclose(out[0], -2.0, atol=1e-5)  # values outside keep the same affine map
    assert np.isclose(zscore(array).mean(), 0.0, atol=1e-6)  # no window: the whole volume, as the paper


def test_zscore_in_chunks_equals_the_float64_formula_bit_for_bit():
    from oss_net.data.cases import ZSCORE_CHUNK, zscore

    array = np.random.default_rng(0).gamma(2.0, 300.0, size=(90, 86, 71)).astype(np.float32)
    assert array.size > 2 * ZSCORE_CHUNK
    window = (slice(3, 80), slice(None), slice(5, 61))
    for region in (None, window):
        values = array.astype(np.float64)
        stats = values if region is None else values[region]
        expected = ((values - stats.mean()) / (stats.std() + 1e-6)).astype(np.float32)
        np.testing.assert_array_equal(zscore(array, region), expected)


def test_channels_read_in_parallel_keep_their_order_and_the_first_bad_file_is_named(synthetic_brats_root, tmp_path):
    from oss_net.data import DatasetError
    from oss_net.data.channels import read_channels

    case = discover("brats", synthetic_brats_root, "all")[0]
    volumes = read_channels(case)
    assert [volume.path for volume in volumes] == list(case.images)
    for volume, path in zip(volumes, case.images):
        np.testing.assert_array_equal(volume.array, np.asarray(nib.load(str(path)).dataobj, dtype=np.float32))
    copies = []
    for path in case.images:
        copies.append(tmp_path / path.name)
        shutil.copyfile(path, copies[-1])
    for bad in copies[1:]:  # every channel but the first is cut short
        bad.write_bytes(bad.read_bytes()[:200])
    with pytest.raises(DatasetError, match=f"{copies[1]}: truncated or corrupt voxel data"):
        read_channels(dataclasses.replace(case, images=tuple(copies)))


def test_zscore_keeps_a_fortran_ordered_volume_in_place():
    from oss_net.data.cases import zscore

    array = np.asfortranarray(np.arange(24, dtype=np.float32).reshape(2, 3, 4))
    out = zscore(array)
    np.testing.assert_array_equal(out, zscore(np.ascontiguousarray(array)))
    assert out.flags.f_contiguous and np.isclose(out[1, 2, 3], (23 - 11.5) / (np.std(np.arange(24)) + 1e-6))
