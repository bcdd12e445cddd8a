"""The command line: every original flag, the new ones, presets and the paper's names."""
from __future__ import annotations

import pytest
import torch

from oss_net.data import DatasetError
from oss_net.io import OSSNetError
from oss_net.models import get_config
from oss_net.training import build_parser, settings_from_args
from oss_net.training.settings import SettingsError, learning_rate, lr_milestones, resolve_settings


def parse(*argv: str):
    return settings_from_args(build_parser().parse_args(list(argv)))


def test_every_original_flag_is_parsed_with_its_meaning():
    settings = parse(
        "--train", "--test", "--cuda_devices", "0, 1", "--cpu", "--epochs", "7", "--batch_size", "3",
        "--training_samples", "512", "--load_model", "weights.pt", "--segmentation_loss_factor", "0.25",
        "--network_config", "full2", "--dataset", "LITS", "--dataset_path", "/data/lits", "--uniform_sampling",
    )
    assert (settings.train, settings.test, settings.cpu, settings.uniform_sampling) == (True, True, True, True)
    assert settings.cuda_devices == "0,1"
    assert (settings.epochs, settings.batch_size, settings.training_samples) == (7, 3, 512)
    assert settings.load_model == "weights.pt"
    assert settings.segmentation_loss_factor == 0.25
    assert (settings.network_config, settings.dataset, settings.dataset_path) == ("full2", "lits", "/data/lits")
    assert settings.border_balance == 0.0  # --uniform_sampling


def test_new_flags_are_parsed():
    settings = parse(
        "--output_dir", "out", "--seed", "5", "--amp", "bf16",
        "--num_workers", "2", "--val_every", "3", "--border_balance", "0.3", "--lr", "1e-3", "--pau_lr", "2e-2",
        "--max_iterations", "9", "--checkpoint_every", "4", "--keep_last", "2", "--val_samples", "256",
        "--no_dense_validation", "--no_augmentation", "--checkpoint_activations",
    )
    assert settings.output_dir == "out" and settings.seed == 5 and settings.amp == "bf16"
    assert (settings.num_workers, settings.val_every, settings.border_balance) == (2, 3, 0.3)
    assert (settings.lr, settings.pau_lr) == (1e-3, 2e-2)
    assert (settings.max_iterations, settings.checkpoint_every, settings.keep_last, settings.val_samples) == (9, 4, 2, 256)
    assert settings.dense_validation is False and settings.augment is False
    assert settings.checkpoint_activations is True


def test_continuous_sampling_is_a_stored_run_setting_off_by_default_and_refused_in_paper_mode():
    assert parse("--train").continuous_sampling is False
    settings = parse("--train", "--continuous_sampling")
    assert settings.continuous_sampling is True and settings.to_dict()["continuous_sampling"] is True
    with pytest.raises(SettingsError, match="continuous_sampling is not the original's sampling"):
        parse("--train", "--paper", "--continuous_sampling")


def test_paper_defaults_per_dataset():
    brats, lits = parse("--train"), parse("--train", "--dataset", "LiTS")
    assert (brats.batch_size, brats.training_samples, brats.epochs, brats.val_every) == (8, 2**14, 50, 5)
    assert (brats.val_samples, brats.val_border_balance) == (2**17, 0.0)
    assert (lits.batch_size, lits.val_samples, lits.val_border_balance) == (4, 2**14, 0.4)
    assert brats.border_balance == 0.5  # border-weighted unless --uniform_sampling, as the original
    assert brats.network_config == "full" and brats.segmentation_loss_factor == 0.1 and brats.lr == 3e-4
    assert not brats.checkpoint_activations and not parse("--train", "--paper").checkpoint_activations  # off by default


def test_demo_preset_is_small_and_explicit_flags_win():
    demo = parse("--train", "--demo")
    assert demo.training_samples < 2**14 and demo.val_samples < 2**17 and demo.epochs < 50
    assert parse("--train", "--demo", "--batch_size", "5").batch_size == 5


@pytest.mark.parametrize("alias, canonical", [("O-Net", "vanilla_o_net_wide"), ("A", "A"), ("B", "B"), ("C", "full"), ("D", "full2")])
def test_paper_aliases_accepted(alias, canonical):
    settings = parse("--train", "--network_config", alias, "--dataset", "BraTS")
    assert settings.network_config == canonical
    assert get_config(settings.network_config, settings.dataset).name == canonical


@pytest.mark.parametrize("spelling", ["BraTS", "bra_ts", "bra-ts", "BraTS2020", "brats", "LiTS", "LITS"])
def test_dataset_spellings(spelling):
    assert parse("--dataset", spelling).dataset in ("brats", "lits")


def test_bad_values_raise_one_clear_error():
    with pytest.raises(SettingsError, match="batch_size must be at least 1.*border_balance must lie in"):
        resolve_settings({"batch_size": 0, "border_balance": 2.0})
    with pytest.raises(DatasetError, match="unknown dataset 'kits'"):
        parse("--dataset", "kits")
    with pytest.raises(OSSNetError, match="unknown configuration 'Z'"):
        parse("--network_config", "Z")


def test_lr_milestones_are_40_and_60_percent():
    assert lr_milestones(50) == [20, 30]
    assert lr_milestones(10) == [4, 6]
    assert lr_milestones(5) == [2, 3]
    assert lr_milestones(1) == [1, 1]


def test_learning_rate_decays_tenfold_at_each_milestone():
    lrs = [learning_rate(3e-4, epoch, 50) for epoch in range(50)]
    assert lrs[:20] == [3e-4] * 20
    assert lrs[20] == pytest.approx(3e-5) and lrs[29] == lrs[20]
    assert lrs[30] == pytest.approx(3e-6) and lrs[49] == lrs[30]
    assert learning_rate(1e-2, 30, 50) == pytest.approx(1e-4)


@pytest.mark.parametrize("epochs", [1, 2, 3, 5, 10, 50])
@pytest.mark.parametrize("base_lr", [3e-4, 2e-3, 1e-2, 0.7])
def test_learning_rate_equals_the_former_multisteplr_exactly(epochs, base_lr):
    """Runs made with torch's MultiStepLR(gamma 0.1, stepped per epoch) see the very same floats."""
    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([weight], lr=base_lr)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=lr_milestones(epochs), gamma=0.1)
    for epoch in range(epochs + 2):
        assert learning_rate(base_lr, epoch, epochs) == optimizer.param_groups[0]["lr"], epoch
        optimizer.step()
        scheduler.step()


def test_settings_round_trip_through_dict():
    settings = parse("--train", "--demo", "--seed", "3")
    assert type(settings).from_dict(settings.to_dict()) == settings
    with pytest.raises(SettingsError, match="unknown training settings: bogus"):
        type(settings).from_dict({**settings.to_dict(), "bogus": 1})


def test_the_dataset_is_detected_from_the_folder_when_dataset_is_omitted(tmp_path) -> None:
    from oss_net.data.synthetic_layouts import write_layout_dataset

    root = write_layout_dataset("flare", tmp_path / "flare", cases=2)
    assert resolve_settings({"dataset_path": str(root)}).dataset == "flare"
    assert resolve_settings({"dataset_path": str(tmp_path / "missing")}).dataset == "brats"  # discovery reports it later
    assert resolve_settings({}).dataset == "brats"
    assert resolve_settings({"dataset": "LiTS", "dataset_path": str(root)}).dataset == "lits"  # a given --dataset wins


def test_help_names_every_dataset_layout_and_image_format():
    from oss_net.training.cli import build_parser

    text = " ".join(build_parser().format_help().split())
    assert "BraTS 2020 or LiTS" not in text
    for layout in ("BraTS 2020", "LiTS", "nnU-Net", "Decathlon", "FLARE21"):
        assert layout in text
    assert ".nrrd" in text and ".mha" in text  # nnU-Net datasets in any format read here
