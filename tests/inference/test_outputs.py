"""outputs.py on its own: the model-grid affine, NIfTI writing, staging / publishing, JSON cleaning."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from oss_net.data.grid import GridMeta
from oss_net.inference import outputs
from oss_net.io import OSSNetError, prepare_output_folder

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
    staging = outputs.staging_folder(tmp_path, "a", "run1")
    (staging / "left.txt").write_text("from a killed run")
    staging = outputs.staging_folder(tmp_path, "a", "run1")
    assert staging.name == ".a.run1.partial" and not list(staging.iterdir())
    other = outputs.staging_folder(tmp_path, "a", "run2")  # another run's staging folder is its own
    assert other != staging and staging.is_dir()
    outputs.discard(other)
    assert not outputs.is_finished(tmp_path, "a", "hash")
    outputs.save_metrics({"dice": 0.5, "hd95_mm": math.nan}, staging)
    outputs.write_manifest(staging, "run1", "hash")
    outputs.publish(staging, tmp_path, "a")
    assert outputs.is_finished(tmp_path, "a", "hash") and not staging.exists()
    assert (tmp_path / "a" / outputs.METRICS_FILE).read_text().replace(" ", "").count('"hd95_mm":null') == 1

    newer = outputs.staging_folder(tmp_path, "a", "run3")
    (newer / outputs.METRICS_FILE).write_text("{}")
    outputs.publish(newer, tmp_path, "a")  # replaces the older result, leaves no retired folder
    assert (tmp_path / "a" / outputs.METRICS_FILE).read_text() == "{}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]
    assert outputs.unfinished_reason(tmp_path, "a", "hash") == "no manifest (written by an older or unfinished run)"
    doomed = outputs.staging_folder(tmp_path, "b", "run3")
    outputs.discard(doomed)
    assert not doomed.exists()


def test_manifest_ties_a_case_to_its_settings_and_files(tmp_path: Path) -> None:
    staging = outputs.staging_folder(tmp_path, "a", "run1")
    outputs.save_metrics({"dice": 0.5}, staging)
    (staging / "a_mask.nii.gz").write_bytes(b"mask of run1")
    outputs.write_manifest(staging, "run1", "hash1")
    outputs.publish(staging, tmp_path, "a")
    manifest = json.loads((tmp_path / "a" / outputs.MANIFEST_FILE).read_text())
    assert manifest["run_id"] == "run1" and sorted(manifest["files"]) == ["a_mask.nii.gz", outputs.METRICS_FILE]
    assert outputs.unfinished_reason(tmp_path, "a", "hash1") is None
    assert outputs.unfinished_reason(tmp_path, "a", "hash2") == "written with other settings or another checkpoint"
    (tmp_path / "a" / "a_mask.nii.gz").write_bytes(b"mask of run2")  # same size, other bytes: a file of another run
    assert outputs.unfinished_reason(tmp_path, "a", "hash1") == "a_mask.nii.gz differs from its manifest"
    (tmp_path / "a" / "a_mask.nii.gz").write_bytes(b"mask of run1")
    (tmp_path / "a" / "a_probability.nii.gz").write_bytes(b"stray")
    assert outputs.unfinished_reason(tmp_path, "a", "hash1") == "its files differ from its manifest's list"
    assert outputs.unfinished_reason(tmp_path, "b", "hash1") == "no finished output"


def test_leftovers_of_dead_runs_are_removed_under_the_lock(tmp_path: Path) -> None:
    dead = outputs.staging_folder(tmp_path, "a", "4242-deadbeef")
    (dead / "a_mask.nii.gz").write_bytes(b"half")
    retired = tmp_path / ".a.old-1234abcd"
    retired.mkdir()
    (tmp_path / "a").mkdir()
    (tmp_path / ".hidden_file.partial").write_text("a file, not a staging folder")
    temporary = tmp_path / ".summary.json.x1y2z3.tmp"  # an atomic write cut short
    temporary.write_text("{")
    with outputs.output_folder_lock(tmp_path) as run_id:
        assert run_id.startswith(f"{os.getpid()}-")
        assert sorted(outputs.remove_leftovers(tmp_path)) == sorted([dead, retired, temporary])
        assert sorted(p.name for p in tmp_path.iterdir()) == [".hidden_file.partial", outputs.LOCK_FILE, "a"]
        assert (tmp_path / outputs.LOCK_FILE).read_text() == f"{os.getpid()}\n"
    assert not (tmp_path / outputs.LOCK_FILE).exists()  # removed on release


def test_a_held_output_folder_is_refused_naming_the_holder(tmp_path: Path) -> None:
    with outputs.output_folder_lock(tmp_path) as first:
        with pytest.raises(outputs.OutputFolderBusy, match=rf"{tmp_path}: output folder is in use by another inference "
                                                            rf"run \(pid {os.getpid()}\).*--wait"):
            with outputs.output_folder_lock(tmp_path):
                pass
        assert (tmp_path / outputs.LOCK_FILE).read_text() == f"{os.getpid()}\n"  # the holder's file is untouched
    with outputs.output_folder_lock(tmp_path) as second:  # free again once released
        assert second != first


def test_json_ready_and_output_folder_checks(tmp_path: Path) -> None:
    assert outputs.json_ready({"a": math.nan, "b": math.inf, "c": 1.5, "d": "x"}) == {"a": None, "b": None, "c": 1.5, "d": "x"}
    prepare_output_folder(tmp_path / "new" / "nested")  # what the runner calls before writing
    assert (tmp_path / "new" / "nested").is_dir()
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OSSNetError, match="output folder is not a folder, it is a file"):
        prepare_output_folder(blocker)
