"""Configurations: names and aliases, the derived sizes of docs/reference.md §1.2 and §2.4, validation errors."""
from __future__ import annotations

import dataclasses

import pytest

from oss_net.datasets import PAPER_DATASETS
from oss_net.models import CONFIG_NAMES, ConfigError, OSSNetConfig, demo_config, get_config

# Decoder input width (BraTS, LiTS) of docs/reference.md §1.2.
DECODER_INPUT_WIDTHS = {
    "vanilla_o_net": (323, 515),
    "vanilla_o_net_wide": (323, 515),
    "A": (666, 858),
    "B": (666, 858),
    "C1": (666, 858),
    "C2": (666, 858),
    "D1": (698, 890),
    "D2": (698, 890),
    "E1": (666, 858),
    "E2": (666, 858),
    "full": (666, 858),
    "full2": (666, 858),
}


def test_every_name_has_a_config_for_both_datasets() -> None:
    assert set(DECODER_INPUT_WIDTHS) == set(CONFIG_NAMES)
    assert PAPER_DATASETS == ("brats", "lits")


@pytest.mark.parametrize("name", CONFIG_NAMES)
def test_decoder_input_widths_match_the_reference(name: str) -> None:
    brats, lits = (get_config(name, dataset) for dataset in PAPER_DATASETS)
    assert (brats.decoder_input_width, lits.decoder_input_width) == DECODER_INPUT_WIDTHS[name]


def test_derived_shapes_at_paper_sizes() -> None:
    brats = get_config("full", "brats")
    lits = get_config("full", "lits")
    assert brats.volume_shape == (256, 256, 160) and lits.volume_shape == (512, 512, 512)
    assert brats.encoder_input_shape == (128, 128, 80) and lits.encoder_input_shape == (256, 256, 256)
    assert brats.encoder_output_shape == (8, 8, 5) and lits.encoder_output_shape == (8, 8, 8)
    assert (brats.latent_size, lits.latent_size) == (320, 512)
    assert (brats.number_of_latents, get_config("A", "brats").number_of_latents) == (6, 1)
    assert (brats.patch_channels, get_config("full2", "brats").patch_channels) == (4, 8)
    assert (lits.patch_channels, get_config("full2", "lits").patch_channels) == (1, 2)
    assert get_config("O-Net", "lits").patch_channels == 0


@pytest.mark.parametrize(
    "alias, canonical",
    [("O-Net", "vanilla_o_net_wide"), ("C", "full"), ("D", "full2"), ("A", "A"), ("b", "B"), ("o-net", "vanilla_o_net_wide"), ("FULL2", "full2")],
)
def test_table1_aliases_and_case_insensitive_names(alias: str, canonical: str) -> None:
    assert get_config(alias, "BraTS") == get_config(canonical, "brats")
    assert get_config(alias, "LiTS").name == canonical


def test_variant_flags() -> None:
    full2 = get_config("D", "brats")
    assert (full2.encoder, full2.segmentation_head, full2.large_patches) == ("skip", True, True)
    e1 = get_config("E1", "brats")
    assert (e1.encoder, e1.segmentation_head, e1.large_patches) == ("plain", True, False)
    assert get_config("D1", "lits").fourier_features and not get_config("A", "lits").fourier_features
    assert get_config("vanilla_o_net", "brats").decoder_width == 256
    assert get_config("C1", "brats").segmentation_head is False


def test_bad_name_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown configuration 'F'; valid names: vanilla_o_net, .*full2 \(Table-1 aliases: O-Net->vanilla_o_net_wide"):
        get_config("F", "brats")
    with pytest.raises(ConfigError, match=r"unknown dataset 'kits'; valid datasets: brats, lits"):
        get_config("A", "kits")
    with pytest.raises(ConfigError, match=r"unknown configuration fields \['width'\]"):
        get_config("A", "brats", width=3)


def test_overrides_revalidate_and_derive() -> None:
    config = get_config("C", "brats", volume_shape=[128, 128, 80], decoder_width=64)
    assert config.volume_shape == (128, 128, 80) and config.encoder_output_shape == (4, 4, 2) and config.latent_size == 32
    with pytest.raises(ConfigError, match=r"volume_shape \(16, 16, 16\) with 4 encoder blocks gives an empty encoder output \(0, 0, 0\)"):
        get_config("A", "brats", volume_shape=(16, 16, 16))
    with pytest.raises(ConfigError, match="large_patches needs patches=True"):
        get_config("O-Net", "brats", large_patches=True)
    with pytest.raises(ConfigError, match="the first encoder block takes 4 channels but in_channels is 1"):
        get_config("A", "brats", in_channels=1)
    with pytest.raises(ConfigError, match="cbn_normalization must be one of"):
        get_config("A", "brats", cbn_normalization="group")


def test_demo_config_is_small_and_not_degenerate() -> None:
    config = demo_config()
    assert config.name == "full" and config.dataset == "brats"
    assert config.volume_shape == (64, 64, 40) and config.decoder_width == 128
    assert config.encoder_channels == ((4, 16), (16, 32), (32, 64))
    assert config.encoder_output_shape == (4, 4, 2) and config.latent_size == 32
    assert demo_config("A", "lits").encoder_output_shape == (4, 4, 4)


def test_dict_round_trip_and_unknown_fields() -> None:
    config = get_config("D2", "lits", raw_coordinates=True)
    data = config.to_dict()
    assert data["volume_shape"] == [512, 512, 512] and data["encoder_channels"][0] == [1, 8]
    assert OSSNetConfig.from_dict(data) == config
    with pytest.raises(ConfigError, match=r"unknown fields \['colour'\] and misses fields \['name'\]"):
        OSSNetConfig.from_dict({**{k: v for k, v in data.items() if k != "name"}, "colour": 1})


def test_config_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        get_config("A", "brats").decoder_width = 3  # type: ignore[misc]
