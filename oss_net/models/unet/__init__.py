"""The paper's dense baselines: a 3D residual U-Net and a 2D residual U-Net that segments slice by slice.

Why our own modules and not ``monai.networks.nets.UNet``: MONAI is the field's library, but here the
baselines exist to be *compared* with OSS-Net, above all in memory (paper Table 2). That comparison is
only fair when the U-Nets use the same building parts as the OSS-Net encoder (3^3 convolutions,
BatchNorm, one Padé activation per site, residual blocks) and when we know exactly which tensor each
layer keeps for backward. MONAI's UNet fixes its own block layout (a strided first convolution,
PReLU/instance norm by default, and a residual unit whose shortcut we cannot choose), and MONAI is only a
test dependency of this project, so a training run would need an extra package. The modules here are
about a hundred lines and give full control over widths, activation, normalisation and padding.

    unet_config.py UNetConfig, get_unet_config, the U-Net names (is_unet_name, canonical_network_name)
    blocks.py   ResidualBlock and ResidualUNet, the body shared by both dimensionalities
    nets.py     UNet3D, UNet2D (training_pair / forward / predict_volume), build_unet, the "unet" model kind
    loss.py     segmentation_loss: BCE + soft Dice on logits

    config = get_unet_config("unet3d", "brats")             # 256x256x160, channels 16..256
    model = build_unet(config)
    inputs, target = model.training_pair(volume, label)     # [B, C, *grid], [B, 1, *grid]
    loss = segmentation_loss(model(inputs), target)         # BCE + soft Dice on logits
    probs = model.predict_volume(volume)                    # [B, 1, *volume_shape] in [0, 1]
"""
from .blocks import ResidualBlock, ResidualUNet
from .unet_config import (
    ACTIVATIONS,
    LITS_UNET3D_INPUT_SHAPE,
    NORMALIZATIONS,
    UNET_NAMES,
    UNetConfig,
    canonical_network_name,
    get_unet_config,
    is_unet_name,
)
from .loss import segmentation_loss
from .nets import UNet2D, UNet3D, build_unet

__all__ = [
    "ACTIVATIONS",
    "LITS_UNET3D_INPUT_SHAPE",
    "NORMALIZATIONS",
    "UNET_NAMES",
    "ResidualBlock",
    "ResidualUNet",
    "UNet2D",
    "UNet3D",
    "UNetConfig",
    "build_unet",
    "canonical_network_name",
    "get_unet_config",
    "is_unet_name",
    "segmentation_loss",
]
