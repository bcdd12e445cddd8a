"""What training draws from a label mode (`oss_net.labels`): each class's border band, an item's checked label,
the auxiliary head's target, and the classes of the dataset being trained on.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from scipy import ndimage

from oss_net.data.borders import compute_border
from oss_net.data.layouts import dataset_info
from oss_net.data.sampling import segmentation_target
from oss_net.labels import LabelScheme, config_with_label_mode, scheme_of

# How far outside its classes the border points of a K-class model may fall, in voxels. The paper's 13³ band
# reaches 6 voxels beyond the largest region, where most border points would otherwise go, leaving few in
# the small inner regions (synthetic BraTS enhancing tumour at border balance 0.5: 2% of the points, 7% with
# this margin).
CLASS_BAND_MARGIN = 3


def class_border_bands(scheme: LabelScheme, label: np.ndarray | torch.Tensor) -> np.ndarray:
    """bool [K, D, H, W]: the border band of each class or region of label [D, H, W], kept within
    CLASS_BAND_MARGIN voxels of its class (binary: [1, D, H, W], the foreground's band, as the paper).

    Training draws its border points from each band in equal shares (`oss_net.data.sampling.sample_coordinates`),
    so a small organ gets as many as the liver: from the union of the bands, a thin pancreas on the synthetic
    FLARE set got 1% of the border points and was never learnt (Dice 0 after 180 steps).
    """
    masks = scheme.class_masks(torch.as_tensor(np.asarray(label))).numpy()  # [K, D, H, W]
    bands = np.stack([compute_border(mask) for mask in masks])
    if scheme.mode == "binary":
        return bands
    for band, mask in zip(bands, masks):
        band &= ndimage.maximum_filter(mask, size=2 * CLASS_BAND_MARGIN + 1)
    return bands


def class_segmentation_target(config: Any, label: torch.Tensor) -> torch.Tensor:
    """The auxiliary head's target [B, K, *encoder_output_shape] of a batch's label maps [B, D, H, W].

    Binary: `sampling.segmentation_target` of the foreground (as the paper); otherwise one channel per
    class or region of `config`'s label mode.
    """
    scheme = scheme_of(config)
    if scheme.mode == "binary":
        return segmentation_target(label, config.encoder_output_shape)
    return scheme.segmentation_target(label, config.encoder_output_shape)


def class_label_and_border(scheme: LabelScheme, raw_label: np.ndarray, border: torch.Tensor | None, source: Any
                           ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A training item's label [D, H, W] uint8 with the dataset's values (checked against the scheme's
    classes, errors naming `source`) and, when a border band is used, the scheme's bands [K, D, H, W]
    instead of the stored foreground band (`class_border_bands`: one per class or region, so points are
    drawn near every class boundary, in equal shares)."""
    raw = np.asarray(raw_label)
    scheme.check_values(raw, source)
    label = torch.from_numpy(raw.astype(np.uint8))
    if border is not None:
        border = torch.from_numpy(class_border_bands(scheme, raw))
    return label, border


def training_label_mode(config: Any, mode: str, dataset: str, root: Any) -> Any:
    """`config_with_label_mode` with the labels of the dataset at `root` (`oss_net.data.layouts.dataset_info`);
    binary returns `config` unchanged without reading anything."""
    if mode == "binary":
        return config
    info = dataset_info(dataset, root)
    return config_with_label_mode(config, mode, dict(info.labels), info.regions_class_order)
