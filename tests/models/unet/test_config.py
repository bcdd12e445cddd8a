"""U-Net configurations: presets, round trips, the one spelling of network names, clear errors."""
from __future__ import annotations

import json

import pytest
import torch

from oss_net.models import (DEMO_UNET_OVERRIDES, ConfigError, ModelInputError, demo_config, get_config,
                            network_config)
from oss_net.models.unet import UNetConfig, build_unet, canonical_network_name, get_unet_config, is_unet_name

ODD_GRID = (13, 10, 7)
TINY = {"volume_shape": ODD_GRID, "channels": (4, 8, 8), "strides": (2, 2)}


def test_config_round_trip_and_defaults():
    config = get_unet_config("UNet3D", "LiTS")
    assert config.input_shape == (224, 224, 224) and config.volume_shape == (512, 512, 512)
    assert get_unet_config("unet3d", "lits", volume_shape=(32, 32, 32)).network_shape == (32, 32, 32)
    assert get_unet_config("unet2d", "brats").slice_axis == 2
    for name in ("unet3d", "unet2d"):
        original = get_unet_config(name, "brats", channels=(8, 16, 32), strides=(2, 2))
        assert UNetConfig.from_dict(json.loads(json.dumps(original.to_dict()))) == original


def test_bad_configurations_raise_clear_errors():
    with pytest.raises(ConfigError, match="unknown U-Net configuration 'unet4d'"):
        get_unet_config("unet4d", "brats")
    with pytest.raises(ConfigError, match=r"strides must be 2 positive factors \(len\(channels\) - 1\)"):
        get_unet_config("unet3d", "brats", channels=(4, 8, 16), strides=(2,))
    with pytest.raises(ConfigError, match="slice_axis must be 0, 1 or 2, got 3"):
        get_unet_config("unet2d", "brats", slice_axis=3)
    with pytest.raises(ConfigError, match=r"unknown fields \['width'\]"):
        UNetConfig.from_dict({**get_unet_config("unet2d", "brats").to_dict(), "width": 3})
    model = build_unet(get_unet_config("unet3d", "brats", **TINY))
    with pytest.raises(ModelInputError, match=r"expects volumes \[B, 4, 13, 10, 7\], got \(1, 1, 13, 10, 7\)"):
        model.predict_volume(torch.zeros(1, 1, *ODD_GRID))


def test_network_names_have_one_spelling():
    assert canonical_network_name("UNet-3D") == "unet3d" and canonical_network_name(" unet_2d ") == "unet2d"
    assert canonical_network_name("C") == "full"  # OSS-Net names go through the Table-1 aliases
    assert is_unet_name("UNet2D") and not is_unet_name("full") and not is_unet_name(None)
    with pytest.raises(ConfigError, match="unknown configuration 'unet4d'"):
        canonical_network_name("unet4d")


def test_network_config_builds_either_kind_at_full_or_demo_size():
    unet = network_config("UNet-3D", "LiTS", demo=True)
    assert isinstance(unet, UNetConfig) and unet.channels == DEMO_UNET_OVERRIDES["channels"]
    assert unet.volume_shape == demo_config("C", "lits").volume_shape and unet.input_shape is None
    assert network_config("unet3d", "lits").input_shape == (224, 224, 224)
    assert network_config("C", "brats") == get_config("C", "brats")
    assert network_config("C", "brats", demo=True) == demo_config("C", "brats")
