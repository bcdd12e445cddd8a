"""A PNG of three orthogonal slices with the label and prediction outlined, for a quick look."""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from oss_net.io import atomic_write
from oss_net.meshing.errors import MeshingError

# (fixed axis, horizontal axis, vertical axis, title): with a RAS affine these are the sagittal,
# coronal and axial planes, drawn with the vertical axis pointing up.
PLANES = ((0, 1, 2, "axis 0 (sagittal)"), (1, 0, 2, "axis 1 (coronal)"), (2, 0, 1, "axis 2 (axial)"))
LABEL_COLOUR, PREDICTION_COLOUR = "lime", "red"
# One colour per class or region (in the model's order, repeating past the eighth), bright on grey; its
# label is dashed and its prediction solid.
CLASS_COLOURS = ("#ffd700", "#00e5ff", "#ff00ff", "#ff8c00", "#7cfc00", "#1e90ff", "#ff1493", "#ffffff")
CLASS_LINE_STYLES = {"label": ("dashed", 1.0), "prediction": ("solid", 1.5)}  # (style, width in points)
# Nested regions share borders (BraTS: TC's outer border is often ET's): each class is drawn this many points
# wider than the next (at most two steps), so a later class leaves an earlier one's colour visible beside it.
CLASS_WIDTH_STEP, CLASS_WIDTH_STEPS = 1.25, 2

Masks = Any  # a mask [D, H, W] (numpy or torch), or a mapping class name -> mask [D, H, W]


@dataclass(frozen=True)
class Outline:
    """One mask drawn as a contour on each slice."""

    mask: np.ndarray  # bool [D, H, W]
    colour: str
    style: str
    width: float


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


def class_names(label: Masks | None, prediction: Masks | None) -> tuple[str, ...] | None:
    """The class or region names when `label` / `prediction` are mappings name -> mask (None for one mask each)."""
    given = {role: masks for role, masks in (("label", label), ("prediction", prediction)) if masks is not None}
    kinds = {isinstance(masks, Mapping) for masks in given.values()}
    if len(kinds) > 1:
        raise MeshingError("overlay: label and prediction must both be masks or both be mappings name -> mask")
    if not kinds or kinds == {False}:
        return None
    names = [tuple(masks) for masks in given.values()]
    if not names[0] or any(other != names[0] for other in names):
        raise MeshingError(f"overlay: label and prediction must name the same classes, in the same order, "
                           f"got {' and '.join(map(str, names))}")
    return names[0]


def outlines(label: Masks | None, prediction: Masks | None, names: tuple[str, ...] | None,
             shape: tuple[int, ...]) -> list[Outline]:
    """What to draw, in drawing order: label then prediction (green, red) for one mask each; for mappings
    (`names` = their `class_names`), label then prediction of each class in turn, in the class's colour."""
    if names is None:
        roles = (("label", label, LABEL_COLOUR), ("prediction", prediction, PREDICTION_COLOUR))
        return [Outline(_as_volume(mask, role, shape) > 0.5, colour, "solid", 1.0)
                for role, mask, colour in roles if mask is not None]
    drawn = []
    for number, name in enumerate(names):
        for role, masks in (("label", label), ("prediction", prediction)):
            if masks is not None:
                style, width = CLASS_LINE_STYLES[role]
                width += CLASS_WIDTH_STEP * min(len(names) - 1 - number, CLASS_WIDTH_STEPS)
                mask = _as_volume(masks[name], f"{role} {name!r}", shape) > 0.5
                drawn.append(Outline(mask, CLASS_COLOURS[number % len(CLASS_COLOURS)], style, width))
    return drawn


def overlay_figure(image: Any, label: Masks | None, prediction: Masks | None,
                   spacing: Sequence[float] | None = None) -> Figure:
    """The figure `overlay_png` writes (arguments as there): three slices, the outlines, a title, and for
    classes or regions a legend naming them."""
    volume = _as_volume(image, "image", None).astype(np.float32)
    names = class_names(label, prediction)
    drawn = outlines(label, prediction, names, volume.shape)
    steps = np.ones(3) if spacing is None else np.asarray(spacing, dtype=np.float64)
    low, high = np.percentile(volume, (1, 99))
    centre = slice_centre([outline.mask for outline in drawn], volume.shape)

    figure = Figure(figsize=(12, 4.4), dpi=100)
    FigureCanvasAgg(figure)
    for column, (fixed, across, up, title) in enumerate(PLANES):
        axes = figure.add_subplot(1, 3, column + 1)
        index = [slice(None)] * 3
        index[fixed] = centre[fixed]
        plane = volume[tuple(index)].T  # rows run along `up`, columns along `across`
        axes.imshow(plane, cmap="gray", vmin=low, vmax=max(high, low + 1e-6), origin="lower",
                    aspect=steps[up] / steps[across], interpolation="nearest")
        for outline in drawn:
            section = outline.mask[tuple(index)].T
            if section.any() and not section.all():
                axes.contour(section.astype(np.float32), levels=[0.5], colors=outline.colour,
                             linewidths=outline.width, linestyles=outline.style)
        axes.set_title(f"{title} = {centre[fixed]}", fontsize=10)
        axes.set_axis_off()
    figure.legend(handles=legend_handles(label, prediction, names), loc="lower center", ncol=4, frameon=False,
                  fontsize=10)
    if names is not None:
        figure.suptitle(f"label ({'dashed' if label is not None else 'none'}), "
                        f"prediction ({'solid' if prediction is not None else 'none'})", fontsize=11)
    return figure


def legend_handles(label: Masks | None, prediction: Masks | None, names: tuple[str, ...] | None) -> list[Line2D]:
    """One legend entry per colour drawn: "label" and "prediction" for one mask each, else each class's name."""
    if names is None:
        return [Line2D([], [], color=colour, linewidth=3.0, label=role)
                for role, masks, colour in (("label", label, LABEL_COLOUR), ("prediction", prediction, PREDICTION_COLOUR))
                if masks is not None]
    return [Line2D([], [], color=CLASS_COLOURS[number % len(CLASS_COLOURS)], linewidth=3.0, label=name)
            for number, name in enumerate(names)]


def overlay_png(
    image: Any,
    label: Masks | None,
    prediction: Masks | None,
    path: str | os.PathLike,
    spacing: Sequence[float] | None = None,
) -> Path:
    """Write a PNG of three orthogonal slices of `image` with `label` and `prediction` outlined.

    Args:
        image: intensities [D, H, W] (one channel; numpy or torch), shown in grey between its 1st
            and 99th percentiles.
        label, prediction: masks [D, H, W] (non-bool > 0.5) or None; outlined in green and red.
            For a model of several classes or regions, mappings class name -> mask [D, H, W] instead
            (both naming the same classes in the same order): one colour per class, the label dashed,
            the prediction solid, and a legend naming the classes.
        path: the .png to write (atomically).
        spacing: mm per voxel along each axis, for the pixel aspect ratio (square pixels if None).

    The slices pass through the centre of the bounding box of every mask drawn, so a small
    object is visible; with all empty they are the volume's mid-slices. Returns the path.
    """
    figure = overlay_figure(image, label, prediction, spacing)
    target = Path(path)
    with atomic_write(target, "wb") as handle:
        figure.savefig(handle, format="png")
    return target
