"""A PNG of three orthogonal slices with the label and prediction outlined, for a quick look."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from oss_net.io import atomic_write
from oss_net.meshing.errors import MeshingError

# (fixed axis, horizontal axis, vertical axis, title): with a RAS affine these are the sagittal,
# coronal and axial planes, drawn with the vertical axis pointing up.
PLANES = ((0, 1, 2, "axis 0 (sagittal)"), (1, 0, 2, "axis 1 (coronal)"), (2, 0, 1, "axis 2 (axial)"))
LABEL_COLOUR, PREDICTION_COLOUR = "lime", "red"


def _as_volume(array: Any, name: str, shape: tuple[int, ...] | None) -> np.ndarray:
    if hasattr(array, "detach"):
        array = array.detach().float().cpu().numpy()
    volume = np.asarray(array)
    if volume.ndim != 3 or (shape is not None and volume.shape != shape):
        expected = "a 3-D grid [D, H, W]" if shape is None else f"shape {shape}"
        raise MeshingError(f"overlay: {name} must have {expected}, got {volume.shape}")
    return volume


def slice_centre(masks: Sequence[np.ndarray], shape: tuple[int, ...]) -> tuple[int, int, int]:
    """Voxel index of the three slices: the centre of the masks' bounding box, or the volume's middle."""
    union = np.zeros(shape, dtype=bool)
    for mask in masks:
        union |= mask
    if not union.any():
        return tuple(size // 2 for size in shape)  # type: ignore[return-value]
    return tuple(int((idx.min() + idx.max()) // 2) for idx in np.nonzero(union))  # type: ignore[return-value]


def overlay_png(
    image: Any,
    label: Any | None,
    prediction: Any | None,
    path: str | os.PathLike,
    spacing: Sequence[float] | None = None,
) -> Path:
    """Write a PNG of three orthogonal slices of `image` with `label` and `prediction` outlined.

    Args:
        image: intensities [D, H, W] (one channel; numpy or torch), shown in grey between its 1st
            and 99th percentiles.
        label, prediction: masks [D, H, W] (non-bool > 0.5) or None; outlined in green and red.
        path: the .png to write (atomically).
        spacing: mm per voxel along each axis, for the pixel aspect ratio (square pixels if None).

    The slices pass through the centre of the bounding box of label ∪ prediction, so a small
    object is visible; with both empty they are the volume's mid-slices. Returns the path.
    """
    volume = _as_volume(image, "image", None).astype(np.float32)
    masks = {
        name: _as_volume(mask, name, volume.shape) > 0.5
        for name, mask in (("label", label), ("prediction", prediction))
        if mask is not None
    }
    steps = np.ones(3) if spacing is None else np.asarray(spacing, dtype=np.float64)
    low, high = np.percentile(volume, (1, 99))
    centre = slice_centre(list(masks.values()), volume.shape)

    figure = Figure(figsize=(12, 4.4), dpi=100)
    FigureCanvasAgg(figure)
    for column, (fixed, across, up, title) in enumerate(PLANES):
        axes = figure.add_subplot(1, 3, column + 1)
        index = [slice(None)] * 3
        index[fixed] = centre[fixed]
        plane = volume[tuple(index)].T  # rows run along `up`, columns along `across`
        axes.imshow(plane, cmap="gray", vmin=low, vmax=max(high, low + 1e-6), origin="lower",
                    aspect=steps[up] / steps[across], interpolation="nearest")
        for name, colour in (("label", LABEL_COLOUR), ("prediction", PREDICTION_COLOUR)):
            if name in masks:
                outline = masks[name][tuple(index)].T
                if outline.any() and not outline.all():
                    axes.contour(outline.astype(np.float32), levels=[0.5], colors=colour, linewidths=1.0)
        axes.set_title(f"{title} = {centre[fixed]}", fontsize=10)
        axes.set_axis_off()
    figure.suptitle(f"label ({'green' if 'label' in masks else 'none'}), "
                    f"prediction ({'red' if 'prediction' in masks else 'none'})", fontsize=11)
    target = Path(path)
    with atomic_write(target, "wb") as handle:
        figure.savefig(handle, format="png")
    return target
