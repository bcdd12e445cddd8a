"""nnU-Net v2, Decathlon and FLARE21 layouts: discovery from the synthetic writers, splits, channels, bad input."""
from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from oss_net.data import DatasetError, discover
from oss_net.data.channels import read_channels
from oss_net.data.check import check_dataset, main as check_main
from oss_net.data.dataset_info import CT, MRI, DatasetInfo, channel_modality
from oss_net.data.layouts import dataset_info, detect_dataset
from oss_net.data.layouts.common import default_border_path
from oss_net.data.synthetic import write_synthetic_dataset
from oss_net.data.synthetic_layouts import write_msd_dataset, write_nnunet_dataset
from oss_net.geometry import spacing_from_affine

CASES = 5  # default split holds out 1 in 5 -> 4 train + 1 val; each writer adds 1 unlabelled case


@pytest.fixture(scope="module")
def nnunet_root(tmp_path_factory) -> Path:
    return write_synthetic_dataset("nnunet", tmp_path_factory.mktemp("nnunet"), CASES, seed=0)


@pytest.fixture(scope="module")
def msd_root(tmp_path_factory) -> Path:
    return write_synthetic_dataset("msd", tmp_path_factory.mktemp("msd"), CASES, seed=0)


@pytest.fixture(scope="module")
def flare_root(tmp_path_factory) -> Path:
    return write_synthetic_dataset("flare", tmp_path_factory.mktemp("flare"), CASES, seed=0)


def _copy(root: Path, tmp_path: Path) -> Path:
    copy = tmp_path / root.name
    shutil.copytree(root, copy)
    return copy


def _edit_json(root: Path, **changes) -> None:
    record = json.loads((root / "dataset.json").read_text())
    record.update(changes)
    for key in [k for k, v in changes.items() if v is None]:
        del record[key]
    (root / "dataset.json").write_text(json.dumps(record))


def _single_error(call) -> str:
    with pytest.raises(DatasetError) as error:
        call()
    return str(error.value)


def test_nnunet_cases_channels_labels_and_splits(nnunet_root):
    assert detect_dataset(nnunet_root) == "nnunet"
    every = discover("nnunet", nnunet_root, "all")
    assert [c.case_id for c in every] == [f"case_{i:03d}" for i in range(CASES)]
    assert [p.name for p in every[1].images] == ["case_001_0000.nii.gz", "case_001_0001.nii.gz", "case_001_0002.nii.gz"]
    assert every[1].label == nnunet_root / "labelsTr" / "case_001.nii.gz" and every[1].border is None
    train, val = (discover("nnunet", nnunet_root, s) for s in ("train", "val"))
    assert len(train) == 4 and len(val) == 1 and sorted(c.case_id for c in train + val) == [c.case_id for c in every]
    assert [(c.case_id, c.label) for c in discover("nnunet", nnunet_root, "test")] == [("case_005", None)]
    info = dataset_info("nnunet", nnunet_root)
    assert info.channel_names == ("FLAIR", "T1", "T2") and info.modalities == (MRI, MRI, MRI)
    assert info.labels == {"background": 0, "whole tumour": (1, 2, 3), "tumour core": (2, 3), "enhancing tumour": (3,)}
    assert info.has_regions and info.label_values == frozenset({0, 1, 2, 3}) and info.num_training == CASES
    assert DatasetInfo.from_dict(json.loads(json.dumps(info.to_dict()))) == info


def test_nnunet_plain_labels(tmp_path):
    root = write_nnunet_dataset(tmp_path, 2, (16, 16, 12), regions=False, test_cases=0)
    info = dataset_info("nnunet", root)
    assert info.labels == {"background": 0, "oedema": 1, "tumour core": 2, "enhancing tumour": 3}
    assert not info.has_regions


def test_splits_final_fold_is_honoured_and_a_split_file_wins(nnunet_root, tmp_path):
    raw = tmp_path / "nnUNet_raw"
    raw.mkdir()
    root = _copy(nnunet_root, raw)
    ids = [f"case_{i:03d}" for i in range(CASES)]
    folds = [{"train": ids[:3], "val": ids[3:]}, {"train": ids[2:], "val": ids[:2]}]
    preprocessed = tmp_path / "nnUNet_preprocessed" / root.name  # next to nnUNet_raw, as nnU-Net keeps it
    preprocessed.mkdir(parents=True)
    (preprocessed / "splits_final.json").write_text(json.dumps(folds))
    assert [c.case_id for c in discover("nnunet", root, "val")] == ids[3:]
    assert [c.case_id for c in discover("nnunet", root, "val", fold=1)] == ids[:2]
    assert [c.case_id for c in discover("nnunet", root, "train", fold=1)] == ids[2:]
    (root / "splits_final.json").write_text(json.dumps([{"train": ids[1:], "val": ids[:1]}]))  # the dataset's own wins
    assert [c.case_id for c in discover("nnunet", root, "val")] == ids[:1]
    split_file = tmp_path / "split.txt"
    split_file.write_text("\n".join(f"{i} {'val' if i == ids[4] else 'train'}" for i in ids))
    assert [c.case_id for c in discover("nnunet", root, "val", split_file=split_file)] == [ids[4]]
    with pytest.raises(DatasetError, match=r"splits_final.json: fold 2 requested but the file has 1 fold"):
        discover("nnunet", root, "val", fold=2)
    (root / "splits_final.json").write_text(json.dumps([{"train": ids[1:], "val": ["case_999"]}]))
    with pytest.raises(DatasetError, match=r"splits_final.json: fold 0 lists case 'case_999', which is not in"):
        discover("nnunet", root, "val")


def test_msd_four_d_images_give_one_entry_per_channel(msd_root):
    assert detect_dataset(msd_root) == "msd"
    info = dataset_info("msd", msd_root)
    assert info.channel_names == ("FLAIR", "T1w") and info.labels == {"background": 0, "oedema": 1, "tumour": 2}
    every = discover("msd", msd_root, "all")
    assert [c.case_id for c in every] == [f"tumour_{i:03d}" for i in range(CASES)]
    case = every[0]
    assert case.images == (msd_root / "imagesTr" / "tumour_000.nii.gz",) * 2
    assert len(discover("msd", msd_root, "val")) == 1 and len(discover("msd", msd_root, "train")) == 4
    assert [c.case_id for c in discover("msd", msd_root, "test")] == ["tumour_005"]
    image = nib.load(str(case.images[0]))
    volumes = read_channels(case)
    assert len(volumes) == 2 and image.shape == (*volumes[0].array.shape, 2)
    for channel, volume in enumerate(volumes):
        np.testing.assert_array_equal(volume.array, np.asarray(image.dataobj)[..., channel])
        np.testing.assert_allclose(volume.affine, image.affine)
        header = nib.Nifti1Header.from_fileobj(io.BytesIO(volume.header))
        assert header.get_data_shape() == volumes[0].array.shape  # a 3-D header for a 3-D output
    assert not np.array_equal(volumes[0].array, volumes[1].array)


def test_msd_single_channel_ct_task_is_three_d(tmp_path):
    root = write_msd_dataset(tmp_path, 3, (20, 20, 12), kind="ct", test_cases=0)
    info = dataset_info("msd", root)
    assert info.channel_names == (CT,) and info.modalities == (CT,) and info.labels["cancer"] == 2
    case = discover("msd", root, "all")[0]
    assert case.images == (root / "imagesTr" / "liver_000.nii.gz",)
    assert read_channels(case)[0].array.shape == (20, 20, 12)


def test_flare_cases_organs_and_validation_images(flare_root):
    assert detect_dataset(flare_root) == "flare"
    every = discover("flare", flare_root, "all")
    assert [c.case_id for c in every] == [f"train_{i:03d}" for i in range(CASES)]
    assert every[2].images == (flare_root / "TrainingImg" / "train_002_0000.nii.gz",)
    assert every[2].label == flare_root / "TrainingMask" / "train_002.nii.gz"
    assert [c.case_id for c in discover("flare", flare_root, "test")] == ["validation_000"]
    info = dataset_info("flare", flare_root)
    assert info.modalities == (CT,)
    assert info.labels == {"background": 0, "liver": 1, "kidney": 2, "spleen": 3, "pancreas": 4}
    assert info.num_training == CASES
    label = np.asarray(nib.load(str(every[0].label)).dataobj)
    assert set(np.unique(label).tolist()) == {0, 1, 2, 3, 4}  # four organs as separate labels


@pytest.mark.parametrize("layout", ["nnunet", "msd", "flare"])
def test_synthetic_layouts_are_oblique_anisotropic_and_reproducible(layout, tmp_path, nnunet_root, msd_root,
                                                                    flare_root):
    root = {"nnunet": nnunet_root, "msd": msd_root, "flare": flare_root}[layout]
    case = discover(layout, root, "all")[0]
    affine = nib.load(str(case.images[0])).affine
    linear = affine[:3, :3] / spacing_from_affine(affine)
    assert np.abs(linear - np.diag(np.diag(linear))).max() > 0.1  # rotated grid, not axis-aligned
    spacing = spacing_from_affine(affine)
    assert spacing.max() / spacing.min() > 1.2
    again = write_synthetic_dataset(layout, tmp_path, CASES, seed=0)
    assert (again / case.images[0].relative_to(root)).read_bytes() == case.images[0].read_bytes()


def test_borders_of_the_new_layouts_live_outside_the_label_folder(nnunet_root, tmp_path):
    root = _copy(nnunet_root, tmp_path)
    case = discover("nnunet", root, "all")[0]
    target = default_border_path(case, "nnunet")
    assert target == root / "bordersTr" / "case_000_border.nii.gz"
    target.parent.mkdir()
    shutil.copy(case.label, target)
    assert discover("nnunet", root, "all")[0].border == target


def test_detect_and_modality_rules(tmp_path, synthetic_brats_root, synthetic_lits_root):
    assert detect_dataset(synthetic_brats_root) == "brats" and detect_dataset(synthetic_lits_root) == "lits"
    assert channel_modality(" ct ") == CT and channel_modality("T2") == MRI
    with pytest.raises(DatasetError, match="not a BraTS 2020, LiTS, nnU-Net, Decathlon or FLARE21 layout"):
        detect_dataset(tmp_path)
    (tmp_path / "dataset.json").write_text("{}")
    with pytest.raises(DatasetError, match=r"dataset.json: has neither 'channel_names'"):
        detect_dataset(tmp_path)


def test_clean_layouts_pass_the_check(nnunet_root, msd_root, flare_root, capsys):
    for root in (nnunet_root, msd_root, flare_root):
        reports = check_dataset(root)
        assert len(reports) == CASES + 1 and all(r.status == "ok" for r in reports)
        assert check_main([str(root)]) == 0
    assert "6 case(s): 6 ok" in capsys.readouterr().out


def _save_like(path: Path, array: np.ndarray, affine: np.ndarray) -> None:
    nib.save(nib.Nifti1Image(array, affine), str(path))


def test_nnunet_bad_inputs_each_name_the_file(nnunet_root, tmp_path):
    root = _copy(nnunet_root, tmp_path)
    images = root / "imagesTr"
    (images / "case_001_0001.nii.gz").unlink()  # a missing channel
    for channel in range(3):
        (images / f"case_002_{channel:04d}.nii.gz").unlink()  # a label without images
    reference = nib.load(str(images / "case_003_0000.nii.gz"))
    _save_like(images / "case_003_0002.nii.gz", np.zeros((32, 28, 19), np.int16), reference.affine)  # other shape
    moved = reference.affine.copy()
    moved[0, 3] += 5.0
    _save_like(images / "case_004_0001.nii.gz", np.zeros(reference.shape, np.int16), moved)  # other affine
    expected = [
        (f"{images / 'case_001_0001.nii.gz'}: missing channel 1 ('T1') of case case_001", "case_001"),
        (f"{root / 'labelsTr' / 'case_002.nii.gz'}: label without images", "case_002"),
        (f"{root / 'dataset.json'}: numTraining is 5 but {images} holds 4 case(s)", "*"),
        (f"{images / 'case_003_0002.nii.gz'}: shape (32, 28, 19) differs from (32, 28, 20)", "case_003"),
        (f"{images / 'case_004_0001.nii.gz'}: affine differs", "case_004"),
    ]
    message = _single_error(lambda: discover("nnunet", root, "train"))
    assert message.startswith(f"{root}: 5 problem(s)")
    for text, _ in expected:
        assert text in message
    reports = {r.case_id: r for r in check_dataset(root, "nnunet")}
    for text, case_id in expected:
        assert reports[case_id].status == "FAIL" and any(text in e for e in reports[case_id].errors)
    assert [reports[c].status for c in ("case_000", "case_005")] == ["ok", "ok"]
    assert check_main([str(root)]) == 1


def test_nnunet_dataset_json_missing_fields_and_bad_label_values(nnunet_root, tmp_path):
    root = _copy(nnunet_root, tmp_path)
    label_path = root / "labelsTr" / "case_000.nii.gz"
    label = nib.load(str(label_path))
    values = np.asarray(label.dataobj).copy()
    values[0, 0, 0] = 7
    _save_like(label_path, values, label.affine)
    (report,) = [r for r in check_dataset(root) if r.case_id == "case_000"]
    assert report.errors == [f"{label_path}: label values [7] outside [0, 1, 2, 3]"]
    _edit_json(root, numTraining=None, file_ending=None)
    text = f"{root / 'dataset.json'}: missing field(s) 'numTraining', 'file_ending'"
    assert _single_error(lambda: discover("nnunet", root, "all")) == text
    assert [(r.case_id, r.errors) for r in check_dataset(root, "nnunet")] == [("*", [text])]


def test_msd_bad_inputs_each_name_the_file(msd_root, tmp_path):
    root = _copy(msd_root, tmp_path)
    (root / "imagesTr" / "tumour_001.nii.gz").unlink()  # label without image, and listed but missing
    image = nib.load(str(root / "imagesTr" / "tumour_002.nii.gz"))
    _save_like(root / "imagesTr" / "tumour_002.nii.gz", np.asarray(image.dataobj)[..., :1].repeat(3, -1), image.affine)
    _edit_json(root, numTraining=9)
    message = _single_error(lambda: discover("msd", root, "all"))
    for text in (f"{root / 'labelsTr' / 'tumour_001.nii.gz'}: label without image",
                 f"{root / 'imagesTr' / 'tumour_001.nii.gz'}: listed in dataset.json 'training' but missing",
                 f"{root / 'dataset.json'}: numTraining is 9 but 'training' lists 5 case(s)",
                 f"{root / 'imagesTr' / 'tumour_002.nii.gz'}: expected a 4-D image with 2 channels on its last axis"):
        assert text in message
    reports = {r.case_id: r for r in check_dataset(root)}
    assert {c for c, r in reports.items() if r.status == "FAIL"} == {"*", "tumour_001", "tumour_002"}
    _edit_json(root, modality=None)
    missing = f"{root / 'dataset.json'}: missing field(s) 'modality'"
    assert _single_error(lambda: discover("msd", root, "all")) == missing


def test_flare_bad_inputs_each_name_the_file(flare_root, tmp_path):
    root = _copy(flare_root, tmp_path)
    (root / "TrainingImg" / "train_001_0000.nii.gz").unlink()
    (root / "TrainingMask" / "train_003.nii.gz").unlink()
    message = _single_error(lambda: discover("flare", root, "all"))
    assert f"{root / 'TrainingMask' / 'train_001.nii.gz'}: label without image" in message
    assert f"{root / 'TrainingMask' / 'train_003.nii.gz'}: label file missing" in message
    reports = {r.case_id: r for r in check_dataset(root, "flare")}
    assert [reports[c].status for c in ("train_000", "train_001", "train_003")] == ["ok", "FAIL", "FAIL"]
