"""outputs.py on its own: the model-grid affine, NIfTI writing, staging / publishing, JSON cleaning."""
from __future__ import annotations

import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from oss_net.data.grid import GridMeta
from oss_net.inference import outputs
from oss_net.io import OSSNetError

AFFINE = np.array([[0.0, -1.2, 0.0, 30.0], [0.9, 0.0, 0.0, -12.0], [0.0, 0.0, 2.5, 4.0], [0.0, 0.0, 0.0, 1.0]])


def test_model_grid_affine_folds_the_pad_into_the_affine() -> None:
    meta = GridMeta.for_padding(AFFINE, None, (10, 12, 6), (16, 16, 8))
    assert meta.pad_before == (3, 2, 1)
    shift = np.eye(4)
    shift[:3, 3] = -np.asarray(meta.pad_before)  # model voxel p is input voxel p − pad_before
    np.testing.assert_allclose(outputs.model_grid_affine(meta), AFFINE @ shift, atol=1e-12)


def test_model_grid_affine_of_a_resampled_grid_keeps_the_field_of_view() -> None:
    meta = GridMeta.for_resampling(AFFINE, None, (10, 12, 6), (5, 4, 3))
    matrix = outputs.model_grid_affine(meta)
    points = np.array([[0.0, 0.0, 0.0], [4.0, 3.0, 2.0], [1.5, 2.25, 0.5]])
    np.testing.assert_allclose(points @ matrix[:3, :3].T + matrix[:3, 3], meta.model_voxel_to_mm(points), atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(matrix[:3, :3], axis=0), [1.8, 3.6, 5.0])  # spacing × 2, × 3, × 2
    # the outer faces of the grids coincide: voxel −0.5 and shape − 0.5 map to the same mm
    edges = np.array([[-0.5] * 3, [4.5, 3.5, 2.5]])
    input_edges = np.array([[-0.5] * 3, [9.5, 11.5, 5.5]])
    np.testing.assert_allclose(edges @ matrix[:3, :3].T + matrix[:3, 3], input_edges @ AFFINE[:3, :3].T + AFFINE[:3, 3])


def test_model_grid_nifti_and_flat_mask(tmp_path: Path) -> None:
    header = nib.Nifti1Header()
    header.set_xyzt_units("mm", "sec")
    meta = GridMeta.for_padding(AFFINE, bytes(header.binaryblock), (10, 12, 6), (16, 16, 8))
    grid = np.random.default_rng(0).random(meta.volume_shape).astype(np.float32)
    outputs.save_model_grid_nifti(grid, meta, tmp_path / "occupancy.nii.gz")
    image = nib.load(str(tmp_path / "occupancy.nii.gz"))
    np.testing.assert_allclose(image.affine, outputs.model_grid_affine(meta), atol=1e-5)
    np.testing.assert_array_equal(np.asarray(image.dataobj), grid)
    assert image.header.get_xyzt_units() == ("mm", "sec")

    folder = tmp_path / "case"
    folder.mkdir()
    mask = np.zeros(meta.input_shape, dtype=np.uint8)
    outputs.save_input_grid_nifti(mask, meta, folder / "case_mask.nii.gz")
    flat = outputs.write_flat_mask(tmp_path, "case")
    assert flat == tmp_path / "case.nii.gz" and flat.read_bytes() == (folder / "case_mask.nii.gz").read_bytes()
    np.testing.assert_allclose(nib.load(str(flat)).affine, AFFINE, atol=1e-5)


def test_staging_publish_and_discard(tmp_path: Path) -> None:
    staging = outputs.staging_folder(tmp_path, "a")
    (staging / "left.txt").write_text("from a killed run")
    staging = outputs.staging_folder(tmp_path, "a")
    assert staging.name == ".a.partial" and not list(staging.iterdir())
    assert not outputs.is_finished(tmp_path, "a")
    outputs.save_metrics({"dice": 0.5, "hd95_mm": math.nan}, staging)
    outputs.publish(staging, tmp_path, "a")
    assert outputs.is_finished(tmp_path, "a") and not staging.exists()
    assert (tmp_path / "a" / outputs.METRICS_FILE).read_text().replace(" ", "").count('"hd95_mm":null') == 1

    newer = outputs.staging_folder(tmp_path, "a")
    (newer / outputs.METRICS_FILE).write_text("{}")
    outputs.publish(newer, tmp_path, "a")  # replaces the older result, leaves no retired folder
    assert (tmp_path / "a" / outputs.METRICS_FILE).read_text() == "{}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]
    doomed = outputs.staging_folder(tmp_path, "b")
    outputs.discard(doomed)
    assert not doomed.exists()


def test_json_ready_and_output_folder_checks(tmp_path: Path) -> None:
    assert outputs.json_ready({"a": math.nan, "b": math.inf, "c": 1.5, "d": "x"}) == {"a": None, "b": None, "c": 1.5, "d": "x"}
    outputs.check_output_folder(tmp_path / "new" / "nested")
    assert (tmp_path / "new" / "nested").is_dir()
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OSSNetError, match="output path exists and is not a folder"):
        outputs.check_output_folder(blocker)
