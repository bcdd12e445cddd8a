"""Image patches around query points: the 7³ neighbourhood the decoder sees (and, for the large-patch
configurations B and D, the 14³ neighbourhood average-pooled 2× to 7³, or max-pooled as the original's
inference did: `pooling="max"`), at any centre: integer centres read the voxels as they are, fractional
ones interpolate them trilinearly (`PatchSource.gather`), so the decoder can be queried between voxel centres.

    source = PatchSource(volume, large=True)        # pad (and box-average) the volume once per case
    patches = source.gather(coords)                 # then gather any number of chunks from it

Patches are gathered on the volume's own device by flat index arithmetic, with no unfolded view
(docs/reference.md §12 item 24). Training gathers one batch per step (`gather_patches`); inference
decodes a case in many chunks, so it keeps one `PatchSource` per case instead of re-padding per chunk.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from oss_net.geometry import (
    CORNER_OFFSETS, LARGE_PATCH_POOLINGS, LARGE_PATCH_SIZE, PATCH_SIZE, corner_weights, trilinear_stencil,
)

GATHER_ELEMENTS = 1 << 24  # values gathered per step (64 MiB of float32), to bound temporaries


class PatchSource:
    """A volume zero-padded once (plus its 2³ box average or maximum for large patches), ready to gather patches.

    The volume is kept channels-last, so one voxel's channels sit together, and read through a view
    whose row r is the run of 7 voxels r, r+s, ..., r+6s along the last axis (s = 1 for the small patch,
    2 for the large one): a patch is 49 such rows, one index each, instead of 343 single values per
    channel. The large patch of a centre c is read at stride 2 from the box average of the padded
    volume: box[p] = mean(padded[p..p+1]) per axis, so box[c + 2m] is the pooled cell m of the 14³
    block (likewise for the maximum), and zeros outside the grid count, as the original's zero padding did.

    Args:
        volume: `[B, C, D, H, W]` model-grid volume; padding and gathering happen on its device.
        large: also gather the pooled large patches, stacked after the small channels.
        pooling: "avg" or "max" (box maximum instead of mean) for the large patches.
    """

    def __init__(self, volume: torch.Tensor, large: bool = False, pooling: str = "avg") -> None:
        if volume.dim() != 5:
            raise ValueError(f"volume must be [B, C, D, H, W], got {list(volume.shape)}")
        if pooling not in LARGE_PATCH_POOLINGS:
            raise ValueError(f"large-patch pooling must be one of {LARGE_PATCH_POOLINGS}, got {pooling!r}")
        self.batch, self.channels, *shape = volume.shape
        self.shape = tuple(shape)
        # each part: runs [B, R, 7, C], its grid shape, and the flat offsets [49] of a patch's runs from its centre
        self.parts = [_part(_padded_channels_last(volume, PATCH_SIZE // 2), 0, 1)]  # c−3..c+3 at padded c..c+6
        if large:
            pool = F.avg_pool3d if pooling == "avg" else F.max_pool3d
            box = pool(F.pad(volume, [LARGE_PATCH_SIZE // 2] * 6), kernel_size=2, stride=1)  # [B, C, D+13, H+13, W+13]
            self.parts.append(_part(box.permute(0, 2, 3, 4, 1).contiguous(), 0, 2))  # box[c+2m] pools c−7+2m..c−6+2m

    @property
    def patch_channels(self) -> int:
        """C_p of the gathered patches: C, or 2·C with large patches."""
        return self.channels * len(self.parts)

    def gather(self, coords: torch.Tensor) -> torch.Tensor:
        """Patches `[B, N, C_p, 7, 7, 7]` centred at `coords [B, N, 3]` (model-grid voxel coordinates, float or int).

        At an integer centre (of any dtype) the patch is read as it is. At a fractional centre c every value
        is the trilinear interpolation of the padded (and pooled) volume at its position c + m: the blend of
        the eight integer-centred patches around c with the corner weights (`oss_net.geometry.corner_weights`),
        which at an integer centre leaves exactly that centre's patch. Centres beyond the outer voxel centres
        take the edge's patch (clamped, as `trilinear_stencil` says).
        """
        runs = self.parts[0][0]
        base, fraction = trilinear_stencil(coords.to(runs.device), self.shape)  # [B, N, 3] each
        # The meta device (memory counts) cannot tell integer centres from fractional ones: it gathers as at integers.
        fractional = runs.device.type != "meta" and bool(fraction.any())
        weights = corner_weights(fraction.to(runs.dtype)) if fractional else None  # [B, N, 8]
        count = base.shape[1]
        out = runs.new_empty(self.batch, count, self.patch_channels, PATCH_SIZE**3)
        step = max(1, GATHER_ELEMENTS // (self.patch_channels * PATCH_SIZE**3))
        for b in range(self.batch):
            for start in range(0, count, step):
                patches = self._read(b, base[b, start:start + step])  # [n, 343, C_p]
                if weights is not None:
                    self._blend(patches, b, base[b, start:start + step], weights[b, start:start + step])
                out[b, start:start + step] = patches.transpose(1, 2)
        return out.reshape(self.batch, count, self.patch_channels, PATCH_SIZE, PATCH_SIZE, PATCH_SIZE)

    def _read(self, b: int, centres: torch.Tensor) -> torch.Tensor:
        """The patches `[n, 343, C_p]` (channels last) of volume `b` at the integer `centres [n, 3]`."""
        parts = []
        for runs, grid, offsets in self.parts:
            flat = (centres[:, 0] * grid[1] + centres[:, 1]) * grid[2] + centres[:, 2]  # [n]
            values = runs[b].index_select(0, (flat[:, None] + offsets).reshape(-1))  # [n·49, 7, C]
            parts.append(values.view(len(centres), PATCH_SIZE**3, self.channels))
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=2)

    def _blend(self, patches: torch.Tensor, b: int, base: torch.Tensor, weights: torch.Tensor) -> None:
        """`patches [n, 343, C_p]` read at `base [n, 3]` → in place, the trilinear blend with `weights [n, 8]`.

        Only the fractional centres are blended (all of them at once when the chunk has no integer centre, the
        usual case off the model grid); an integer centre's patch is left as read, bit for bit.
        """
        rows = (weights[:, 0] < 1).nonzero().squeeze(1)  # [m]: centres with a fraction
        if len(rows) == len(patches):
            self._blend_rows(patches, b, base, weights)
        elif len(rows):
            part = patches[rows]  # [m, 343, C_p], a copy
            self._blend_rows(part, b, base[rows], weights[rows])
            patches[rows] = part

    def _blend_rows(self, patches: torch.Tensor, b: int, base: torch.Tensor, weights: torch.Tensor) -> None:
        """In place: patches (the base corner's) × its weight + Σ the other corners' patches × theirs."""
        patches.mul_(weights[:, 0, None, None])
        upper = base.new_tensor([n - 1 for n in self.shape])
        for corner, offset in enumerate(CORNER_OFFSETS[1:], start=1):
            weight = weights[:, corner]
            if bool(weight.any()):  # a zero-weight corner beyond the grid is read at the edge
                patches.addcmul_(self._read(b, torch.minimum(base + base.new_tensor(offset), upper)), weight[:, None, None])


def gather_patches(volume: torch.Tensor, coords: torch.Tensor, large: bool = False, pooling: str = "avg") -> torch.Tensor:
    """Patches `[B, N, C·(1|2), 7, 7, 7]` of `volume [B, C, D, H, W]` around `coords [B, N, 3]`, zero outside.

    One-shot form of `PatchSource(volume, large, pooling).gather(coords)`, for a batch gathered once (training).
    """
    return PatchSource(volume, large, pooling).gather(coords)


def _padded_channels_last(volume: torch.Tensor, margin: int) -> torch.Tensor:
    """`volume [B, C, *S]` zero-padded by `margin` on every side, channels last: [B, *(S + 2·margin), C], one copy."""
    batch, channels, *shape = volume.shape
    table = volume.new_zeros(batch, *(n + 2 * margin for n in shape), channels)
    table[:, margin:margin + shape[0], margin:margin + shape[1], margin:margin + shape[2]] = volume.permute(0, 2, 3, 4, 1)
    return table


def _part(table: torch.Tensor, first: int, step: int) -> tuple[torch.Tensor, tuple[int, ...], torch.Tensor]:
    """The runs view of the channels-last `table [B, *S, C]` for patches at positions first, first+step, ...,
    first+6·step from a centre's index along each axis: (runs [B, R, 7, C], S, flat offsets [49] of the patch's runs).

    runs[b, r, m] is voxel r + m·step (flat index) of the table, a strided view, no copy.
    """
    batch, *shape, channels = table.shape
    length = math.prod(shape)
    span = (PATCH_SIZE - 1) * step
    runs = table.as_strided((batch, length - span, PATCH_SIZE, channels), (length * channels, channels, step * channels, 1))
    position = torch.arange(first, first + PATCH_SIZE * step, step)
    offsets = (position[:, None] * shape[1] + position[None, :]) * shape[2] + first  # each run starts at x = first
    return runs, tuple(shape), offsets.reshape(-1).to(table.device)
