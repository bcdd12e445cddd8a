"""The mapping between a case's input voxel grid and the model grid, kept so it can be undone exactly.

BraTS volumes are centre-padded (or cropped) to `config.volume_shape`: before = ceil(diff/2), which
reproduces the original's 8+8, 8+8, 3+2 for 240×240×155 → 256×256×160. LiTS volumes are resampled
to the `volume_shape` cube: images trilinearly (align_corners=False, as the original), labels and
border maps by centre-aligned nearest neighbour (torch's "nearest-exact"; the original's "nearest"
is shifted by half a voxel).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


@dataclass(frozen=True)
class GridMeta:
    """Geometry of one case: where its voxels came from and how they reached the model grid.

    Args:
        affine: 4×4 voxel→mm matrix of the input files (nibabel convention).
        header: the raw NIfTI header block of the first image (for writing predictions back), or None.
        input_shape: shape of the input files (D, H, W).
        spacing: input voxel size in mm per axis.
        volume_shape: the model grid (D, H, W) = `config.volume_shape`.
        mode: "pad" (BraTS: pad/crop, `pad_before`/`pad_after` per axis, negative = crop) or
            "resample" (LiTS: interpolation to `volume_shape`).
    """

    affine: np.ndarray = field(compare=False)
    header: bytes | None = field(repr=False)
    input_shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    volume_shape: tuple[int, int, int]
    mode: str
    pad_before: tuple[int, int, int] = (0, 0, 0)
    pad_after: tuple[int, int, int] = (0, 0, 0)

    @classmethod
    def for_padding(cls, affine: np.ndarray, header: bytes | None, input_shape, volume_shape) -> "GridMeta":
        """Centred pad/crop from `input_shape` to `volume_shape`; the odd voxel goes before."""
        diff = [v - i for v, i in zip(volume_shape, input_shape)]
        before = tuple(math.ceil(d / 2) for d in diff)
        after = tuple(d - b for d, b in zip(diff, before))
        return cls(np.asarray(affine, dtype=np.float64), header, tuple(input_shape), _spacing(affine),
                   tuple(volume_shape), "pad", before, after)

    @classmethod
    def for_resampling(cls, affine: np.ndarray, header: bytes | None, input_shape, volume_shape) -> "GridMeta":
        """Interpolation from `input_shape` to `volume_shape`."""
        return cls(np.asarray(affine, dtype=np.float64), header, tuple(input_shape), _spacing(affine),
                   tuple(volume_shape), "resample")

    def to_model_grid(self, array: ArrayT, order: int) -> ArrayT:
        """Input grid → model grid. `array [..., *input_shape]`; order 0 nearest (labels), 1 linear (images)."""
        if self.mode == "pad":
            return _pad_or_crop(array, self.pad_before, self.pad_after)
        return _resample(array, self.volume_shape, order)

    def to_input_grid(self, array: ArrayT, order: int = 0) -> ArrayT:
        """Model grid → input grid (undo the pad/crop exactly, or resample back). `array [..., *volume_shape]`.

        Regions that a crop removed come back as zeros.
        """
        if self.mode == "pad":
            return _pad_or_crop(array, tuple(-b for b in self.pad_before), tuple(-a for a in self.pad_after))
        return _resample(array, self.input_shape, order)

    def model_to_input_voxel(self, points: ArrayT) -> ArrayT:
        """Model-grid voxel coordinates `[N, 3]` → input-grid voxel coordinates `[N, 3]` (float)."""
        if self.mode == "pad":
            offset = np.asarray(self.pad_before, dtype=np.float64)
            return points - _like(offset, points)
        scale = np.asarray(self.input_shape, dtype=np.float64) / np.asarray(self.volume_shape, dtype=np.float64)
        # align_corners=False: voxel centres map through (p + 0.5)·scale − 0.5
        return (points + 0.5) * _like(scale, points) - 0.5

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
                "pad_before": list(self.pad_before), "pad_after": list(self.pad_after)}

    @classmethod
    def from_dict(cls, data: dict) -> "GridMeta":
        return cls(np.asarray(data["affine"], dtype=np.float64),
                   bytes.fromhex(data["header"]) if data["header"] else None,
                   tuple(data["input_shape"]), tuple(data["spacing"]), tuple(data["volume_shape"]), data["mode"],
                   tuple(data["pad_before"]), tuple(data["pad_after"]))


def _spacing(affine: np.ndarray) -> tuple[float, float, float]:
    return tuple(float(v) for v in np.linalg.norm(np.asarray(affine)[:3, :3], axis=0))


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


def _resample(array: ArrayT, shape: tuple[int, int, int], order: int) -> ArrayT:
    """Trilinear (order 1, align_corners=False) or centre-aligned nearest (order 0) resampling.

    Nearest picks source index floor((o + 0.5)·in/out) per axis by indexing, so labels keep their
    dtype and no float copy of a large label volume is made.
    """
    if order == 0:
        for axis, (size_in, size_out) in enumerate(zip(array.shape[-3:], shape)):
            index = np.minimum(np.floor((np.arange(size_out) + 0.5) * (size_in / size_out)).astype(np.int64), size_in - 1)
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
