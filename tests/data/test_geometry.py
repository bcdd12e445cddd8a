"""Any scan geometry (issue 12): orientation, resampling instead of cropping, exact inverses, the fingerprint."""
from __future__ import annotations

import itertools
import logging
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from nibabel.orientations import apply_orientation

from oss_net.data import discover, load_case
from oss_net.data.dataset_info import CT, MRI
from oss_net.data.fingerprint import compute_fingerprint, normalize_intensities
from oss_net.data.grid import IDENTITY_ORIENTATION, GridMeta, closest_canonical, inverse_orientation, reorient
from oss_net.data.layouts import dataset_info
from oss_net.data.synthetic_layouts import write_flare_dataset, write_msd_dataset, write_nnunet_dataset
from oss_net.datasets import ChannelIntensity, DatasetError, Fingerprint, model_grid_shape
from oss_net.models import ConfigError, OSSNetConfig, demo_config, get_config, network_config


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a) > 0, np.asarray(b) > 0
    return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


def rotation(axis: int, degrees: float) -> np.ndarray:
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    i, j = [k for k in range(3) if k != axis]
    matrix = np.eye(3)
    matrix[i, i], matrix[i, j], matrix[j, i], matrix[j, j] = c, -s, s, c
    return matrix


def affine_of(columns: np.ndarray, origin=(3.0, -7.0, 11.0)) -> np.ndarray:
    affine = np.eye(4)
    affine[:3, :3], affine[:3, 3] = columns, origin
    return affine


def world_ellipsoid(shape, affine, centre, radii) -> np.ndarray:
    """uint8 mask of the voxels whose centres (in mm) lie inside an axis-aligned ellipsoid."""
    index = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1).astype(np.float64)
    world = index @ affine[:3, :3].T + affine[:3, 3]
    return (((world - centre) / radii) ** 2).sum(-1).__le__(1.0).astype(np.uint8)


# Every permutation of the axes with every flip: the 48 axis-aligned orientations.
ORIENTATIONS = [tuple(zip(perm, flips)) for perm in itertools.permutations(range(3))
                for flips in itertools.product((1, -1), repeat=3)]


@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_reorient_is_nibabels_apply_orientation_and_inverts_exactly(orientation):
    array = np.random.default_rng(0).normal(size=(2, 4, 5, 6))
    expected = np.stack([apply_orientation(channel, np.asarray(orientation)) for channel in array])
    assert np.array_equal(reorient(array, orientation), expected)
    assert torch.equal(reorient(torch.from_numpy(array), orientation), torch.from_numpy(expected))
    assert np.array_equal(reorient(expected, inverse_orientation(orientation)), array)


def test_closest_canonical_brings_an_oblique_flipped_scan_to_ras():
    """After reorientation the model axes point (nearly) along +x, +y, +z, and the round trip is exact."""
    columns = rotation(2, 20) @ np.eye(3)[:, [2, 0, 1]] @ np.diag([-0.8, 1.1, 3.0])
    affine = affine_of(columns)
    orientation = closest_canonical(affine)
    assert orientation != IDENTITY_ORIENTATION
    shape = (7, 9, 5)
    oriented_shape = GridMeta.for_resampling(affine, None, shape, shape, orientation=orientation).oriented_shape
    assert oriented_shape == (9, 5, 7)  # input axis 1 runs along x, axis 2 along y, axis 0 along z
    meta = GridMeta.for_resampling(affine, None, shape, oriented_shape, orientation=orientation)  # no interpolation
    steps = meta.model_voxel_to_mm(np.eye(3)) - meta.model_voxel_to_mm(np.zeros((1, 3)))  # [3 model axes, xyz]
    assert np.array_equal(np.abs(steps).argmax(axis=1), [0, 1, 2]) and np.all(np.diag(steps) > 0)
    values = np.arange(np.prod(shape), dtype=np.int32).reshape(shape)
    model = meta.to_model_grid(values, order=0)
    assert np.array_equal(meta.to_input_grid(model, order=0), values)
    # A model voxel's value is the input voxel's that model_to_input_voxel names, and its mm are that voxel's.
    points = np.array([[0, 0, 0], [1, 2, 3], [8, 4, 6]], dtype=np.float64)
    inputs = meta.model_to_input_voxel(points)
    assert np.allclose(inputs, np.round(inputs))
    for point, voxel in zip(points.astype(int), np.round(inputs).astype(int)):
        assert model[tuple(point)] == values[tuple(voxel)]
    assert np.allclose(meta.model_voxel_to_mm(points), inputs @ affine[:3, :3].T + affine[:3, 3])
    assert torch.allclose(meta.model_voxel_to_mm(torch.tensor(points)), torch.tensor(meta.model_voxel_to_mm(points)))


def test_grid_dicts_round_trip_and_old_dicts_load_as_identity():
    affine = affine_of(np.diag([-1.0, 1.0, 2.0]))
    meta = GridMeta.for_resampling(affine, b"\x01\x02", (6, 7, 8), (8, 8, 8), orientation=closest_canonical(affine))
    assert GridMeta.from_dict(meta.to_dict()) == meta and meta.orientation == ((0, -1), (1, 1), (2, 1))
    old = {key: value for key, value in meta.to_dict().items() if key not in ("orientation", "resampled_to_fit")}
    loaded = GridMeta.from_dict(old)
    assert loaded.orientation == IDENTITY_ORIENTATION and not loaded.resampled_to_fit


# (input shape, affine columns, model grid, orientation from the affine)
ROUND_TRIPS = {
    "oblique": ((40, 36, 30), rotation(0, 25) @ rotation(2, 15) @ np.diag([-1.2, 1.0, 1.5]), (48, 48, 48)),
    "anisotropic": ((64, 60, 12), np.diag([0.8, 0.8, 5.0]), (64, 64, 64)),
    "larger_than_grid": ((100, 60, 38), np.diag([1.0, 1.0, 1.0]), (64, 64, 40)),
}


@pytest.mark.parametrize("name", sorted(ROUND_TRIPS))
def test_a_label_pushed_to_the_model_grid_and_back_keeps_dice_099(name):
    shape, columns, grid = ROUND_TRIPS[name]
    affine = affine_of(columns)
    centre = np.asarray(shape) / 2.0 @ columns.T + affine[:3, 3]
    label = world_ellipsoid(shape, affine, centre, radii=np.asarray([14.0, 12.0, 20.0]))
    assert label.sum() > 1000
    if name == "larger_than_grid":
        meta = GridMeta.for_padding(affine, None, shape, grid, source=name)
        assert meta.resampled_to_fit
    else:
        meta = GridMeta.for_resampling(affine, None, shape, grid, orientation=closest_canonical(affine))
    # As a prediction travels: an occupancy on the model grid, resampled back and thresholded on the input grid.
    occupancy = meta.to_model_grid(label.astype(np.float32), order=1)
    assert occupancy.shape == grid
    assert dice(meta.to_input_grid(occupancy, order=1) > 0.5, label) >= 0.99
    # As a label mask travels (nearest both ways); downsampling 100 → 64 voxels drops every third slice or so.
    nearest = meta.to_input_grid(meta.to_model_grid(label, order=0), order=0)
    assert dice(nearest, label) >= (0.98 if meta.resampled_to_fit else 0.99)


def pad_brats_case(case_dir: Path, out_dir: Path, before: int, size: int) -> Path:
    """Copy a BraTS case zero-padded on axis 0 to `size` voxels, `before` of them in front; world position kept."""
    out_dir.mkdir(parents=True)
    for path in sorted(case_dir.glob("*.nii.gz")):
        image = nib.load(str(path))
        data = np.asarray(image.dataobj)
        padded = np.zeros((size, *data.shape[1:]), dtype=data.dtype)
        padded[before:before + data.shape[0]] = data
        affine = image.affine.copy()
        affine[:3, 3] = image.affine[:3, :3] @ np.array([-before, 0, 0]) + image.affine[:3, 3]
        nib.save(nib.Nifti1Image(padded, affine), str(out_dir / path.name))
    return out_dir


def test_a_padded_brats_case_keeps_its_whole_mask(synthetic_brats_root, brats_config, tmp_path, caplog):
    """Issue 12's repro: a demo case zero-padded to 100×60×38 lost its mask beyond x-index 81 to a crop."""
    def far_end(files) -> int:  # the largest x-index of the tumour
        return int(np.flatnonzero(np.asarray(nib.load(str(files.label)).dataobj).any(axis=(1, 2))).max())

    files = max(discover("brats", synthetic_brats_root, "all"), key=far_end)
    padded = pad_brats_case(files.images[0].parent, tmp_path / files.case_id, before=40, size=100)
    case_files = discover("brats", tmp_path, "all")[0]
    with caplog.at_level(logging.WARNING, logger="oss_net.data.grid"):
        case = load_case(case_files, brats_config, with_border=False)
    assert files.case_id in caplog.text and "(100, 60, 38)" in caplog.text
    # Only the zero padding is cropped: the window holds every non-zero voxel, so the round trip is exact.
    assert case.meta.cropped_background and not case.meta.resampled_to_fit and case.meta.mode == "pad"
    assert case.image.shape[1:] == brats_config.volume_shape
    original = np.asarray(nib.load(str(case_files.label)).dataobj)
    assert original[82:].any()  # the part the old centred crop cut away
    assert np.array_equal(case.meta.to_input_grid(case.raw_label, order=0), original)
    window = case.meta.to_input_grid(np.ones(brats_config.volume_shape, dtype=np.uint8))
    for path in padded.glob("*.nii.gz"):  # nothing but zeros lies outside the window, in any file
        assert not np.any(np.asarray(nib.load(str(path)).dataobj)[window == 0])


def test_a_fitting_brats_case_is_still_padded_exactly(synthetic_brats_root, brats_config):
    case = load_case(discover("brats", synthetic_brats_root, "all")[0], brats_config, with_border=False)
    assert case.meta.mode == "pad" and case.meta.pad_before == (2, 2, 1) and not case.meta.resampled_to_fit


# ------------------------------------------------------------------------------------------ fingerprint

SHAPES = {"nnunet": (32, 28, 20), "msd": (28, 28, 20), "flare": (32, 32, 16)}


@pytest.fixture(scope="module")
def layout_roots(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("layouts")
    return {
        "nnunet": write_nnunet_dataset(base / "nnunet", 5, SHAPES["nnunet"], seed=1),
        "msd": write_msd_dataset(base / "msd", 5, SHAPES["msd"], seed=2),
        "flare": write_flare_dataset(base / "flare", 5, SHAPES["flare"], seed=3),
    }


def test_fingerprint_median_geometry_and_ct_statistics(layout_roots):
    root = layout_roots["flare"]
    info = dataset_info("flare", root)
    cases = discover("flare", root, "all")
    fingerprint = compute_fingerprint(cases, info, samples_per_case=10**9)  # every foreground voxel
    assert fingerprint.modalities == (CT,) and fingerprint.label_values == (0, 1, 2, 3, 4)
    assert fingerprint.cases == len(cases)
    values, spacings = [], []
    for case in cases:
        image, label = nib.load(str(case.images[0])), nib.load(str(case.label))
        values.append(np.asarray(image.dataobj, dtype=np.float64)[np.asarray(label.dataobj) > 0])
        spacings.append(sorted(np.linalg.norm(image.affine[:3, :3], axis=0)))
    values = np.concatenate(values)
    stats = fingerprint.intensities[0]
    assert np.allclose([stats.lower, stats.upper], np.percentile(values, [0.5, 99.5]))
    assert np.isclose(stats.mean, values.mean()) and np.isclose(stats.std, values.std())
    assert np.allclose(sorted(fingerprint.spacing), np.median(spacings, axis=0), rtol=1e-6)
    assert sorted(fingerprint.shape) == sorted(SHAPES["flare"])
    assert Fingerprint.from_dict(fingerprint.to_dict()) == fingerprint
    sampled = compute_fingerprint(cases, info, samples_per_case=50)
    assert sampled == compute_fingerprint(cases, info, samples_per_case=50)  # deterministic


def test_fingerprint_of_mri_reads_no_voxels_and_has_no_intensity_statistics(layout_roots, monkeypatch):
    import oss_net.data.fingerprint as module

    monkeypatch.setattr(module, "read_channels", lambda case: pytest.fail("MRI voxels were read"))
    info = dataset_info("msd", layout_roots["msd"])
    fingerprint = compute_fingerprint(discover("msd", layout_roots["msd"], "all"), info)
    assert fingerprint.modalities == (MRI, MRI) and fingerprint.intensities == (None, None)


def test_model_grid_shape_from_the_fingerprint():
    fingerprint = Fingerprint(("CT",), (CT,), (1.0, 1.0, 3.0), (100, 80, 30), (None,), (0, 1), 3)
    assert model_grid_shape(fingerprint, 16) == (112, 80, 32)
    assert model_grid_shape(fingerprint, 16, target_spacing=(1.0, 1.0, 1.5)) == (112, 80, 64)
    assert model_grid_shape(fingerprint, 16, largest=64) == (64, 64, 32)  # 64 × 51.2 × 57.6 → multiples of 16


def test_ct_is_clipped_and_zscored_with_the_fingerprint_and_mri_over_nonzero_voxels():
    stats = ChannelIntensity(lower=-100.0, upper=200.0, mean=50.0, std=25.0)
    fingerprint = Fingerprint(("CT", "T1"), (CT, MRI), (1.0, 1.0, 1.0), (2, 2, 2), (stats, None), (0, 1), 1)
    ct = np.array([-1000.0, -100.0, 50.0, 75.0, 200.0, 3000.0, 0.0, 100.0]).reshape(2, 2, 2)
    mri = np.array([0.0, 0.0, 2.0, 4.0, 6.0, 0.0, 8.0, 10.0]).reshape(2, 2, 2)
    out = normalize_intensities(np.stack([ct, mri]), fingerprint)
    assert out.dtype == np.float32
    assert np.allclose(out[0].ravel(), [-6.0, -6.0, 0.0, 1.0, 6.0, 6.0, -2.0, 2.0], atol=1e-6)
    nonzero = mri != 0
    assert np.all(out[1][~nonzero] == 0.0)
    assert np.isclose(out[1][nonzero].mean(), 0.0, atol=1e-6) and np.isclose(out[1][nonzero].std(), 1.0, atol=1e-6)
    with pytest.raises(DatasetError, match="1 channel"):
        normalize_intensities(ct[None], fingerprint)


# ----------------------------------------------------------------------------------------------- config

def fingerprint_of(root: Path, dataset: str) -> Fingerprint:
    return compute_fingerprint(discover(dataset, root, "train"), dataset_info(dataset, root))


def test_config_for_a_new_dataset_comes_from_its_fingerprint(layout_roots):
    fingerprint = fingerprint_of(layout_roots["nnunet"], "nnunet")
    config = network_config("C", "nnunet", fingerprint=fingerprint)
    assert config.name == "full" and config.in_channels == 3 and config.fingerprint == fingerprint
    assert config.encoder_channels == ((3, 16), (16, 32), (32, 64), (64, 128))
    assert config.volume_shape == model_grid_shape(fingerprint, 32)
    demo = network_config("C", "nnunet", demo=True, fingerprint=fingerprint)
    assert max(demo.volume_shape) == 64 and all(s % 16 == 0 for s in demo.volume_shape)
    assert network_config("C", "nnunet", fingerprint=fingerprint, volume_shape=(32, 32, 32)).volume_shape == (32, 32, 32)
    assert OSSNetConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="fingerprint"):
        network_config("C", "nnunet")
    with pytest.raises(ConfigError, match="in_channels and volume_shape"):
        get_config("C", "flare")


def test_paper_configs_are_unchanged_and_old_config_dicts_load():
    from oss_net.models import build_model

    config = demo_config("C", "brats")
    old = {key: value for key, value in config.to_dict().items() if key != "fingerprint"}
    assert OSSNetConfig.from_dict(old) == config and config.fingerprint is None
    parameters = sum(p.numel() for p in build_model(config).parameters())
    with_fingerprint = sum(p.numel() for p in build_model(OSSNetConfig.from_dict(config.to_dict())).parameters())
    assert parameters == with_fingerprint


@pytest.mark.parametrize("dataset", sorted(SHAPES))
def test_new_layout_case_loads_and_maps_back_exactly(layout_roots, dataset):
    root = layout_roots[dataset]
    config = network_config("C", dataset, demo=True, fingerprint=fingerprint_of(root, dataset))
    files = discover(dataset, root, "all")[0]
    case = load_case(files, config, with_border=True)
    assert case.image.shape == (config.in_channels, *config.volume_shape) and case.image.dtype == np.float32
    assert case.border is not None and case.border.shape == config.volume_shape
    label = nib.load(str(files.label))
    back = case.meta.to_input_grid(case.raw_label, order=0)
    assert back.shape == label.shape and np.allclose(case.meta.affine, label.affine)
    assert dice(back, np.asarray(label.dataobj)) >= 0.99
    with pytest.raises(DatasetError, match="fingerprint"):
        load_case(files, get_config("C", dataset, in_channels=config.in_channels, volume_shape=(32, 32, 32)))


@pytest.mark.slow
@pytest.mark.parametrize("dataset", sorted(SHAPES))
def test_each_layout_trains_one_step_and_predicts_on_the_input_grid(layout_roots, dataset, tmp_path):
    """Issue 12: every layout discovered, trained one step, predicted; masks have the input's shape and affine."""
    from oss_net.inference import InferenceSettings, run_inference
    from oss_net.training import resolve_settings, train

    root = layout_roots[dataset]
    run = train(resolve_settings({
        "train": True, "demo": True, "cpu": True, "uniform_sampling": True, "batch_size": 1, "training_samples": 64,
        "val_samples": 128, "dense_validation": False, "max_iterations": 1, "dataset": dataset,
        "dataset_path": str(root), "output_dir": str(tmp_path / "run"), "volume_shape": (32, 32, 32)}))
    out = tmp_path / "inference"
    run_inference(InferenceSettings(load_model=str(run / "final_model.pt"), dataset_path=str(root),
                                    output_dir=str(out), split="val", no_mesh=True, cpu=True))
    cases = discover(dataset, root, "val")
    assert cases
    for files in cases:
        mask = nib.load(str(out / files.case_id / f"{files.case_id}_mask.nii.gz"))
        source = nib.load(str(files.images[0]))
        assert mask.shape == source.shape[:3] and np.allclose(mask.affine, source.affine)
