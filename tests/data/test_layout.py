"""Discovery: files by suffix / case number, splits, the real-world naming quirks, original layouts."""
from __future__ import annotations

import shutil

import nibabel as nib
import pytest

from oss_net.data import DatasetError, discover, discover_case_folder, load_case
from oss_net.data.layouts import EXTERNAL_DATASETS, LAYOUTS
from oss_net.data.layouts.brats import BRATS_TRAINING, BRATS_VALIDATION, brats_file_role
from oss_net.data.splits import SPLITS, default_split
from oss_net.datasets import DATASETS, canonical_dataset


def test_brats_default_split_is_deterministic_disjoint_and_complete(synthetic_brats_root):
    train = [c.case_id for c in discover("brats", synthetic_brats_root, "train")]
    val = [c.case_id for c in discover("brats", synthetic_brats_root, "val")]
    every = [c.case_id for c in discover("brats", synthetic_brats_root, "all")]
    assert len(val) == 1 and len(train) == 3 and sorted(train + val) == every
    assert val == [c.case_id for c in discover("brats", synthetic_brats_root, "val")]
    case = discover("brats", synthetic_brats_root, "all")[0]
    assert [p.name.split("_")[-1] for p in case.images] == ["flair.nii.gz", "t1.nii.gz", "t1ce.nii.gz", "t2.nii.gz"]
    assert case.label.name.endswith("_seg.nii.gz") and case.border is None


def test_every_dataset_has_one_layout_in_the_registry(tmp_path):
    assert sorted(LAYOUTS) == sorted(DATASETS) and all(layout.name == name for name, layout in LAYOUTS.items())
    assert EXTERNAL_DATASETS == ("nnunet", "msd", "flare")  # the layouts a scan lists whole
    assert [name for name, layout in LAYOUTS.items() if layout.read_case is not None] == ["brats", "lits"]
    with pytest.raises(DatasetError, match="a single case can be given for brats or lits only, not 'flare'"):
        discover_case_folder(tmp_path, "flare")


@pytest.mark.parametrize(("spelling", "dataset"), [
    ("brats", "brats"), ("BraTS", "brats"), ("bra_ts", "brats"), ("Bra-TS", "brats"), (" BraTS2020 ", "brats"),
    ("lits", "lits"), ("LiTS", "lits"), ("LITS", "lits"),
])
def test_canonical_dataset_accepts_the_original_spellings(spelling, dataset):
    assert canonical_dataset(spelling) == dataset


def test_unknown_dataset_or_split_names_the_valid_ones(synthetic_brats_root):
    assert DATASETS == ("brats", "lits", "nnunet", "msd", "flare") and SPLITS == ("train", "val", "all", "test")
    for bad in ("kits", "brats 2020", None):
        with pytest.raises(DatasetError, match=rf"unknown dataset {bad!r}; valid datasets: brats, lits, nnunet, msd, flare"):
            canonical_dataset(bad)
    assert discover("BraTS", synthetic_brats_root, "all") == discover("brats", synthetic_brats_root, "all")
    with pytest.raises(DatasetError, match="unknown split 'validation'; expected one of train, val, all, test"):
        discover("brats", synthetic_brats_root, "validation")


def test_default_split_scales_the_original_fractions():
    ids = [f"BraTS20_Training_{i:03d}" for i in range(1, 370)]
    assert sum(v == "val" for v in default_split(ids, "brats").values()) == 45
    assert sum(v == "val" for v in default_split([f"lits-{i}" for i in range(131)], "lits").values()) == 20
    assert default_split(ids, "brats", seed=1) != default_split(ids, "brats", seed=0)


def test_split_file(synthetic_brats_root, tmp_path):
    split = tmp_path / "split.txt"
    split.write_text("# my split\nBraTS20_Training_001 val\nBraTS20_Training_002 train\n"
                     "train BraTS20_Training_003\nBraTS20_Training_004, validation\n")
    val = discover("brats", synthetic_brats_root, "val", split_file=split)
    assert [c.case_id for c in val] == ["BraTS20_Training_001", "BraTS20_Training_004"]
    split.write_text("BraTS20_Training_999 val\n")
    with pytest.raises(DatasetError, match=r"split.txt:1: case 'BraTS20_Training_999' is not in the dataset"):
        discover("brats", synthetic_brats_root, "train", split_file=split)


def test_files_are_recognised_by_suffix():
    roles = {name: brats_file_role(name) for name in [
        "A_t1ce.nii.gz", "A_t1.nii", "A_FLAIR.nii.gz", "A_t2.nii.gz", "A_seg.nii.gz", "W39_1998.09.19_Segm.nii",
        "A_border.nii.gz", "A_bor.pt", ".DS_Store", "A_t1ce.nii.gz.bak", "notes.txt"]}
    assert list(roles.values()) == ["t1ce", "t1", "flair", "t2", "seg", "seg", "border", "ignored", "ignored", None, None]


def test_brats_segm_quirk_validation_folder_and_original_test_folder(synthetic_brats_root, tmp_path, brats_config):
    root = tmp_path / "brats"
    shutil.copytree(synthetic_brats_root, root)
    quirk = root / BRATS_TRAINING / "BraTS20_Training_003"
    seg = quirk / "BraTS20_Training_003_seg.nii.gz"
    nib.save(nib.load(str(seg)), str(quirk / "W39_1998.09.19_Segm.nii"))
    seg.unlink()
    case = discover_case_folder(quirk, "brats")
    assert case.label.name == "W39_1998.09.19_Segm.nii"
    assert load_case(case, brats_config, with_border=False).raw_label.max() == 4
    unlabelled = root / BRATS_VALIDATION / "BraTS20_Validation_001"
    shutil.copytree(root / BRATS_TRAINING / "BraTS20_Training_001", unlabelled)
    (unlabelled / "BraTS20_Training_001_seg.nii.gz").unlink()
    test = discover("brats", root, "test")
    assert [c.case_id for c in test] == ["BraTS20_Validation_001"] and test[0].label is None
    (root / "MICCAI_BraTS2020_TestData").mkdir()
    shutil.move(root / BRATS_TRAINING / "BraTS20_Training_004", root / "MICCAI_BraTS2020_TestData")
    assert [c.case_id for c in discover("brats", root, "val")] == ["BraTS20_Training_004"]
    assert len(discover("brats", root, "train")) == 3


def test_lits_pairs_by_number_not_listing_order(synthetic_lits_root, tmp_path):
    root = tmp_path / "lits"
    (root / "Training Batch 1").mkdir(parents=True)
    (root / "Training Batch 2").mkdir()
    for old, new, batch in [(0, 2, 1), (1, 10, 2), (2, 7, 2)]:
        for kind in ("volume", "segmentation"):
            shutil.copy(synthetic_lits_root / f"{kind}-{old}.nii", root / f"Training Batch {batch}" / f"{kind}-{new}.nii")
    cases = discover("lits", root, "all")
    assert [c.case_id for c in cases] == ["lits-2", "lits-7", "lits-10"]
    assert all(c.images[0].name == f"volume-{c.case_id[5:]}.nii" and c.label.name == f"segmentation-{c.case_id[5:]}.nii"
               for c in cases)
    assert discover_case_folder(root / "Training Batch 2" / "volume-10.nii", "lits") == cases[2]
    (root / "Training Batch 2" / "segmentation-7.nii").unlink()
    with pytest.raises(DatasetError, match=r"volume-7.nii: no matching segmentation-7 file"):
        discover("lits", root, "all")


def test_lits_original_layout(synthetic_lits_root, tmp_path):
    for split, numbers in (("TrainingData", (0, 1)), ("TestData", (2,))):
        for folder in ("input", "segmentation"):
            (tmp_path / split / folder).mkdir(parents=True)
        for n in numbers:
            shutil.copy(synthetic_lits_root / f"volume-{n}.nii", tmp_path / split / "input" / f"volume-{n}.nii")
            shutil.copy(synthetic_lits_root / f"segmentation-{n}.nii", tmp_path / split / "segmentation" / f"segmentation-{n}.nii")
    assert [c.case_id for c in discover("lits", tmp_path, "train")] == ["lits-0", "lits-1"]
    assert [c.case_id for c in discover("lits", tmp_path, "val")] == ["lits-2"]
