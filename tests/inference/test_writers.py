"""CaseWriter: one writer and one record for every model (binary is the K = 1 case), both layouts."""
from __future__ import annotations

from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest
import torch

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
