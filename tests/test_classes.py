"""Several classes and regions (label modes): targets, losses, sampling, refinement and writers for K = 3."""
from __future__ import annotations

import json
import math
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from oss_net.data import OSSNetDataset, compute_border, discover, load_case
from oss_net.data.sampling import sample_coordinates
from oss_net.data.class_targets import CLASS_BAND_MARGIN, class_border_bands, class_label_and_border, training_label_mode
from oss_net.data.synthetic_layouts import write_nnunet_dataset
from oss_net.inference import InferenceSettings, PredictOptions, Predictor
from oss_net.inference.predictor import Prediction
from oss_net.inference.writers import CaseWriter
from oss_net.datasets import DatasetError
from oss_net.labels import (BRATS_REGIONS, LabelModeError, LabelScheme, LabelValueError, config_with_label_mode,
                            default_class_labels)
from oss_net.models import Encoding, OSSNetConfig, build_model, count_parameters, demo_config
from oss_net.models.config import ConfigError
from oss_net.training.loss import training_loss

REGIONS = LabelScheme("regions", BRATS_REGIONS)
FLARE_LABELS = {"background": 0, "liver": 1, "kidney": 2, "spleen": 3}
EXCLUSIVE = LabelScheme("exclusive", default_class_labels("exclusive", "flare", FLARE_LABELS))


def brats_label() -> torch.Tensor:
    """[12, 12, 12] nested BraTS labels: edema 2 around a core of necrosis 1 around enhancing 4."""
    label = torch.zeros(12, 12, 12, dtype=torch.uint8)
    label[2:10, 2:10, 2:10] = 2
    label[4:8, 4:8, 4:8] = 1
    label[5:7, 5:7, 5:7] = 4
    return label


# ---------------------------------------------------------------- label modes


def test_brats_regions_targets_are_nested_multi_hot():
    targets = REGIONS.targets(torch.tensor([0, 1, 2, 4]).reshape(4, 1, 1, 1))[..., 0, 0, 0]  # [4, 3] WT, TC, ET
    assert targets.tolist() == [[0, 0, 0], [1, 1, 0], [1, 0, 0], [1, 1, 1]]
    assert REGIONS.names == ("WT", "TC", "ET") and REGIONS.outputs == 3


def test_exclusive_targets_are_one_hot_with_the_background_first():
    targets = EXCLUSIVE.targets(torch.tensor([0, 1, 2, 3]).reshape(4, 1, 1, 1))[..., 0, 0, 0]  # [4, 4]
    assert torch.equal(targets, torch.eye(4)) and EXCLUSIVE.outputs == 4 and EXCLUSIVE.classes_count == 3


def test_point_targets_take_the_nearest_voxel():
    label = brats_label()
    coords = torch.tensor([[0.0, 0.0, 0.0], [5.6, 5.4, 6.2], [4.0, 4.2, 3.9], [2.4, 2.0, 9.4]])  # bg, ET, TC, WT
    assert REGIONS.point_targets(label, coords).tolist() == [[0, 0, 0], [1, 1, 1], [1, 1, 0], [1, 0, 0]]


def test_brats_regions_label_map_round_trip():
    """Regions back to {0, 1, 2, 4}: ET -> 4, TC without ET -> 1, WT without TC -> 2 (the BraTS rule)."""
    label = brats_label().numpy()
    probabilities = REGIONS.targets(torch.from_numpy(label)).numpy() * 0.8 + 0.1  # [3, *S], away from 0.5
    assert np.array_equal(REGIONS.label_map(probabilities, 0.5), label)
    assert np.array_equal(REGIONS.label_map_masks(label), REGIONS.class_masks(torch.from_numpy(label)).numpy())


def test_exclusive_label_map_takes_the_likeliest_output():
    label = np.array([0, 1, 2, 3, 3], dtype=np.uint8).reshape(5, 1, 1)
    probabilities = EXCLUSIVE.targets(torch.from_numpy(label)).numpy() * 0.6 + 0.1  # [4, 5, 1, 1]
    probabilities[:, 4, 0, 0] = [0.3, 0.3, 0.0, 0.4]  # no class above one half: the likeliest one wins
    assert EXCLUSIVE.label_map(probabilities, 0.5).reshape(-1).tolist() == [0, 1, 2, 3, 3]


def test_bad_label_values_name_the_file():
    with pytest.raises(LabelValueError, match=r"case_1/seg\.nii\.gz: label values \[3, 7\] belong to no regions class"):
        REGIONS.check_values(np.array([0, 1, 3, 7, 4]), "case_1/seg.nii.gz")
    EXCLUSIVE.check_values(np.array([0, 1, 2, 3]), "fine")


@pytest.mark.parametrize(("mode", "classes", "message"), [
    ("regions", (("WT", (1, 2)), ("TC", (1, 2))), "exactly one label value that no later region has"),
    ("exclusive", (("liver", (1,)), ("tumour", (1, 2))), "may not share label values"),
    ("regions", (), "needs class_labels"),
    ("binary", (("WT", (1,)),), "takes no class_labels"),
    ("nested", (), "label_mode must be one of"),
])
def test_inconsistent_label_modes_are_refused(mode, classes, message):
    with pytest.raises(ValueError, match=message):
        LabelScheme(mode, classes)


def test_dataset_json_regions_select_regions_and_refuse_exclusive():
    labels = {"background": 0, "whole tumor": (1, 2, 3), "tumor core": (2, 3), "enhancing tumor": (3,)}
    assert default_class_labels("regions", "nnunet", labels)[0] == ("whole tumor", (1, 2, 3))
    keys_sorted = dict(sorted(labels.items()))  # JSON written with sorted keys: the regions still go largest first
    assert [name for name, _ in default_class_labels("regions", "nnunet", keys_sorted)] == [
        "whole tumor", "tumor core", "enhancing tumor"]
    with pytest.raises(Exception, match="use --label_mode regions"):
        default_class_labels("exclusive", "nnunet", labels)


def test_a_dataset_json_listing_regions_trains_regions_unless_told_otherwise(tmp_path):
    """nnU-Net labels given as lists select regions mode when --label_mode is omitted; the flag still wins."""
    from oss_net.training import resolve_settings

    regions_root = write_nnunet_dataset(tmp_path / "regions", 2, (16, 16, 12), test_cases=0)
    plain_root = write_nnunet_dataset(tmp_path / "plain", 2, (16, 16, 12), regions=False, test_cases=0)
    detected = resolve_settings({"train": True, "dataset_path": str(regions_root)})
    assert detected.dataset == "nnunet" and detected.label_mode == "regions"
    config = training_label_mode(demo_config("C", "nnunet", in_channels=3, volume_shape=(32, 32, 32)), detected.label_mode,
                                 detected.dataset, detected.dataset_path)
    assert [name for name, _ in config.class_labels] == ["whole tumour", "tumour core", "enhancing tumour"]
    assert resolve_settings({"train": True, "dataset_path": str(regions_root), "label_mode": "binary"}).label_mode == "binary"
    assert resolve_settings({"train": True, "dataset_path": str(plain_root)}).label_mode == "exclusive"  # 3 labels
    assert resolve_settings({"train": True, "dataset_path": str(tmp_path / "missing"), "dataset": "nnunet"}
                            ).label_mode == "binary"  # discovery reports the missing folder later


def test_a_flare_folder_trains_its_four_organs_as_exclusive_classes(tmp_path):
    from oss_net.data.synthetic_layouts import write_flare_dataset
    from oss_net.training import resolve_settings

    root = write_flare_dataset(tmp_path / "flare", 2, (16, 16, 8), test_cases=0)
    settings = resolve_settings({"train": True, "dataset_path": str(root)})
    assert (settings.dataset, settings.label_mode) == ("flare", "exclusive")
    config = training_label_mode(demo_config("C", "flare", in_channels=1, volume_shape=(32, 32, 32)), settings.label_mode,
                                 settings.dataset, settings.dataset_path)
    assert config.class_labels == (("liver", (1,)), ("kidney", (2,)), ("spleen", (3,)), ("pancreas", (4,)))
    assert config.number_of_classes == 5


@pytest.mark.parametrize(("labels", "mode"), [
    ({"background": 0, "grey matter": 1, "white matter": 2}, "exclusive"),
    ({"background": 0, "liver": 1}, "binary"),
    ({"background": 0, "tumour": [1, 2, 4]}, "regions"),
])
def test_a_dataset_json_selects_its_label_mode(tmp_path, labels, mode):
    from oss_net.training import resolve_settings

    root = tmp_path / "Dataset900_Brain"
    root.mkdir()
    (root / "dataset.json").write_text(json.dumps({"channel_names": {"0": "T1"}, "labels": labels, "numTraining": 0,
                                                   "file_ending": ".nii.gz"}))
    assert resolve_settings({"train": True, "dataset_path": str(root)}).label_mode == mode


def test_regions_class_order_is_read_and_writes_the_label_map(tmp_path):
    """nnU-Net's "tumour": [1, 2, 4] with "regions_class_order": [1]: one region that writes 1 (refused before:
    no single value of its own)."""
    from oss_net.data.layouts.nnunet import read_nnunet_info

    root = tmp_path / "Dataset902_Tumour"
    root.mkdir()
    record = {"channel_names": {"0": "FLAIR"}, "labels": {"background": 0, "tumour": [1, 2, 4]},
              "regions_class_order": [1], "numTraining": 0, "file_ending": ".nii.gz"}
    (root / "dataset.json").write_text(json.dumps(record))
    info = read_nnunet_info(root)
    assert info.regions_class_order == (1,)
    config = config_with_label_mode(demo_config("C", "nnunet", in_channels=1, volume_shape=(32, 32, 32)), "regions",
                                    dict(info.labels), info.regions_class_order)
    assert config.class_labels == (("tumour", (1, 2, 4)),) and config.regions_class_order == (1,)
    assert OSSNetConfig.from_dict(config.to_dict()) == config
    scheme = LabelScheme("regions", config.class_labels, config.regions_class_order)
    assert scheme.label_map(np.array([0.2, 0.7, 0.9]).reshape(1, 3, 1, 1), 0.5).reshape(-1).tolist() == [0, 1, 1]
    with pytest.raises(LabelModeError, match="no later region has, to write label maps"):
        LabelScheme("regions", config.class_labels)  # without the order the region has no value to write
    (root / "dataset.json").write_text(json.dumps({**record, "regions_class_order": [1, 2]}))
    with pytest.raises(DatasetError, match=r"dataset\.json: 'regions_class_order' gives 2 value\(s\) for 1 region"):
        read_nnunet_info(root)


def test_the_regions_demo_preset_trains_longer_on_more_border_points(synthetic_brats_root):
    from oss_net.training import demo_settings
    from oss_net.training.settings import DEMO_CLASSES_PRESET, DEMO_PRESET

    binary = demo_settings(str(synthetic_brats_root), "unused")
    regions = demo_settings(str(synthetic_brats_root), "unused", label_mode="regions")
    assert (binary.epochs, binary.border_balance) == (DEMO_PRESET["brats"]["epochs"], 0.5)
    assert (regions.epochs, regions.border_balance) == (DEMO_CLASSES_PRESET["epochs"], DEMO_CLASSES_PRESET["border_balance"])
    assert regions.epochs > binary.epochs and regions.border_balance > binary.border_balance
    given = demo_settings(str(synthetic_brats_root), "unused", label_mode="regions", epochs=3, border_balance=0.2)
    assert (given.epochs, given.border_balance) == (3, 0.2)
    assert demo_settings(str(synthetic_brats_root), "unused", label_mode="regions", uniform_sampling=True).border_balance == 0.0


# ---------------------------------------------------------------- configuration


def test_binary_configuration_is_unchanged_and_old_dicts_load():
    config = demo_config("C")
    assert config_with_label_mode(config, "binary") is config
    old = config.to_dict()
    del old["label_mode"], old["class_labels"]
    assert OSSNetConfig.from_dict(old) == config


def test_k_classes_widen_only_the_last_layer_and_the_segmentation_head():
    config = demo_config("C")
    regions = config_with_label_mode(config, "regions")
    exclusive = config_with_label_mode(demo_config("C", "lits"), "exclusive", {"background": 0, "liver": 1, "tumour": 2})
    assert OSSNetConfig.from_dict(regions.to_dict()) == regions and regions.number_of_classes == 3
    assert exclusive.number_of_classes == 3 and exclusive.class_labels == (("liver", (1,)), ("tumour", (2,)))
    head = config.encoder_channels[-1][1] * 5**3  # the 5^3 segmentation head's weights per output channel
    added = count_parameters(build_model(regions)) - count_parameters(build_model(config))
    assert added == 2 * config.decoder_width + 2 * head
    with pytest.raises(ConfigError, match="needs number_of_classes = 4, got 3"):
        OSSNetConfig.from_dict({**regions.to_dict(), "label_mode": "exclusive"})


def test_regions_are_independent_sigmoids_and_exclusive_a_softmax():
    for mode, sums_to_one in (("regions", False), ("exclusive", True)):
        model = build_model(config_with_label_mode(demo_config("O-Net"), mode, {"a": 1, "b": 2, "c": 4})).eval()
        with torch.no_grad():
            probabilities, _ = model(torch.randn(1, 4, 64, 64, 40), torch.rand(1, 50, 3) * 39)
        assert torch.allclose(probabilities.sum(-1), torch.ones(1, 50)) == sums_to_one


# ---------------------------------------------------------------- loss


def test_region_loss_is_the_bce_of_every_region():
    occupancy = torch.tensor([[[0.5, 0.25, 0.5], [0.5, 0.5, 0.75]]])  # [1, 2, 3]
    labels = torch.tensor([[[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]])
    total, point_loss, auxiliary = training_loss(occupancy, labels, None, None, 0.1)
    expected = (4 * math.log(2) - math.log(0.75) - math.log(0.25)) / 6
    assert point_loss.item() == pytest.approx(expected) and auxiliary is None


def test_exclusive_loss_is_the_cross_entropy_of_the_softmax():
    occupancy = torch.tensor([[[0.5, 0.25, 0.25, 0.0], [0.1, 0.1, 0.1, 0.7]]])  # [1, 2, 4] background + 3
    labels = torch.tensor([[[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]])
    segmentation, target = torch.full((1, 3, 2, 2, 2), 0.5), torch.ones(1, 3, 2, 2, 2)
    total, point_loss, auxiliary = training_loss(occupancy, labels, segmentation, target, 0.1, exclusive=True)
    assert point_loss.item() == pytest.approx((-math.log(0.25) - math.log(0.7)) / 2)
    assert total.item() == pytest.approx(point_loss.item() + 0.1 * math.log(2))


def test_shape_mismatch_is_an_error_not_a_broadcast():
    with pytest.raises(ValueError, match=r"occupancy has shape \[1, 2, 3\] but the point labels have shape \[1, 2, 1\]"):
        training_loss(torch.full((1, 2, 3), 0.5), torch.ones(1, 2, 1), None, None, 0.1)
    with pytest.raises(ValueError, match=r"segmentation has shape \[1, 3, 2, 2, 2\] but the segmentation target"):
        training_loss(torch.full((1, 2, 3), 0.5), torch.ones(1, 2, 3), torch.full((1, 3, 2, 2, 2), 0.5),
                      torch.ones(1, 1, 2, 2, 2), 0.1)


def test_segmentation_target_has_a_channel_per_region():
    target = REGIONS.segmentation_target(brats_label()[None], (3, 3, 3))  # [1, 3, 3, 3, 3], cells of 4^3
    assert target.shape == (1, 3, 3, 3, 3)
    assert target[0].sum(dim=(1, 2, 3)).tolist() == [27, 1, 1]  # WT (2..9) reaches every cell, TC and ET the centre


# ---------------------------------------------------------------- sampling


def test_every_region_has_its_own_border_band():
    label = torch.zeros(40, 40, 40, dtype=torch.uint8)
    label[2:38, 2:38, 2:38] = 2  # WT boundary far (> 7 voxels) from the core
    label[17:23, 17:23, 17:23] = 4  # ET = TC: a boundary deep inside WT
    bands = class_border_bands(REGIONS, label)  # [3, *S]
    whole = compute_border(label)
    assert bands.shape == (3, 40, 40, 40) and not whole[20, 20, 20] and bands[1, 20, 20, 20]  # the core's, not WT's
    assert np.array_equal(bands[0], whole) and np.array_equal(bands[1], bands[2])  # TC = ET here
    assert not (bands[2] & ~compute_border(label == 4)).any()  # ET's band: the paper's band of ET, cut at the margin


def test_class_border_bands_stay_within_the_margin_of_their_class():
    """The paper's band reaches 6 voxels beyond a region; a K-class band stops CLASS_BAND_MARGIN voxels out."""
    label = torch.zeros(40, 40, 40, dtype=torch.uint8)
    label[14:26, 14:26, 14:26] = 2
    label[17:23, 17:23, 17:23] = 4
    bands = class_border_bands(REGIONS, label)
    whole = compute_border(label)
    assert whole[20, 20, 8] and not bands[0, 20, 20, 8]  # 6 voxels out of WT: the paper's band only
    assert bands[0, 20, 20, 14 - CLASS_BAND_MARGIN] and not bands[0, 20, 20, 13 - CLASS_BAND_MARGIN]
    assert bands[2, 20, 20, 17 - CLASS_BAND_MARGIN] and not bands[2, 20, 20, 16 - CLASS_BAND_MARGIN]  # ET's own margin
    assert np.array_equal(class_border_bands(LabelScheme(), label), whole[None])  # binary: the paper's band


def test_dataset_items_draw_border_points_from_every_region_in_equal_shares(synthetic_brats_root):
    config = config_with_label_mode(demo_config("C"), "regions")
    cases = discover("brats", synthetic_brats_root, "train")[:1]
    item = OSSNetDataset(cases, config, samples=2048, border_balance=1.0, seed=3)[0]
    label = item["label"].long()
    assert item["labels"].shape == (2048, 3) and set(torch.unique(label).tolist()) <= {0, 1, 2, 4}
    assert torch.equal(item["labels"], REGIONS.point_targets(label, item["coords"]))
    bands = torch.from_numpy(class_border_bands(REGIONS, label))  # [3, *S]
    index = item["coords"].round().long()
    inside = bands[:, index[:, 0], index[:, 1], index[:, 2]]  # [3, 2048]: which band each point lies in
    assert bool(inside.any(dim=0).all())  # every point drawn from a band
    assert inside[2].sum() >= 2048 // 3  # the small ET band gets its third (its points may lie in the others too)


def test_sampling_shares_the_border_points_between_bands():
    bands = torch.zeros(2, 10, 10, 10, dtype=torch.bool)
    bands[0, :5] = True  # 500 voxels
    bands[1, 9, 9, :4] = True  # 4 voxels: all of them, the rest of its share drawn uniformly
    points = sample_coordinates((10, 10, 10), bands, 20, 1.0, torch.Generator().manual_seed(0)).long()
    in_small = (points[:, 0] == 9) & (points[:, 1] == 9) & (points[:, 2] < 4)
    assert int(in_small.sum()) == 4 and int((points[:, 0] < 5).sum()) >= 10


def test_a_training_label_with_a_value_of_no_class_is_refused():
    """The dataset's readers check BraTS/LiTS values; a label mode with fewer classes checks its own."""
    label = brats_label().numpy()
    scheme = LabelScheme("exclusive", (("edema", (2,)), ("enhancing", (4,))))  # no class for necrosis (1)
    with pytest.raises(LabelValueError, match=r"seg\.nii\.gz: label values \[1\] belong to no exclusive class"):
        class_label_and_border(scheme, label, None, "seg.nii.gz")
    same, band = class_label_and_border(REGIONS, label, torch.zeros(label.shape, dtype=torch.bool), "seg.nii.gz")
    assert torch.equal(same, torch.from_numpy(label)) and np.array_equal(band.numpy(), class_border_bands(REGIONS, label))


# ---------------------------------------------------------------- refinement through the predictor


class RegionOracle(nn.Module):
    """A K-output model whose decoder reads a fixed dense field [outputs, *volume_shape]."""

    kind = "test_region_oracle"

    def __init__(self, config: OSSNetConfig, field: torch.Tensor) -> None:
        super().__init__()
        self.config = config
        self.field = field
        self.anchor = nn.Parameter(torch.zeros(()))  # the predictor reads the device from the parameters

    def encode(self, volume: torch.Tensor) -> Encoding:
        foreground = self.field[-3:] if self.config.label_mode == "regions" else self.field[1:]
        segmentation = F.adaptive_max_pool3d((foreground > 0.5).float()[None], self.config.encoder_output_shape)
        return Encoding(volume.new_zeros(1, self.config.number_of_latents, self.config.latent_size), segmentation)

    def fold(self, encoding: Encoding) -> Encoding:  # nothing to fold
        return encoding

    def decode(self, coords, encoding, patches=None, logits=False):  # [1, N, 3] -> [1, N, K]
        index = coords[0].round().long()
        return self.field[:, index[:, 0], index[:, 1], index[:, 2]].t()[None]


def soft_balls(shape, centre, radii) -> torch.Tensor:
    """[len(radii), *shape] soft nested balls (probability 1/2 on each sphere)."""
    grid = torch.stack(torch.meshgrid(*[torch.arange(s, dtype=torch.float32) for s in shape], indexing="ij"), dim=-1)
    distance = (grid - torch.tensor(centre)).norm(dim=-1)
    return torch.stack([torch.sigmoid(2.0 * (r - distance)) for r in radii])


@pytest.mark.parametrize("mode", ["standard", "prior"])
@pytest.mark.parametrize("label_mode", ["regions", "exclusive"])
def test_refinement_equals_dense_thresholding_per_class(mode, label_mode):
    config = config_with_label_mode(demo_config("C"), label_mode, {"a": 1, "b": 2, "c": 4})
    balls = soft_balls(config.volume_shape, (30.0, 28.0, 20.0), (13.5, 8.3, 4.6))
    if label_mode == "exclusive":  # a softmax-like field: shells of classes 1..3 around each other
        inner = torch.cat([balls[1:], torch.zeros_like(balls[:1])])
        shells = (balls - inner).clamp(min=0)
        field = torch.cat([(1 - balls[0])[None], shells])
    else:
        field = balls
    predictor = Predictor(RegionOracle(config, field), PredictOptions(mode=mode))
    prediction = predictor.predict(torch.zeros(4, *config.volume_shape))
    assert prediction.occupancy.shape == field.shape
    assert torch.equal(prediction.occupancy > 0.5, field > 0.5)
    assert prediction.points_evaluated < 0.5 * field[0].numel()


# ---------------------------------------------------------------- validation during training


def test_sampled_and_dense_validation_score_every_region():
    """A model right on WT and TC and silent on ET scores Dice 1, 1, 0 per region and 2/3 as their mean."""
    from oss_net.training.validation import dense_validation, sampled_validation

    config = config_with_label_mode(demo_config("C"), "regions")
    label = torch.zeros(config.volume_shape, dtype=torch.uint8)
    label[20:44, 20:44, 8:32] = 2
    label[26:38, 26:38, 14:26] = 1
    label[29:35, 29:35, 17:23] = 4
    field = REGIONS.targets(label)  # [3, *S]
    field[2] = 0.0  # no ET anywhere
    model = RegionOracle(config, field)
    coords = torch.stack(torch.meshgrid(*[torch.arange(16, 48, 2.0)] * 2, torch.arange(4, 36, 2.0), indexing="ij"),
                         dim=-1).reshape(-1, 3)  # [S, 3] a lattice over the tumour and around it
    sample = {"volume": torch.zeros(4, *config.volume_shape), "coords": coords,
              "labels": REGIONS.point_targets(label, coords)}
    sampled = sampled_validation(model, [sample, sample], torch.device("cpu"), "off")
    assert sampled["val/sampled_dice_WT"] == pytest.approx(1.0) and sampled["val/sampled_dice_TC"] == pytest.approx(1.0)
    assert sampled["val/sampled_dice_ET"] == 0.0 and sampled["val/sampled_iou_ET"] == 0.0
    assert sampled["val/sampled_dice"] == pytest.approx(2 / 3) and sampled["val/sampled_iou"] == pytest.approx(2 / 3)
    case = SimpleNamespace(image=np.zeros((4, *config.volume_shape), dtype=np.float32), raw_label=label.numpy(),
                           label=label.numpy())
    dense = dense_validation(model, [case], "off")
    assert dense["val/dense_dice_model_grid_WT"] == pytest.approx(1.0) and dense["val/dense_dice_model_grid_ET"] == 0.0
    assert dense["val/dense_dice_model_grid"] == pytest.approx(
        sum(dense[f"val/dense_dice_model_grid_{name}"] for name in REGIONS.names) / 3)


# ---------------------------------------------------------------- writers


def test_region_case_files_round_trip_the_brats_labels(synthetic_brats_root, tmp_path):
    """A perfect region prediction is written as the case's own 0/1/2/4 label map, with a probability
    map and meshes per region and per-region metrics of 1."""
    config = config_with_label_mode(demo_config("C"), "regions")
    files = discover("brats", synthetic_brats_root, "val")[0]
    case = load_case(files, config, with_border=False)
    probabilities = REGIONS.targets(torch.from_numpy(np.asarray(case.raw_label).astype(np.int64)))  # [3, *S]
    prediction = Prediction(occupancy=probabilities, mode="standard", seconds=0.1, points_evaluated=7,
                            runs={"standard": {"seconds": 0.1, "points_evaluated": 7}})
    settings = InferenceSettings(load_model="unused.pt", dataset_path=str(synthetic_brats_root), save_probabilities=True,
                                 mesh_format=("ply",), overlay=True)
    record = CaseWriter(SimpleNamespace(config=config), settings.write_options()).write(tmp_path, files, case, prediction)
    from matplotlib.colors import to_rgb
    from matplotlib.image import imread

    from oss_net.meshing.overlay import CLASS_COLOURS

    pixels = imread(tmp_path / f"{files.case_id}_overlay.png")[..., :3]  # [h, w, 3]: one outline colour per region
    for colour in CLASS_COLOURS[:3]:  # WT, TC, ET
        assert (np.abs(pixels - np.asarray(to_rgb(colour))).max(axis=-1) < 0.05).sum() > 20
    written = np.asarray(nib.load(str(tmp_path / f"{files.case_id}_mask.nii.gz")).dataobj)
    original = np.asarray(nib.load(str(files.label)).dataobj)
    assert set(np.unique(original).tolist()) == {0, 1, 2, 4} and np.array_equal(written, original)
    for name in ("WT", "TC", "ET"):
        assert (tmp_path / f"{files.case_id}_probability_{name}.nii.gz").is_file()
        assert (tmp_path / f"{files.case_id}_occupancy_{name}.nii.gz").is_file()
        assert (tmp_path / f"{files.case_id}_{name}_prediction.ply").is_file()
        assert (tmp_path / f"{files.case_id}_{name}_label.ply").is_file()
        assert record[f"dice_{name}"] == pytest.approx(1.0)
    assert record["dice"] == pytest.approx(1.0) and record["label_mode"] == "regions"


# ---------------------------------------------------------------- the regions demo, end to end


@pytest.mark.slow
def test_regions_demo_trains_predicts_and_prints_a_region_table(tmp_path, capsys):
    from oss_net.demo import main

    out = tmp_path / "demo"
    assert main(["--output_dir", str(out), "--cases", "3", "--epochs", "1", "--max_iterations", "1",
                 "--training_samples", "256", "--label_mode", "regions"]) == 0
    printed = capsys.readouterr().out
    table = printed[printed.index("per class / region"):].splitlines()
    assert [line.split()[0] for line in table[2:]] == ["WT", "TC", "ET"]
    summary = json.loads((out / "inference" / "summary.json").read_text())
    assert {"dice_WT", "dice_TC", "dice_ET", "iou_ET"} <= set(summary[-1])  # (an undefined HD95 mean is left out)
    case = summary[0]["case"]
    folder = out / "inference" / case
    mask = np.asarray(nib.load(str(folder / f"{case}_mask.nii.gz")).dataobj)
    assert set(np.unique(mask).tolist()) <= {0, 1, 2, 4}
    assert all((folder / f"{case}_{name}_prediction.obj").is_file() for name in ("WT", "TC", "ET"))
