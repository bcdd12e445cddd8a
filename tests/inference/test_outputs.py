"""outputs.py (staging / publishing, JSON cleaning) and the writer's grid helpers on their own: the model-grid
affine, NIfTI writing, and the masks and label maps taken back to the input grid."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest

from oss_net.data.grid import GridMeta
from oss_net.inference import outputs, writers
from oss_net.io import OUTPUT_MANIFEST, OSSNetError, prepare_output_folder
from oss_net.labels import BRATS_REGIONS, LabelScheme
from oss_net.metrics import dice

AFFINE = np.array([[0.0, -1.2, 0.0, 30.0], [0.9, 0.0, 0.0, -12.0], [0.0, 0.0, 2.5, 4.0], [0.0, 0.0, 0.0, 1.0]])


def test_model_grid_affine_folds_the_pad_into_the_affine() -> None:
    meta = GridMeta.for_padding(AFFINE, None, (10, 12, 6), (16, 16, 8))
    assert meta.pad_before == (3, 2, 1)
    shift = np.eye(4)
    shift[:3, 3] = -np.asarray(meta.pad_before)  # model voxel p is input voxel p − pad_before
    np.testing.assert_allclose(writers.model_grid_affine(meta), AFFINE @ shift, atol=1e-12)


def test_model_grid_affine_of_a_resampled_grid_keeps_the_field_of_view() -> None:
    meta = GridMeta.for_resampling(AFFINE, None, (10, 12, 6), (5, 4, 3))
    matrix = writers.model_grid_affine(meta)
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
    writers.save_model_grid_image(grid, meta, tmp_path / "occupancy.nii.gz")
    image = nib.load(str(tmp_path / "occupancy.nii.gz"))
    np.testing.assert_allclose(image.affine, writers.model_grid_affine(meta), atol=1e-5)
    np.testing.assert_array_equal(np.asarray(image.dataobj), grid)
    assert image.header.get_xyzt_units() == ("mm", "sec")

    folder = tmp_path / "case"
    folder.mkdir()
    mask = np.zeros(meta.input_shape, dtype=np.uint8)
    writers.save_input_grid_image(mask, meta, folder / "case_mask.nii.gz")
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
    assert sorted(p.name for p in tmp_path.iterdir()) == [OUTPUT_MANIFEST, "a"]  # "a" recorded as this package's
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


# ---------------------------------------------------------------- masks and label maps on the input grid

REGIONS = SimpleNamespace(label_mode="regions", class_labels=BRATS_REGIONS)  # WT ⊃ TC ⊃ ET, written 2 / 1 / 4
EXCLUSIVE = SimpleNamespace(label_mode="exclusive", class_labels=(("a", (1,)), ("b", (2,)), ("c", (3,))))
# a scan of 0.75 × 0.75 × 3 mm, axes swapped and one flipped on the way, on a 3 mm model grid: 4× coarser in-plane
SCAN_AFFINE = np.array([[0.0, -0.75, 0.0, 30.0], [0.75, 0.0, 0.0, -12.0], [0.0, 0.0, 3.0, 4.0], [0.0, 0.0, 0.0, 1.0]])
BALL_RADII_MM = (14.2, 9.1, 5.3)


def resampled_meta() -> GridMeta:
    return GridMeta.for_resampling(SCAN_AFFINE, None, (64, 64, 16), (16, 16, 16), orientation=((1, 1), (0, -1), (2, 1)))


def voxel_centres_mm(meta: GridMeta, model_grid: bool) -> np.ndarray:
    """[*shape, 3] scanner mm of every voxel centre of the model grid or the input grid."""
    shape = meta.volume_shape if model_grid else meta.input_shape
    index = np.indices(shape, dtype=np.float64).reshape(3, -1).T  # [N, 3]
    millimetres = meta.model_voxel_to_mm(index) if model_grid else index @ meta.affine[:3, :3].T + meta.affine[:3, 3]
    return millimetres.reshape(*shape, 3)


def ball_distances(meta: GridMeta, model_grid: bool) -> np.ndarray:
    """[*shape] mm from each voxel centre to a point near the middle of the field of view."""
    centres = voxel_centres_mm(meta, model_grid)
    middle = voxel_centres_mm(meta, False).reshape(-1, 3).mean(axis=0) + np.array([1.3, -2.1, 0.6])
    return np.linalg.norm(centres - middle, axis=-1)


def soft_balls(meta: GridMeta) -> np.ndarray:
    """[3, *volume_shape] float32 nested balls of BALL_RADII_MM as a model would give them: 1/2 on each sphere,
    rising over about a millimetre."""
    distance = ball_distances(meta, model_grid=True)
    return np.stack([1.0 / (1.0 + np.exp(distance - radius)) for radius in BALL_RADII_MM]).astype(np.float32)


def nearest_neighbour_labels(occupancy: np.ndarray, meta: GridMeta, config=None) -> np.ndarray:
    """The former path: labelled on the model grid, then taken back by nearest neighbour."""
    return np.asarray(meta.to_input_grid(writers.label_map(occupancy, 0.5, config), order=0), dtype=np.uint8)


@pytest.mark.parametrize("outputs_count, config", [(0, None), (3, None), (3, REGIONS), (4, EXCLUSIVE)])
def test_padded_grid_labels_are_the_model_grid_labels_un_padded(outputs_count, config) -> None:
    """Padding (and an empty-background crop) is undone exactly, as before: bit for bit the nearest-neighbour path."""
    meta = GridMeta.for_padding(AFFINE, None, (20, 12, 6), (16, 16, 8), content=((3, 15), (0, 11), (0, 5)))
    assert meta.mode == "pad" and meta.pad_before[0] < 0 < meta.pad_before[1]  # axis 0 cropped, axis 1 padded
    shape = (outputs_count, *meta.volume_shape) if outputs_count else meta.volume_shape
    occupancy = np.random.default_rng(outputs_count).random(shape).astype(np.float32)
    labels = writers.input_grid_labels(occupancy, meta, 0.5, config)
    assert labels.dtype == np.uint8 and labels.shape == meta.input_shape
    assert np.array_equal(labels, nearest_neighbour_labels(occupancy, meta, config))
    outside = np.ones(meta.input_shape, dtype=bool)
    outside[meta.input_window] = False
    assert outside.any() and not labels[outside].any()  # the cropped background comes back empty


def test_resampled_probabilities_follow_the_ball_better_than_nearest_neighbour() -> None:
    """A 3 mm model grid on a 0.75 mm scan: thresholding the trilinearly resampled probabilities recovers the
    analytic ball on the scan's grid (801 → 139 wrong voxels of 7093 inside, Dice 0.944 → 0.990)."""
    meta = resampled_meta()
    occupancy = soft_balls(meta)[0]  # [16, 16, 16]
    truth = ball_distances(meta, model_grid=False) < BALL_RADII_MM[0]  # [64, 64, 16]
    mask = writers.input_grid_labels(occupancy, meta, 0.5)
    nearest = nearest_neighbour_labels(occupancy, meta)
    assert mask.dtype == np.uint8 and mask.shape == meta.input_shape == truth.shape and set(np.unique(mask)) == {0, 1}
    resampled = np.asarray(meta.to_input_grid(occupancy, order=1))  # what --save_probabilities writes
    assert np.array_equal(mask > 0, resampled > 0.5)
    # given those probabilities, the labels are theirs (a sentinel shows they are used, not resampled again)
    assert np.array_equal(writers.input_grid_labels(occupancy, meta, 0.5, input_probabilities=resampled), mask)
    assert not writers.input_grid_labels(occupancy, meta, 0.5, input_probabilities=np.zeros_like(resampled)).any()
    assert int(truth.sum()) == 7093
    assert int((nearest.astype(bool) != truth).sum()) == pytest.approx(801, abs=8)
    assert int((mask.astype(bool) != truth).sum()) == pytest.approx(139, abs=8)
    assert dice(nearest, truth) == pytest.approx(0.9435, abs=2e-3) and dice(mask, truth) == pytest.approx(0.9901, abs=2e-3)


@pytest.mark.parametrize("config", [REGIONS, EXCLUSIVE], ids=["regions", "exclusive"])
def test_resampled_classes_and_regions_keep_their_label_values(config) -> None:
    """Nested regions and exclusive shells come back with the dataset's values only, each class closer to the
    analytic balls than by nearest neighbour (e.g. ET 107 → 44 wrong voxels, Dice 0.855 → 0.937); regions stay
    nested (each region's mask is its own resampled probability above the threshold)."""
    meta = resampled_meta()
    scheme = LabelScheme(config.label_mode, config.class_labels)
    balls = soft_balls(meta)  # [3, *volume_shape], WT ⊃ TC ⊃ ET
    inside = [ball_distances(meta, model_grid=False) < radius for radius in BALL_RADII_MM]
    truth = np.zeros(meta.input_shape, dtype=np.uint8)
    if config is REGIONS:
        occupancy = balls
        for region, value in zip(inside, (2, 1, 4)):
            truth[region] = value
    else:  # background, then shells of classes 1, 2 and the core 3 (a softmax's outputs sum to 1)
        occupancy = np.concatenate([1.0 - balls[:1], balls[:-1] - balls[1:], balls[-1:]])
        truth = np.sum(inside, axis=0).astype(np.uint8)
    labels = writers.input_grid_labels(occupancy, meta, 0.5, config)
    assert labels.dtype == np.uint8 and labels.shape == meta.input_shape
    assert set(np.unique(labels)) == set(np.unique(truth)) <= scheme.label_values
    nearest = nearest_neighbour_labels(occupancy, meta, config)
    assert (labels != truth).sum() < 0.3 * (nearest != truth).sum()
    masks = scheme.label_map_masks(labels)  # [3, *input_shape]
    if config is REGIONS:
        resampled = np.asarray(meta.to_input_grid(balls, order=1)) > 0.5
        assert np.array_equal(masks, resampled) and (masks[1] <= masks[0]).all() and (masks[2] <= masks[1]).all()
    for mask, before, true in zip(masks, scheme.label_map_masks(nearest), scheme.label_map_masks(truth)):
        assert (mask != true).sum() < 0.5 * (before != true).sum() and dice(mask, true) > dice(before, true) + 0.04
