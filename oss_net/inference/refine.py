"""The single coarse-to-fine occupancy refinement loop (standard and prior-seeded inference).

The original ran two near-identical copies of a MISE-like loop, dilated with a kernel of 3^stage (only
sensible for strides 4, 2, 1), re-evaluated known negatives and could never use a coarse stage for
anything but finding positives (reference §8, §12 items 1–4, 16). Here one loop serves both modes; the
modes differ only in which points of the first lattice are evaluated.

The rule, stage by stage (strides s_0 > s_1 > ... , each dividing the one before):

- A *lattice* of stride s holds the indices 0, s, 2s, ... along each axis plus the last index, so the
  far faces of the volume are always covered and every lattice contains the coarser ones.
- Stage 0 evaluates the stride-s_0 lattice: all of it (standard) or only where `seed_mask` is set
  (prior). Unevaluated seed points count as negative with probability 0.
- Stage k (stride s, previous stride p): every stride-s point first *inherits* the value of the
  nearest point of the previous lattice (ties go to the lower index). A point is a *candidate* when
  it has not been evaluated yet and the previous-lattice points within Chebyshev distance r of it do
  not all share one label (`prob > threshold`), with r = p, or r = 2p when `recheck_boundary` is set.
  "Zeros near positives" (the original's rule) is the half of this where the inherited label is 0;
  the other half re-checks inherited positives next to the boundary, so nothing outside the object
  stays positive only because its coarse neighbour was inside. Only candidates are decoded; every
  evaluated value is kept, so no point is decoded twice.
- When the last stride is above 1, the remaining voxels inherit from the nearest last-lattice point.

For an object that the first lattice resolves (convex, or any shape whose features are wider than
the coarse spacing) the result equals the dense thresholded grid, while only a shell around the
boundary is evaluated at full resolution.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

DecodeFn = Callable[[torch.Tensor], torch.Tensor]  # coords [N, 3] long -> probabilities [N]


@dataclass
class StageStats:
    """What one stage of the refinement cost."""

    stride: int
    lattice_points: int
    points_evaluated: int
    seconds: float


@dataclass
class RefineStats:
    """Per-stage cost of one refinement; `points_evaluated` is the number of decoder queries."""

    stages: list[StageStats] = field(default_factory=list)

    @property
    def points_evaluated(self) -> int:
        return sum(stage.points_evaluated for stage in self.stages)

    @property
    def seconds(self) -> float:
        return sum(stage.seconds for stage in self.stages)

    def to_dict(self) -> dict:
        return {
            "points_evaluated": self.points_evaluated,
            "seconds": self.seconds,
            "stages": [vars(stage) for stage in self.stages],
        }


def check_stages(stages: Sequence[int]) -> tuple[int, ...]:
    """Validate a stride schedule: positive, strictly decreasing, each stride dividing the previous one."""
    schedule = tuple(int(s) for s in stages)
    if not schedule:
        raise ValueError("`stages` must name at least one stride, e.g. (4, 2, 1)")
    if any(s < 1 for s in schedule):
        raise ValueError(f"`stages` must be positive strides, got {schedule}")
    for coarse, fine in zip(schedule, schedule[1:]):
        if fine >= coarse or coarse % fine:
            raise ValueError(
                f"`stages` must be strictly decreasing with each stride dividing the previous one, got {schedule}"
            )
    return schedule


def lattice_indices(size: int, stride: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Indices 0, stride, 2·stride, ... along one axis of length `size`, plus the last index. [n]"""
    indices = torch.arange(0, size, stride, device=device)
    if int(indices[-1]) != size - 1:
        indices = torch.cat([indices, indices.new_tensor([size - 1])])
    return indices


def lattice_shape(shape: Sequence[int], stride: int) -> tuple[int, int, int]:
    """Shape of the stride-`stride` lattice of a volume of `shape` (what a prior seed must match)."""
    sizes = [len(range(0, n, stride)) + (0 if (n - 1) % stride == 0 else 1) for n in shape]
    return sizes[0], sizes[1], sizes[2]


def seed_from_segmentation(segmentation: torch.Tensor, shape: Sequence[int], stride: int, threshold: float = 0.5) -> torch.Tensor:
    """The prior seed: the encoder's low-res probabilities, trilinearly upsampled (align_corners=True)
    to the stride lattice and thresholded, as the original's optimised inference did (reference §8.2).

    segmentation: [d, h, w] or [1, 1, d, h, w] probabilities. Returns bool [*lattice_shape(shape, stride)].
    """
    low_res = segmentation.reshape(1, 1, *segmentation.shape[-3:]).float()
    upsampled = torch.nn.functional.interpolate(
        low_res, size=lattice_shape(shape, stride), mode="trilinear", align_corners=True
    )
    return upsampled[0, 0] > threshold


def _nearest(fine: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
    """For each fine index, the position in `coarse` (sorted) of the nearest coarse index; ties go lower. [n_fine]"""
    upper = torch.searchsorted(coarse, fine).clamp(max=len(coarse) - 1)
    lower = (upper - 1).clamp(min=0)
    take_lower = (fine - coarse[lower]).abs() <= (coarse[upper] - fine).abs()
    return torch.where(take_lower, lower, upper)


def _window(fine: torch.Tensor, coarse: torch.Tensor, radius: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For each fine index, the half-open range [lo, hi) of coarse positions within `radius`. ([n], [n])"""
    lo = torch.searchsorted(coarse, fine - radius, right=False)
    hi = torch.searchsorted(coarse, fine + radius, right=True)
    return lo, hi


def _take(grid: torch.Tensor, index: Sequence[torch.Tensor]) -> torch.Tensor:
    """grid[i0][:, i1][:, :, i2]: the outer-product gather of one index vector per axis.

    The innermost axis goes first, while the tensor is still the small coarse one; the last gather,
    along axis 0, copies whole contiguous slabs (gathering along the last axis of a large tensor is slow).
    """
    out = _select(grid, 2, index[2])
    out = _select(out, 1, index[1])
    return _select(out, 0, index[0])


def _select(tensor: torch.Tensor, axis: int, index: torch.Tensor) -> torch.Tensor:
    """tensor.index_select(axis, index) by advanced indexing, which is several times faster on CPU for outer axes."""
    return tensor[(slice(None),) * axis + (index,)]


def _box_counts(labels: torch.Tensor, lo: Sequence[torch.Tensor], hi: Sequence[torch.Tensor]) -> torch.Tensor:
    """Number of True labels in the box [lo, hi) around every fine point. [n0, n1, n2] int32

    A box sum is separable: a 1D window sum (prefix sum, then hi − lo) along each axis in turn,
    innermost first, so the large fine-resolution tensors only appear in the last, slab-wise step.
    """
    counts = labels.to(torch.int32)
    for axis in (2, 1, 0):
        prefix = torch.nn.functional.pad(counts.cumsum(axis, dtype=torch.int32), _front_pad(axis))
        counts = _select(prefix, axis, hi[axis]) - _select(prefix, axis, lo[axis])
    return counts


def _front_pad(axis: int) -> tuple[int, ...]:
    """F.pad spec for one zero slab in front of `axis` of a 3D tensor (F.pad lists the last axis first)."""
    spec = [0, 0, 0, 0, 0, 0]
    spec[2 * (2 - axis)] = 1
    return tuple(spec)


def _evaluate(decode_fn: DecodeFn, coords: torch.Tensor, chunk_size: int) -> torch.Tensor:
    """decode_fn over coords [N, 3] in chunks of at most chunk_size points. [N] float32"""
    if len(coords) == 0:
        return coords.new_zeros(0, dtype=torch.float32)
    return torch.cat([decode_fn(chunk).reshape(-1).float() for chunk in coords.split(chunk_size)])


def refine_occupancy(
    decode_fn: DecodeFn,
    shape: Sequence[int],
    stages: Sequence[int] = (4, 2, 1),
    seed_mask: torch.Tensor | None = None,
    threshold: float = 0.5,
    chunk_size: int = 2**14,
    recheck_boundary: bool = False,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, RefineStats]:
    """Coarse-to-fine occupancy of a volume of `shape`, decoding only where the answer can change.

    Args:
        decode_fn: maps integer voxel coordinates [N, 3] (long, on `device`) to probabilities [N].
        shape: (D, H, W) of the model grid.
        stages: strides, coarse to fine, each dividing the previous one; (1,) is dense evaluation.
        seed_mask: bool [*lattice_shape(shape, stages[0])]; when given, stage 0 decodes only there (prior mode).
        threshold: a point is positive when its probability exceeds it.
        chunk_size: most points handed to decode_fn at once.
        recheck_boundary: widen the candidate window to two previous strides (more points, safer on
            thin structures).
        device: where the grid lives and the coordinates are created (default: the seed's, else CPU).

    Returns:
        (grid [D, H, W] float32 probabilities, evaluated or inherited; RefineStats).
    """
    schedule = check_stages(stages)
    if len(shape) != 3 or any(int(n) < 1 for n in shape):
        raise ValueError(f"`shape` must be three positive sizes, got {tuple(shape)}")
    if chunk_size < 1:
        raise ValueError(f"`chunk_size` must be positive, got {chunk_size}")
    shape = tuple(int(n) for n in shape)
    if device is None:
        device = seed_mask.device if seed_mask is not None else torch.device("cpu")
    if seed_mask is not None and tuple(seed_mask.shape) != lattice_shape(shape, schedule[0]):
        raise ValueError(
            f"`seed_mask` has shape {tuple(seed_mask.shape)}, expected the stride-{schedule[0]} lattice "
            f"shape {lattice_shape(shape, schedule[0])}"
        )

    stats = RefineStats()
    values = evaluated = coarse_axes = None
    for stage, stride in enumerate(schedule):
        start = time.perf_counter()
        axes = [lattice_indices(n, stride, device) for n in shape]
        if stage == 0:
            values = torch.zeros(tuple(len(a) for a in axes), dtype=torch.float32, device=device)  # [n0, n1, n2]
            evaluated = torch.zeros_like(values, dtype=torch.bool)
            candidates = torch.ones_like(evaluated) if seed_mask is None else seed_mask.to(device=device, dtype=torch.bool)
        else:
            values, evaluated, candidates = _inherit_and_select(
                values, evaluated, coarse_axes, axes, threshold, radius=schedule[stage - 1] * (2 if recheck_boundary else 1)
            )
        where = candidates.nonzero(as_tuple=True)  # 3 × [N]
        coords = torch.stack([axes[a][where[a]] for a in range(3)], dim=1)  # [N, 3] long
        values[where] = _evaluate(decode_fn, coords, chunk_size).to(device)
        evaluated[where] = True
        coarse_axes = axes
        if values.is_cuda:
            torch.cuda.synchronize(values.device)
        stats.stages.append(StageStats(stride, values.numel(), len(coords), time.perf_counter() - start))

    if schedule[-1] > 1:
        full = [torch.arange(n, device=device) for n in shape]
        values = _take(values, [_nearest(full[a], coarse_axes[a]) for a in range(3)])
    return values, stats


def _inherit_and_select(
    coarse_values: torch.Tensor,
    coarse_evaluated: torch.Tensor,
    coarse_axes: Sequence[torch.Tensor],
    axes: Sequence[torch.Tensor],
    threshold: float,
    radius: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Carry the previous lattice onto the finer one and pick the points whose neighbourhood disagrees.

    Returns (values [n0, n1, n2] inherited, evaluated [n0, n1, n2], candidates [n0, n1, n2]).
    """
    nearest = [_nearest(axes[a], coarse_axes[a]) for a in range(3)]
    on_coarse = [coarse_axes[a][nearest[a]] == axes[a] for a in range(3)]
    values = _take(coarse_values, nearest)
    evaluated = _take(coarse_evaluated, nearest)
    evaluated &= on_coarse[0][:, None, None] & on_coarse[1][None, :, None] & on_coarse[2][None, None, :]

    windows = [_window(axes[a], coarse_axes[a], radius) for a in range(3)]
    lo = [w[0] for w in windows]
    hi = [w[1] for w in windows]
    positives = _box_counts(coarse_values > threshold, lo, hi)
    extent = [(hi[a] - lo[a]).to(torch.int32) for a in range(3)]  # coarse points in each window, per axis
    sizes = extent[0][:, None, None] * extent[1][None, :, None] * extent[2][None, None, :]
    candidates = (positives > 0) & (positives < sizes) & ~evaluated
    return values, evaluated, candidates
