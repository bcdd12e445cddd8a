"""The model registry: one kind per config class, and `is_dense`, the one "is this a U-Net baseline" check."""
from __future__ import annotations

import pytest

from oss_net.models import ConfigError, build_model, demo_config, get_unet_config, is_dense
from oss_net.models.unet import UNet2D


def test_is_dense_tells_the_baselines_from_oss_net():
    unet_config = get_unet_config("unet2d", "brats", volume_shape=(8, 8, 4), channels=(2, 4), strides=(2,))
    unet = build_model(unet_config)
    assert isinstance(unet, UNet2D)
    assert is_dense(unet_config) and is_dense(unet)
    oss_net_config = demo_config("C", "brats")
    assert not is_dense(oss_net_config) and not is_dense(build_model(oss_net_config))


def test_unregistered_config_is_an_error_naming_the_kinds():
    with pytest.raises(ConfigError, match=r"no model is registered for dict; known kinds: .*oss_net.*unet"):
        is_dense({"name": "full"})
