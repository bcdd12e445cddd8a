"""The mapping between a case's input voxel grid and the model grid, kept so it can be undone exactly.

Three steps, each recorded in `GridMeta` and each inverted by `to_input_grid`:

1. Orientation (datasets other than BraTS and LiTS): the array is flipped and its axes permuted to the
   closest canonical (RAS+) orientation of its affine (`nibabel.orientations.io_orientation`), so every
   scan reaches the model with the same anatomical axes. BraTS and LiTS keep the identity, as the paper.
2. BraTS volumes are centre-padded to `config.volume_shape`: before = ceil(diff/2), which reproduces
   the original's 8+8, 8+8, 3+2 for 240×240×155 → 256×256×160. A scan larger than the grid on an axis
   never loses a voxel that holds anything: when its non-zero voxels (every channel and the label) fit
   the grid, only the empty background around them is cropped (`cropped_background`); otherwise it is
   resampled like LiTS (`resampled_to_fit`). Either way a warning names the case and both shapes.
3. LiTS and every other dataset are resampled to `volume_shape`: images trilinearly (align_corners=False,
   as the original), labels and border maps by centre-aligned nearest neighbour (torch's
   "nearest-exact"; the original's "nearest", shifted by half a voxel, in paper mode: `NEAREST_MODES`).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Sequence, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from nibabel.orientations import inv_ornt_aff, io_orientation

from oss_net.datasets import DatasetError
from oss_net.geometry import SpacedGrid, spacing_from_affine

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)
Bounds = tuple[tuple[int, int], ...]  # per axis: (first, last) index of the non-zero voxels
Orientation = tuple[tuple[int, int], ...]  # per input axis: (model-side axis, +1 kept | -1 flipped), nibabel's ornt
IDENTITY_ORIENTATION: Orientation = ((0, 1), (1, 1), (2, 1))
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GridMeta:
    """Geometry of one case: where its voxels came from and how they reached the model grid.

    Args:
        affine: 4×4 voxel→mm matrix of the input files (nibabel convention).
        header: the raw NIfTI header block of the first image (for writing predictions back), or None.
        input_shape: shape of the input files (D, H, W).
        spacing: input voxel size in mm per input axis.
        volume_shape: the model grid (D, H, W) = `config.volume_shape`.
        mode: "pad" (BraTS: pad/crop, `pad_before`/`pad_after` per axis, negative = crop) or
            "resample" (interpolation to `volume_shape`).
        orientation: how the input axes were flipped and permuted before padding or resampling
            (`IDENTITY_ORIENTATION` for BraTS and LiTS).
        resampled_to_fit: padding was asked for but the scan's content was larger than the grid, so it was resampled.
        cropped_background: the scan was larger than the grid, and only voxels that are zero in every channel
            and the label were cropped (they come back as zeros in `to_input_grid`, so nothing is lost).
    """

    affine: np.ndarray = field(compare=False)
    header: bytes | None = field(repr=False)
    input_shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    volume_shape: tuple[int, int, int]
    mode: str
    pad_before: tuple[int, int, int] = (0, 0, 0)
    pad_after: tuple[int, int, int] = (0, 0, 0)
    orientation: Orientation = IDENTITY_ORIENTATION
    resampled_to_fit: bool = False
    cropped_background: bool = False

    @classmethod
    def for_padding(cls, affine: np.ndarray, header: bytes | None, input_shape, volume_shape,
                    source: str = "", content: Bounds | None = None) -> "GridMeta":
        """Centred pad from `input_shape` to `volume_shape` (the odd voxel goes before).

        On an axis where the scan is larger than `volume_shape`, the window is the centred one moved just
        enough to hold `content` (the scan's `nonzero_bounds`), so only empty background is cropped; when
        the content does not fit (or is not given) the scan is resampled instead. Never a silent crop: a
        warning names `source` (the case) and both shapes, and the meta records which was done.
        """
        diff = [v - i for v, i in zip(volume_shape, input_shape)]
        before = [math.ceil(d / 2) for d in diff]
        spacing = tuple(spacing_from_affine(affine).tolist())
        if min(diff) < 0:
            for axis, size in enumerate(volume_shape):
                if diff[axis] >= 0:
                    continue
                low, high = (None, None) if content is None else content[axis]
                if low is None or high - low + 1 > size:
                    _log.warning("%s: scan %s is larger than the model grid %s and its content does not fit; "
                                 "resampled to fit instead of cropped", source or "case", tuple(input_shape), tuple(volume_shape))
                    return cls.for_resampling(affine, header, input_shape, volume_shape, resampled_to_fit=True)
                start = max(min(-before[axis], low), high - size + 1)
                before[axis] = -start
            _log.warning("%s: scan %s is larger than the model grid %s; only empty background cropped "
                         "(window starts %s), every non-zero voxel kept", source or "case", tuple(input_shape),
                         tuple(volume_shape), tuple(max(-b, 0) for b in before))
        after = tuple(d - b for d, b in zip(diff, before))
        return cls(np.asarray(affine, dtype=np.float64), header, tuple(input_shape), spacing,
                   tuple(volume_shape), "pad", tuple(before), after, cropped_background=min(diff) < 0)

    @classmethod
    def for_resampling(cls, affine: np.ndarray, header: bytes | None, input_shape, volume_shape,
                       orientation: Orientation = IDENTITY_ORIENTATION, resampled_to_fit: bool = False) -> "GridMeta":
        """Reorientation by `orientation`, then interpolation to `volume_shape`."""
        spacing = tuple(spacing_from_affine(affine).tolist())
        return cls(np.asarray(affine, dtype=np.float64), header, tuple(int(s) for s in input_shape), spacing,
                   tuple(int(s) for s in volume_shape), "resample", orientation=tuple(orientation),
                   resampled_to_fit=resampled_to_fit)

    @property
    def oriented_shape(self) -> tuple[int, int, int]:
        """The input shape after reorientation (what is padded or resampled)."""
        shape = [0, 0, 0]
        for size, (axis, _) in zip(self.input_shape, self.orientation):
            shape[axis] = size
        return tuple(shape)

    @property
    def oriented_spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm per axis after reorientation."""
        spacing = [0.0, 0.0, 0.0]
        for size, (axis, _) in zip(self.spacing, self.orientation):
            spacing[axis] = size
        return tuple(spacing)

    @property
    def input_window(self) -> tuple[slice, slice, slice]:
        """The part of the (reoriented) input grid that reaches the model grid: all of it unless a crop removed some."""
        if self.mode != "pad":
            return (slice(None),) * 3
        return tuple(slice(max(-b, 0), size - max(-a, 0))
                     for size, b, a in zip(self.oriented_shape, self.pad_before, self.pad_after))

    def to_model_grid(self, array: ArrayT, order: int, nearest: str = "nearest-exact") -> ArrayT:
        """Input grid → model grid. `array [..., *input_shape]`; order 0 nearest (labels), 1 linear (images);
        `nearest`: one of NEAREST_MODES, the rule of order 0."""
        array = reorient(array, self.orientation)
        if self.mode == "pad":
            return _pad_or_crop(array, self.pad_before, self.pad_after)
        return _resample(array, self.volume_shape, order, nearest)

    def to_input_grid(self, array: ArrayT, order: int = 0) -> ArrayT:
        """Model grid → input grid: undo the pad exactly (or resample back), then the reorientation.

        `array [..., *volume_shape]` → `[..., *input_shape]`. Regions that an old crop removed come back as zeros.
        """
        if self.mode == "pad":
            array = _pad_or_crop(array, tuple(-b for b in self.pad_before), tuple(-a for a in self.pad_after))
        else:
            array = _resample(array, self.oriented_shape, order)
        return reorient(array, inverse_orientation(self.orientation))

    def model_to_input_voxel(self, points: ArrayT) -> ArrayT:
        """Model-grid voxel coordinates `[N, 3]` → input-grid voxel coordinates `[N, 3]` (float)."""
        if self.mode == "pad":
            oriented = points - _like(np.asarray(self.pad_before, dtype=np.float64), points)
        else:
            scale = np.asarray(self.oriented_shape, dtype=np.float64) / np.asarray(self.volume_shape, dtype=np.float64)
            # align_corners=False: voxel centres map through (p + 0.5)·scale − 0.5
            oriented = (points + 0.5) * _like(scale, points) - 0.5
        if self.orientation == IDENTITY_ORIENTATION:
            return oriented
        to_input = inv_ornt_aff(np.asarray(self.orientation, dtype=np.float64), self.input_shape)  # oriented → input voxel
        return oriented @ _like(to_input[:3, :3].T, oriented) + _like(to_input[:3, 3], oriented)

    def spaced_axes(self, grid: SpacedGrid) -> tuple[tuple[int, int, int], np.ndarray, np.ndarray]:
        """Where the voxels of `grid` (`oss_net.geometry.grid_at_spacing` of this case's input grid) lie on the model
        grid: (shape, scale [3], offset [3]) in the model's axis order, after the reorientation (`reorient(array,
        self.orientation)` brings an array of `grid` into that order). Its voxel u' along model axis a is at model
        coordinate u'·scale_a + offset_a, so a lattice over `shape` is decoded at those coordinates, axis by axis.

        Voxel centres map as everywhere (align_corners=False): oriented input coordinate (u' + ½)·n'/m' − ½,
        plus the pad, or on a resampled grid (u' + ½)·V/m' − ½ (n', m', V: oriented input, `grid` and model sizes).
        """
        if tuple(grid.input_shape) != tuple(self.input_shape):
            raise DatasetError(f"the grid at spacing {grid.spacing} was made for an input of shape {grid.input_shape}, "
                               f"not this case's {self.input_shape}")
        shape = [0, 0, 0]
        for size, (axis, _) in zip(grid.shape, self.orientation):
            shape[axis] = int(size)
        fine = np.asarray(shape, dtype=np.float64)
        if self.mode == "pad":
            scale = np.asarray(self.oriented_shape, dtype=np.float64) / fine
            offset = 0.5 * scale - 0.5 + np.asarray(self.pad_before, dtype=np.float64)
        else:
            scale = np.asarray(self.volume_shape, dtype=np.float64) / fine
            offset = 0.5 * scale - 0.5
        return (shape[0], shape[1], shape[2]), scale, offset

    def model_voxel_to_mm(self, points: ArrayT) -> ArrayT:
        """Model-grid voxel coordinates `[N, 3]` → world coordinates in mm `[N, 3]` through the affine."""
        voxels = self.model_to_input_voxel(points)
        rotation, translation = self.affine[:3, :3], self.affine[:3, 3]
        return voxels @ _like(rotation.T, voxels) + _like(translation, voxels)

    def to_dict(self) -> dict:
        """JSON-serialisable form (the header as hex)."""
        return {"affine": self.affine.tolist(), "header": self.header.hex() if self.header else None,
                "input_shape": list(self.input_shape), "spacing": list(self.spacing),
                "volume_shape": list(self.volume_shape), "mode": self.mode,
                "pad_before": list(self.pad_before), "pad_after": list(self.pad_after),
                "orientation": [list(pair) for pair in self.orientation], "resampled_to_fit": self.resampled_to_fit,
                "cropped_background": self.cropped_background}

    @classmethod
    def from_dict(cls, data: dict) -> "GridMeta":
        """Inverse of to_dict; dicts written before orientation was recorded load with the identity."""
        orientation = tuple((int(a), int(f)) for a, f in data.get("orientation", IDENTITY_ORIENTATION))
        return cls(np.asarray(data["affine"], dtype=np.float64),
                   bytes.fromhex(data["header"]) if data["header"] else None,
                   tuple(data["input_shape"]), tuple(data["spacing"]), tuple(data["volume_shape"]), data["mode"],
                   tuple(data["pad_before"]), tuple(data["pad_after"]), orientation,
                   bool(data.get("resampled_to_fit", False)), bool(data.get("cropped_background", False)))


def nearest_label(label: np.ndarray, label_affine: np.ndarray, shape: Sequence[int], affine: np.ndarray) -> np.ndarray:
    """`label [*S]` (on `label_affine`) sampled at the voxel centres of the grid (`shape`, `affine`) by nearest
    neighbour in world coordinates, 0 outside its box; [*shape], label's dtype. On a grid of `grid_at_spacing`
    finer than the label's, each voxel takes the value of the label voxel holding its centre (the label's
    staircase, no new boundary). Computed one slab along the first axis at a time."""
    to_label = np.linalg.inv(label_affine) @ affine  # this grid's voxel → the label's voxel coordinates
    out = np.zeros(tuple(int(n) for n in shape), dtype=label.dtype)
    j, k = np.meshgrid(np.arange(shape[1], dtype=np.float64), np.arange(shape[2], dtype=np.float64), indexing="ij")
    plane = np.stack([np.zeros_like(j), j, k], axis=-1).reshape(-1, 3)  # [H·W, 3]
    for i in range(int(shape[0])):
        plane[:, 0] = i
        index = np.floor(plane @ to_label[:3, :3].T + to_label[:3, 3] + 0.5).astype(np.int64)  # [H·W, 3]
        inside = np.all((index >= 0) & (index < np.asarray(label.shape)), axis=1)
        values = np.zeros(len(index), dtype=label.dtype)
        values[inside] = label[index[inside, 0], index[inside, 1], index[inside, 2]]
        out[i] = values.reshape(out.shape[1:])
    return out


def nonzero_bounds(arrays: Sequence[np.ndarray]) -> Bounds:
    """Per axis of the last three, (first, last) index holding a non-zero voxel in any of `arrays` `[..., D, H, W]`.

    An all-zero input gives (0, 0) per axis (any window holds it).
    """
    occupied = np.zeros(arrays[0].shape[-3:], dtype=bool)
    for array in arrays:
        nonzero = np.asarray(array) != 0
        occupied |= nonzero.reshape(-1, *nonzero.shape[-3:]).any(axis=0)
    bounds = []
    for axis in range(3):
        indices = np.flatnonzero(occupied.any(axis=tuple(a for a in range(3) if a != axis)))
        bounds.append((int(indices[0]), int(indices[-1])) if indices.size else (0, 0))
    return tuple(bounds)


def closest_canonical(affine: Any) -> Orientation:
    """The flips and axis order that bring an array with `affine` closest to RAS+ (nibabel's io_orientation).

    An oblique affine gets the orientation of its nearest axis-aligned frame; the voxels themselves are
    not interpolated, so the step is exactly invertible.
    """
    ornt = io_orientation(np.asarray(affine, dtype=np.float64))
    if np.isnan(ornt).any():
        raise DatasetError(f"affine has no orientation (a degenerate axis): {np.asarray(affine).tolist()}")
    return tuple((int(axis), int(flip)) for axis, flip in ornt)


def inverse_orientation(orientation: Orientation) -> Orientation:
    """The orientation that undoes `orientation` (model-side axes back to input axes)."""
    inverse = [(0, 1)] * 3
    for axis, (target, flip) in enumerate(orientation):
        inverse[target] = (axis, flip)
    return tuple(inverse)


def reorient(array: ArrayT, orientation: Orientation) -> ArrayT:
    """Flip and permute the last three axes of `array` as `orientation` says (nibabel's apply_orientation)."""
    if tuple(orientation) == IDENTITY_ORIENTATION:
        return array
    lead = array.ndim - 3
    flips = [lead + axis for axis, (_, flip) in enumerate(orientation) if flip == -1]
    if flips:
        array = np.flip(array, axis=flips) if isinstance(array, np.ndarray) else torch.flip(array, dims=flips)
    order = [0, 0, 0]
    for axis, (target, _) in enumerate(orientation):
        order[target] = axis
    permutation = list(range(lead)) + [lead + axis for axis in order]
    if isinstance(array, np.ndarray):
        return np.ascontiguousarray(np.transpose(array, permutation))
    return array.permute(*permutation).contiguous()


def _like(values: np.ndarray, reference: ArrayT) -> ArrayT:
    if isinstance(reference, torch.Tensor):
        dtype = reference.dtype if reference.is_floating_point() else torch.float64
        return torch.as_tensor(values, dtype=dtype, device=reference.device)
    return values


def _pad_or_crop(array: ArrayT, before: tuple[int, ...], after: tuple[int, ...]) -> ArrayT:
    """Zero-pad positive amounts and crop negative amounts on the last three axes."""
    lead = array.ndim - 3
    crop = (slice(None),) * lead + tuple(
        slice(max(-b, 0), array.shape[lead + i] - max(-a, 0)) for i, (b, a) in enumerate(zip(before, after)))
    array = array[crop]
    widths = [(max(b, 0), max(a, 0)) for b, a in zip(before, after)]
    if not any(w for pair in widths for w in pair):
        return array.copy() if isinstance(array, np.ndarray) else array.clone()
    if isinstance(array, np.ndarray):
        return np.pad(array, [(0, 0)] * lead + widths)
    return F.pad(array, [w for pair in reversed(widths) for w in pair])


NEAREST_MODES = ("nearest-exact", "nearest")  # torch's names: centre-aligned (ours), and the original's


def nearest_indices(size_in: int, size_out: int, mode: str = "nearest-exact") -> np.ndarray:
    """The source index of every output index along an axis, as torch's interpolate `mode` picks it: [size_out].

    "nearest-exact": floor((o + 0.5)·in/out), the voxel whose centre is nearest. "nearest" (the original's,
    paper mode): torch's own floor(o·in/out), which takes the output voxel's first corner and so is up to half
    a source voxel off; taken from torch itself, so it matches the original exactly.
    """
    if mode == "nearest-exact":
        return np.minimum(np.floor((np.arange(size_out) + 0.5) * (size_in / size_out)).astype(np.int64), size_in - 1)
    if mode != "nearest":
        raise ValueError(f"unknown nearest mode {mode!r}; expected one of {', '.join(NEAREST_MODES)}")
    ramp = torch.arange(size_in, dtype=torch.float64)[None, None]  # [1, 1, size_in]
    return F.interpolate(ramp, size=size_out, mode="nearest")[0, 0].numpy().astype(np.int64)


def _resample(array: ArrayT, shape: tuple[int, int, int], order: int, nearest: str = "nearest-exact") -> ArrayT:
    """Trilinear (order 1, align_corners=False) or nearest (order 0) resampling.

    Nearest picks one source index per output index and axis (`nearest_indices`) by indexing, so labels keep
    their dtype and no float copy of a large label volume is made.
    """
    if order == 0:
        for axis, (size_in, size_out) in enumerate(zip(array.shape[-3:], shape)):
            index = nearest_indices(size_in, size_out, nearest)
            dim = array.ndim - 3 + axis
            if isinstance(array, np.ndarray):
                array = np.take(array, index, axis=dim)
            else:
                array = array.index_select(dim, torch.from_numpy(index).to(array.device))
        return array
    tensor = torch.as_tensor(array)
    lead = tensor.shape[:-3]
    batch = tensor.reshape(1, -1, *tensor.shape[-3:]).to(torch.float32)
    out = F.interpolate(batch, size=tuple(shape), mode="trilinear", align_corners=False).reshape(*lead, *shape)
    return out.numpy() if isinstance(array, np.ndarray) else out
