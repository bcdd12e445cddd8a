"""CaseWriter: one writer and one record for every model (binary is the K = 1 case), both layouts."""
from __future__ import annotations

from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest
import torch
import trimesh

from oss_net.data import discover, load_case
from oss_net.inference import CaseWriter, InferenceError, Prediction, WriteOptions
from oss_net.labels import config_with_label_mode, scheme_of
from oss_net.metrics import METRIC_KEYS
from oss_net.models import demo_config


def perfect_prediction(config, case) -> Prediction:
    """The case's own label as the decoder outputs of `config` ([*S] for binary, [outputs, *S] otherwise)."""
    targets = scheme_of(config).targets(torch.from_numpy(np.asarray(case.raw_label).astype(np.int64)))  # [outputs, *S]
    occupancy = targets[0] if len(targets) == 1 else targets
    return Prediction(occupancy=occupancy, mode="prior", seconds=0.5, points_evaluated=11, disagreement=0,
                      runs={"standard": {"seconds": 0.7, "points_evaluated": 13}, "prior": {"seconds": 0.5, "points_evaluated": 11}})


def write(config, files, folder, **options):
    case = load_case(files, config, with_border=False)
    writer = CaseWriter(SimpleNamespace(config=config), WriteOptions(meshes=False, overlay=False, **options))
    return writer.write(folder, files, case, perfect_prediction(config, case))


def test_binary_and_region_records_have_the_same_fields(synthetic_brats_root, tmp_path):
    """The binary record is the K = 1 case of the K-class one: the same keys, except the per-class metrics
    `<metric>_<name>` that only a model of several classes has (with one class they would repeat the plain ones)."""
    files = discover("brats", synthetic_brats_root, "val")[0]
    (tmp_path / "binary").mkdir()
    (tmp_path / "regions").mkdir()
    binary = write(demo_config("C"), files, tmp_path / "binary")
    regions = write(config_with_label_mode(demo_config("C"), "regions"), files, tmp_path / "regions")
    per_class = {f"{key}_{name}" for key in METRIC_KEYS for name in ("WT", "TC", "ET")}
    assert per_class <= set(regions)
    assert set(binary) == set(regions) - per_class
    assert binary["cropped_background"] is regions["cropped_background"] is False  # the K-class record lacked it
    assert (binary["label_mode"], binary["classes"]) == ("binary", "foreground")
    assert (regions["label_mode"], regions["classes"]) == ("regions", "WT,TC,ET")
    assert binary["dice"] == regions["dice"] == pytest.approx(1.0)
    assert (binary["standard_points_evaluated"], binary["prior_seconds"]) == (13, 0.5)
    assert sorted(p.name for p in (tmp_path / "binary").iterdir()) == [f"{files.case_id}_mask.nii.gz",
                                                                       f"{files.case_id}_occupancy.nii.gz"]


def test_flat_layout_writes_the_label_map_beside_its_probabilities(synthetic_brats_root, tmp_path):
    """oss-net-predict's layout: `<case>.nii.gz` and `probabilities/<case>.nii.gz` (every output, channels last), so
    the folder's `.nii.gz` files are the label maps alone (what nnU-Net's evaluator takes as the predictions)."""
    config = config_with_label_mode(demo_config("C"), "regions")
    files = discover("brats", synthetic_brats_root, "val")[0]
    record = write(config, files, tmp_path, layout="flat", probabilities=True)
    labels = nib.load(str(tmp_path / f"{files.case_id}.nii.gz"))
    probabilities = nib.load(str(tmp_path / "probabilities" / f"{files.case_id}.nii.gz"))
    truth = nib.load(str(files.label))
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{files.case_id}.nii.gz", "probabilities"]
    assert np.array_equal(np.asarray(labels.dataobj), np.asarray(truth.dataobj))  # 0/1/2/4 back
    assert probabilities.shape == (*truth.shape, 3) and np.allclose(probabilities.affine, truth.affine)
    assert record["dice_ET"] == pytest.approx(1.0)  # a label file given: scored as in a case folder


@pytest.mark.parametrize("options, message", [({"layout": "nested"}, "layout 'nested' is not one of case_folder, flat"),
                                              ({"mesh_format": ("vtk",)}, "mesh_format must name one or more of"),
                                              ({"tolerance_mm": -1.0}, "tolerance_mm must be a number >= 0")])
def test_bad_write_options(options, message):
    with pytest.raises(InferenceError, match=message):
        WriteOptions(**options)


# ---------------------------------------------------------------- meshes per class

BRATS_CLASSES = {"necrotic core": 1, "oedema": 2, "enhancing": 4}


def unsure_prediction(config, case) -> Prediction:
    """Exclusive outputs whose argmax is the case's label while no class probability reaches 0.5."""
    targets = scheme_of(config).targets(torch.from_numpy(np.asarray(case.raw_label).astype(np.int64)))  # [4, *S]
    return Prediction(occupancy=torch.softmax(targets, dim=0), mode="standard", seconds=0.1, points_evaluated=5)


def test_class_meshes_follow_the_argmax_named_by_class_in_both_layouts(synthetic_brats_root, tmp_path):
    config = config_with_label_mode(demo_config("C"), "exclusive", BRATS_CLASSES)
    files = discover("brats", synthetic_brats_root, "val")[0]
    case = load_case(files, config, with_border=False)
    prediction = unsure_prediction(config, case)
    assert float(prediction.occupancy[1:].max()) < 0.5
    for layout, folder in (("case_folder", tmp_path / "folder"), ("flat", tmp_path / "flat")):
        folder.mkdir()
        options = WriteOptions(layout=layout, overlay=False, mesh_format=("ply",), min_component_voxels=0)
        record = CaseWriter(SimpleNamespace(config=config), options).write(folder, files, case, prediction)
        names = {p.name for p in folder.iterdir() if p.suffix == ".ply"}
        stems = [f"{files.case_id}_{tag}_prediction.ply" for tag in ("necrotic_core", "oedema", "enhancing")]
        assert set(stems) <= names and f"{files.case_id}_prediction.ply" not in names  # never "not background"
        assert record["dice"] == pytest.approx(1.0) and "meshes_removed" not in record
    oedema = trimesh.load(tmp_path / "folder" / f"{files.case_id}_oedema_prediction.ply", process=False)
    truth = trimesh.load(tmp_path / "folder" / f"{files.case_id}_oedema_label.ply", process=False)
    assert oedema.is_watertight and oedema.volume == pytest.approx(truth.volume, rel=0.05)


def test_a_class_removed_whole_by_the_component_filter_is_logged_and_recorded(synthetic_brats_root, tmp_path, caplog):
    config = config_with_label_mode(demo_config("C"), "exclusive", BRATS_CLASSES)
    files = discover("brats", synthetic_brats_root, "val")[0]
    case = load_case(files, config, with_border=False)
    sizes = [int((np.asarray(case.raw_label) == value).sum()) for value in BRATS_CLASSES.values()]
    cutoff = sorted(sizes)[0] + 1  # larger than the smallest class (the enhancing rim, in pieces or whole)
    options = WriteOptions(overlay=False, mesh_format=("ply",), min_component_voxels=cutoff)
    with caplog.at_level("WARNING", logger="oss_net.inference.writers"):
        record = CaseWriter(SimpleNamespace(config=config), options).write(tmp_path, files, case,
                                                                           perfect_prediction(config, case))
    smallest = list(BRATS_CLASSES)[sizes.index(min(sizes))]
    removed = {entry["class"]: entry for entry in record["meshes_removed"]}
    assert removed[smallest] == {"class": smallest, "voxels": min(sizes), "flag": f"--min_component_voxels {cutoff}"}
    assert any(smallest in message and f"--min_component_voxels {cutoff}" in message for message in caplog.messages)
