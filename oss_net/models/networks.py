"""Any network by name: an OSS-Net configuration or a U-Net baseline, at full size or at the demo size.

    network_config("C", "brats")                 # get_config("C", "brats")
    network_config("UNet-3D", "lits", demo=True) # the demo U-Net on the demo OSS-Net grid
    network_config("C", "nnunet", fingerprint=fp) # any other dataset: channels and grid from its fingerprint
"""
from __future__ import annotations

from typing import Any

from oss_net.datasets import PAPER_DATASETS, Fingerprint, canonical_dataset, model_grid_shape

from .config import DEMO_ENCODER_BLOCKS, NEW_DATASET_ENCODER_WIDTHS, ConfigError, OSSNetConfig, demo_config, get_config
from .unet import UNetConfig, get_unet_config, is_unet_name

# The demo U-Nets: the demo OSS-Net grid and three narrow levels, so a CPU training step takes about a second.
DEMO_UNET_OVERRIDES: dict[str, Any] = {"channels": (8, 16, 32), "strides": (2, 2)}
DEMO_LARGEST_AXIS = 64  # the demo grid of a dataset without a paper configuration: its largest axis, as BraTS's demo


def network_config(name: str, dataset: str, demo: bool = False, fingerprint: Fingerprint | None = None,
                   volume_shape: tuple[int, int, int] | None = None) -> OSSNetConfig | UNetConfig:
    """The configuration of network `name` (OSS-Net or U-Net, any accepted spelling) for `dataset`.

    demo=True gives the small CPU preset: `demo_config` for OSS-Net, and for a U-Net the demo OSS-Net
    grid with `DEMO_UNET_OVERRIDES`. A dataset other than BraTS and LiTS needs its `fingerprint`: OSS-Net
    with its channels and the grid `volume_shape`, or else `model_grid_shape` of the fingerprint
    (demo: scaled so the largest axis is `DEMO_LARGEST_AXIS`).
    """
    if canonical_dataset(dataset) not in PAPER_DATASETS:
        return _fingerprint_config(name, canonical_dataset(dataset), demo, fingerprint, volume_shape)
    if is_unet_name(name):
        overrides = {**DEMO_UNET_OVERRIDES, "volume_shape": demo_config("C", dataset).volume_shape} if demo else {}
        return get_unet_config(name, dataset, **overrides)
    return demo_config(name, dataset) if demo else get_config(name, dataset)


def _fingerprint_config(name: str, dataset: str, demo: bool, fingerprint: Fingerprint | None,
                        volume_shape: tuple[int, int, int] | None) -> OSSNetConfig:
    if fingerprint is None:
        raise ConfigError(f"dataset {dataset!r} has no paper configuration: its fingerprint decides the model grid "
                          "and channels (oss_net.data.fingerprint.compute_fingerprint)")
    if is_unet_name(name):
        raise ConfigError(f"the U-Net baselines exist for {', '.join(PAPER_DATASETS)} only, not {dataset!r}")
    blocks = DEMO_ENCODER_BLOCKS if demo else len(NEW_DATASET_ENCODER_WIDTHS)
    divisor = 2 ** (blocks + 1)  # the encoder input halves the grid, then every block halves it again
    if volume_shape is None:
        volume_shape = model_grid_shape(fingerprint, divisor, largest=DEMO_LARGEST_AXIS if demo else None)
    fields = {"in_channels": fingerprint.num_channels, "volume_shape": tuple(volume_shape), "fingerprint": fingerprint}
    return demo_config(name, dataset, **fields) if demo else get_config(name, dataset, **fields)
