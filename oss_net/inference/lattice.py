"""Coarse-to-fine occupancy refinement: a lattice object and the one loop that drives it.

    lattice = OccupancyLattice(shape, stages, seed=seed)   # seed: the prior mode's first-stage mask
    stats = refine_lattice(lattice, decode_fn)             # while not done: query -> decode -> update
    grid = lattice.to_dense()                              # [K, D, H, W] probabilities

The original ran two near-identical copies of a MISE-like loop, dilated with a kernel of 3^stage (only
sensible for strides 4, 2, 1), re-evaluated known negatives and could never use a coarse stage for
anything but finding positives (docs/reference.md §8, §12 items 1–4, 16). Here one object holds the
lattice state (like im2mesh's MISE: `query`, `update`, `to_dense`) and one loop serves both modes;
the modes differ only in which points of the first lattice are evaluated.

The rule, stage by stage (strides s_0 > s_1 > ... , each dividing the one before):

- A *lattice* of stride s holds the indices 0, s, 2s, ... along each axis plus the last index, so the
  far faces of the volume are always covered and every lattice contains the coarser ones.
  `last_index=False` leaves the last index out: the original's arange(0, size, s) (paper mode,
  `oss_net.compat`), on which the prior's seed lands exactly on the original's R/s grid.
- Stage 0 evaluates the stride-s_0 lattice: all of it (standard) or only where `seed` is set
  (prior). Unevaluated seed points count as negative with probability 0.
- Stage k (stride s, previous stride p): every stride-s point first *inherits* the values of the
  nearest point of the previous lattice (ties go to the lower index). A point is a *candidate* when
  it has not been evaluated yet and, for any class, the previous-lattice points within Chebyshev
  distance r of it do not all share one decision (`oss_net.labels.DecisionRule.decide`: `prob > threshold`,
  or in exclusive mode whether the class wins the argmax over background + classes, so a candidate is
  wherever the argmax can change between lattice neighbours), with r = p − s: the corners of the
  previous lattice's cell (or face, or edge) that holds the point; r = 2p when `recheck_boundary` is
  set. "Zeros near positives" (the original's rule) is the half of this where the inherited label is 0;
  the other half re-checks inherited positives next to the boundary, so nothing outside the object
  stays positive only because its coarse neighbour was inside. Only candidates are decoded (all K
  classes at once); every evaluated value is kept, so no point is decoded twice.
- Then the band *grows*: an unevaluated point next to one just decoded (one of its 26 neighbours on the
  stride-s lattice) whose decision differs from the point's own inherited one is decoded too, round after
  round until no such point is left (`StageStats.rounds`). The first round is the narrowest band that
  can hold the surface (the cells whose corners disagree); the growth follows the surface wherever it
  leaves those cells between their corners. The old fixed window, r = p, decoded about 1.4 times as
  many points at stride 1 and needed no growth (benchmarks/bench_infer.py: 134,204 vs 99,606 points on
  the BraTS-size ellipsoid, both equal to the dense grid). At stride 1 the candidates and their growth decode
  the floor of this check, no point more: the voxels with a 26-neighbour of the other decision, on both sides
  of the surface, less those of the stride-2 lattice (`benchmarks.bench_infer.stride_1_floor`; equal on the
  benchmark's ellipsoids, 0.985–1.000 of it on the trained demo models, `benchmarks.bench_band`), about 3.1
  points per boundary voxel. Checking face neighbours only would decode about 30% fewer points, but changed up
  to 5 voxels in 5 of 12 cases of the trained regions and organs demo models, so it is not done.
- When the last stride is above 1, the remaining voxels inherit from the nearest last-lattice point.

For an object that the first lattice resolves (convex, or any shape whose features are wider than
the coarse spacing) the result equals the dense thresholded grid, per class, while only a shell
around the boundary is evaluated at full resolution. The price: a negative pocket inside the object
smaller than about the coarse spacing (fewer than ~4 voxels across) is never looked at and is filled,
and a feature that crosses no edge of a cell whose corners are decoded is never seen.

The lattice is a grid of indices; what an index means is the caller's (`decode_fn`): a model-grid voxel,
or a voxel of an output grid at another spacing whose model-grid coordinates are fractional
(`oss_net.inference.predictor`, `spaced_stages`). Its memory is the values of the finest lattice, which
are the output ([K, *shape] float32), a few bytes per point of bookkeeping, and the decoded chunks.

`refinement="original"` swaps in the original's candidate rule (docs/reference.md §8.1), for paper
mode and for timings comparable with the paper's Fig. 6; the loop and the first stage are the same:

- Nothing is inherited: a point that has not been evaluated counts as negative (probability 0).
- Stage k (stride s): a point is a candidate when it is not an evaluated positive and an evaluated
  positive lies within Chebyshev distance (3^s − 1) / 2 of it (the original dilated with a kernel of
  3^s: radius 4 at stride 2, 1 at stride 1; only sensible for (4, 2, 1), ever wider after). Known
  negatives near a positive are decoded again, as the original did. With the original's lattices too
  (`last_index=False`, as paper mode runs it), `points_evaluated` is exactly the number of decoder
  queries the original makes for the same answers: stage 0 of standard inference on the BraTS grid
  decodes its 64·64·40 = 163,840 points (173,225 with our lattice, which adds the last indices).

So it decodes every voxel inside the object and next to it (about the whole object instead of a
shell), keeps small pockets, and cannot recover an object the first lattice missed.
"""
from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from oss_net.labels import DecisionRule

from .defaults import CHUNK_SIZE, REFINEMENT, STAGES, THRESHOLD

REFINEMENTS: tuple[str, ...] = ("ours", "original")  # candidate rules (module docstring)
DecodeFn = Callable[[torch.Tensor], torch.Tensor]  # coords [N, 3] long -> probabilities [N, K] (or [N] when K = 1)


@dataclass
class StageStats:
    """What one stage of the refinement cost."""

    stride: int
    lattice_points: int
    points_evaluated: int
    seconds: float
    rounds: int = 1  # the candidates, then each round of growth (rule "ours", module docstring)


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
        raise ValueError(f"`stages` must name at least one stride, e.g. {STAGES}")
    if any(s < 1 for s in schedule):
        raise ValueError(f"`stages` must be positive strides, got {schedule}")
    for coarse, fine in zip(schedule, schedule[1:]):
        if fine >= coarse or coarse % fine:
            raise ValueError(
                f"`stages` must be strictly decreasing with each stride dividing the previous one, got {schedule}"
            )
    return schedule


def lattice_indices(size: int, stride: int, device: torch.device | str | None = None, last_index: bool = True) -> torch.Tensor:
    """Indices 0, stride, 2·stride, ... along one axis of length `size`, plus the last index unless `last_index`
    is False (the original's lattice). [n]"""
    indices = torch.arange(0, size, stride, device=device)
    if last_index and int(indices[-1]) != size - 1:
        indices = torch.cat([indices, indices.new_tensor([size - 1])])
    return indices


def lattice_shape(shape: Sequence[int], stride: int, last_index: bool = True) -> tuple[int, int, int]:
    """Shape of the stride-`stride` lattice of a volume of `shape` (what a prior seed must match)."""
    sizes = [len(range(0, n, stride)) + (0 if not last_index or (n - 1) % stride == 0 else 1) for n in shape]
    return sizes[0], sizes[1], sizes[2]


def spaced_stages(stages: Sequence[int], scale: Sequence[float]) -> tuple[int, ...]:
    """The strides of a lattice whose points lie `scale` [3] model-grid voxels apart (an output at another spacing,
    `oss_net.data.GridMeta.spaced_axes`): every stride times f, the largest power of two by which the output is
    at least as fine as the model grid on every axis, then halvings down to the last stride asked for.

    So the first lattice is as coarse in millimetres as the model grid's (the prior seed and the first stage
    cost the same) and each halving of the spacing adds one stage: (4, 2, 1) at half the model grid's spacing is
    (8, 4, 2, 1). A coarser output keeps `stages`.
    """
    ratio = 1.0 / max(float(v) for v in scale)  # output voxels per model voxel on the least refined axis
    factor = 1
    while 2 * factor <= ratio + 1e-9:
        factor *= 2
    scaled = [int(s) * factor for s in stages]
    while scaled[-1] > int(stages[-1]):
        scaled.append(scaled[-1] // 2)
    return tuple(scaled)


def seed_from_segmentation(
    segmentation: torch.Tensor,
    shape: Sequence[int],
    stride: int,
    threshold: float = THRESHOLD,
    align_corners: bool = False,
    last_index: bool = True,
    keep_classes: bool = False,
    positions: Sequence[torch.Tensor] | None = None,
) -> torch.Tensor:
    """The prior seed: the encoder's low-res probabilities, trilinearly interpolated onto the stride
    lattice and thresholded; with K classes a lattice point is seeded when any class is above the threshold.

    `positions`: per axis, the model-grid coordinates [n_a] of the first lattice's points when the lattice is
    not the model grid's (an output at another spacing: `spaced_stages`, fractional coordinates); `shape` is
    the model grid either way. Default: `lattice_indices(shape[a], stride, last_index)`.

    `keep_classes` (models of several classes): every lattice point inside a cell where some class is above
    the threshold is seeded too (the nearest one to the cell's centre when none lies inside), so no class the
    coarse prediction holds can vanish because interpolation diluted it, however small it is: a class in a
    single cell at 0.52 among zeros interpolates to under 0.5 at every lattice point. The seed then grows by
    one lattice point on every side, so an organ reaching past the cells the head marks is still found there
    (on `make demo-organs` the paper's seed missed 16% of the pancreas that standard mode found, this one
    none: README, "Several organs"). The binary seed is the paper's alone.

    By default each low-res value sits at the centre of the voxels its cell pooled in training (the
    coarse target is an adaptive max-pool of the label, `oss_net.data.segmentation_target`), and the
    lattice is sampled at its true voxel positions, the last one included; beyond the outer centres the
    edge value holds. `align_corners=True` is the original's upsampling instead (docs/reference.md §8.2, §12.28):
    the first and last low-res values at the first and last lattice points, which stretches the coarse
    map over the volume, shifts it by up to half a cell near the faces (an object near a corner can fall
    outside the seed and be lost) and widens the seed of a centred object (30,077 stride-4 points instead of
    18,570 for the benchmark's ellipsoid). Paper mode keeps it (`oss_net.compat`), on the original's lattice
    (`last_index=False`), where it is exactly the original's interpolation onto R/stride.

    segmentation: [d, h, w], [K, d, h, w] or [1, K, d, h, w] probabilities.
    Returns bool [*lattice_shape(shape, stride, last_index)] (or [len(p) for p in positions]).
    """
    low_res = segmentation.reshape(-1, *segmentation.shape[-3:]).float()  # [K, d, h, w]
    if align_corners and positions is not None:
        raise ValueError("the corner-aligned seed stretches the coarse map over the model grid's lattice; "
                         "it has no meaning at other positions")
    if positions is None:
        positions = [lattice_indices(size, stride, low_res.device, last_index) for size in shape]
    if align_corners:
        upsampled = torch.nn.functional.interpolate(
            low_res[None], size=lattice_shape(shape, stride, last_index), mode="trilinear", align_corners=True
        )[0]
    else:
        upsampled = low_res
        for size, cells, where in zip(shape, low_res.shape[1:], positions):
            weights = cell_interpolation(where.to(low_res.device), size, cells)  # [n, cells]
            upsampled = torch.tensordot(upsampled, weights, dims=([1], [1]))  # this axis moves last
    seed = (upsampled > threshold).any(dim=0)
    if keep_classes:
        seed |= positive_cell_points(low_res > threshold, shape, positions)
        seed = torch.nn.functional.max_pool3d(seed[None, None].float(), 3, stride=1, padding=1)[0, 0] > 0
    return seed


def positive_cell_points(positive: torch.Tensor, shape: Sequence[int], positions: Sequence[torch.Tensor]) -> torch.Tensor:
    """bool [len(p) for p in positions]: the lattice points (model-grid coordinates per axis, `positions`) inside any
    cell set in `positive [K, d, h, w]`, and per set cell without a lattice point inside, the nearest one to its
    centre. Cells are adaptive pooling's over the model grid of `shape`."""
    covered = positive.any(dim=0).float()  # [d, h, w]
    for size, cells, where in zip(shape, positive.shape[1:], positions):
        covered = torch.tensordot(covered, cell_membership(where.to(positive.device), size, cells), dims=([0], [1]))
    return covered > 0  # each axis moved last in turn


def cell_membership(positions: torch.Tensor, size: int, cells: int) -> torch.Tensor:
    """float [n, cells]: 1 where lattice position n lies in adaptive-pooling cell c (voxels
    [floor(c·size/cells), ceil((c+1)·size/cells)), whose extent in coordinates starts half a voxel before the
    first and ends half a voxel before the end), or is the position nearest to the centre of a cell that holds none."""
    index = torch.arange(cells, device=positions.device)
    starts = torch.div(index * size, cells, rounding_mode="floor")
    ends = -torch.div(-(index + 1) * size, cells, rounding_mode="floor")
    where = positions.double()[:, None]
    inside = (where >= starts[None] - 0.5) & (where < ends[None] - 0.5)  # [n, cells]
    centres = (starts + ends - 1).double() / 2
    nearest = (positions[:, None].double() - centres[None]).abs().argmin(dim=0)  # [cells]
    inside[nearest, index] |= ~inside.any(dim=0)
    return inside.float()


def cell_interpolation(positions: torch.Tensor, size: int, cells: int) -> torch.Tensor:
    """Linear interpolation weights [n, cells] from the centres of `cells` adaptive-pooling cells over an
    axis of `size` voxels to the voxel `positions` [n]; each row sums to 1, constant beyond the outer centres.

    Cell i pools voxels [floor(i·size/cells), ceil((i+1)·size/cells)), as adaptive pooling does, and sits at
    their centre.
    """
    index = torch.arange(cells, device=positions.device)
    starts = torch.div(index * size, cells, rounding_mode="floor")
    ends = -torch.div(-(index + 1) * size, cells, rounding_mode="floor")
    centres = (starts + ends - 1).double() / 2  # [cells]
    where = positions.double().clamp(float(centres[0]), float(centres[-1]))
    upper = torch.searchsorted(centres, where).clamp(min(1, cells - 1), cells - 1)
    lower = (upper - 1).clamp(min=0)
    span = (centres[upper] - centres[lower]).clamp(min=1e-12)
    fraction = ((where - centres[lower]) / span).float()  # 0 at the lower centre, 1 at the upper
    weights = torch.zeros(len(positions), cells, device=positions.device)
    rows = torch.arange(len(positions), device=positions.device)
    weights.index_put_((rows, lower), 1 - fraction, accumulate=True)
    weights.index_put_((rows, upper), fraction, accumulate=True)
    return weights


class OccupancyLattice:
    """The state of one coarse-to-fine refinement: the current lattice, its values, and what is known.

    Drive it with `refine_lattice(lattice, decode_fn)`, or by hand: `query()` gives the points of the current
    stage to decode, `update(values)` stores their values and moves to the next stage, and after the
    last stage (`done`) `to_dense()` gives the full grid.

    The options (stages, refinement, recheck_boundary) are checked where they enter, by `PredictOptions`
    and the `Predictor`; the lattice checks only its own inputs (shape, classes, seed).

    Args:
        shape: (D, H, W) of the model grid.
        stages: strides, coarse to fine, each dividing the previous one (`check_stages`); (1,) is dense evaluation.
        seed: bool [*lattice_shape(shape, stages[0], last_index)]; when given, stage 0 decodes only there (prior mode).
        threshold: a class is positive at a point when its probability exceeds it (unless `rule` is given).
        rule: the label mode's decision (`oss_net.labels.LabelScheme.rule`); None: `threshold` per class.
        classes: K, the probabilities per point.
        recheck_boundary: widen the candidate window to two previous strides (more points, safer on
            thin structures); "ours" only.
        refinement: the candidate rule, one of REFINEMENTS (module docstring).
        last_index: whether every lattice adds the last index of each axis; False: the original's lattices.
        device: where the state lives and the coordinates are created (default: the seed's, else CPU).
    """

    def __init__(
        self,
        shape: Sequence[int],
        stages: Sequence[int] = STAGES,
        seed: torch.Tensor | None = None,
        threshold: float = THRESHOLD,
        classes: int = 1,
        recheck_boundary: bool = False,
        device: torch.device | str | None = None,
        refinement: str = REFINEMENT,
        last_index: bool = True,
        rule: DecisionRule | None = None,
    ) -> None:
        self.stages = tuple(int(s) for s in stages)
        if len(shape) != 3 or any(int(n) < 1 for n in shape):
            raise ValueError(f"`shape` must be three positive sizes, got {tuple(shape)}")
        if classes < 1:
            raise ValueError(f"`classes` must be positive, got {classes}")
        self.shape = tuple(int(n) for n in shape)
        self.last_index = bool(last_index)
        expected_seed = lattice_shape(self.shape, self.stages[0], self.last_index)
        if seed is not None and tuple(seed.shape) != expected_seed:
            raise ValueError(
                f"`seed` has shape {tuple(seed.shape)}, expected the stride-{self.stages[0]} lattice shape {expected_seed}"
            )
        self.device = torch.device(device) if device is not None else seed.device if seed is not None else torch.device("cpu")
        self.seed = seed
        self.threshold = float(threshold)
        self.rule = rule if rule is not None else DecisionRule(threshold=self.threshold)
        self.classes = int(classes)
        self.recheck_boundary = bool(recheck_boundary)
        self.refinement = refinement
        self.candidates = {"ours": self._disagreeing, "original": self._near_positive}[refinement]  # the rule
        self.stage = 0
        self.axes: list[torch.Tensor] = []  # the current lattice's indices per axis, 3 × [n_a]
        self.values = torch.zeros(0)  # [K, n0, n1, n2] float32 probabilities, evaluated or inherited
        self.evaluated = torch.zeros(0, dtype=torch.bool)  # [n0, n1, n2]
        self.pending: torch.Tensor | None = None  # flat lattice indices [N] handed out by query()

    @property
    def done(self) -> bool:
        """True after the last stage's update: only `to_dense` is left."""
        return self.stage == len(self.stages)

    @property
    def stride(self) -> int:
        """The stride of the current stage."""
        return self.stages[self.stage]

    @property
    def lattice_points(self) -> int:
        """Points of the current lattice (valid after `query`)."""
        return self.evaluated.numel()

    def query(self) -> torch.Tensor:
        """The points of the current stage to decode: voxel coordinates [N, 3] long on `device` (N may be 0)."""
        if self.done:
            raise RuntimeError("the refinement is finished: read the grid with to_dense()")
        if self.pending is None:
            candidates = self._first_stage() if self.stage == 0 else self._next_stage()  # [n0, n1, n2] bool
            self.pending = candidates.reshape(-1).nonzero().squeeze(1)
        index = _unravel(self.pending, self.evaluated.shape)  # [N, 3] lattice positions
        return torch.stack([self.axes[a][index[:, a]] for a in range(3)], dim=1)

    def update(self, values: torch.Tensor) -> None:
        """Store the probabilities [N, K] (or [N] when K = 1) of the points `query` gave; next stage."""
        if self.pending is None:
            raise RuntimeError("update() must follow query(): it stores the values of the queried points")
        expected = (len(self.pending), self.classes)
        values = values[:, None] if values.dim() == 1 else values
        if tuple(values.shape) != expected:
            raise ValueError(f"values must be [{expected[0]}, {expected[1]}] (points, classes), got {list(values.shape)}")
        self.values.view(self.classes, -1)[:, self.pending] = values.to(self.values).t()
        self.evaluated.view(-1)[self.pending] = True
        decoded, self.pending = self.pending, None
        if self.stage > 0 and self.refinement == "ours" and len(decoded):
            grown = self._grown(decoded)
            if len(grown):  # another round of this stage
                self.pending = grown
                return
        self.stage += 1

    def to_dense(self) -> torch.Tensor:
        """The grid [K, D, H, W] float32: evaluated values, inherited ones elsewhere."""
        if not self.done:
            raise RuntimeError(f"the refinement is at stage {self.stage} of {len(self.stages)}: finish it before to_dense()")
        if self.stages[-1] == 1:
            return self.values
        full = [torch.arange(n, device=self.device) for n in self.shape]
        return _take(self.values, [_nearest(full[a], self.axes[a]) for a in range(3)])

    def _first_stage(self) -> torch.Tensor:
        """Set up the coarsest lattice with nothing known; candidates: all of it, or the seed. [n0, n1, n2]"""
        self.axes = [lattice_indices(n, self.stride, self.device, self.last_index) for n in self.shape]
        sizes = tuple(len(a) for a in self.axes)
        self.values = torch.zeros(self.classes, *sizes, dtype=torch.float32, device=self.device)
        self.evaluated = torch.zeros(sizes, dtype=torch.bool, device=self.device)
        if self.seed is None:
            return torch.ones_like(self.evaluated)
        return self.seed.to(device=self.device, dtype=torch.bool)

    def _next_stage(self) -> torch.Tensor:
        """Carry the previous lattice onto the finer one; candidates by the rule. [n0, n1, n2]"""
        coarse_axes = self.axes
        axes = [lattice_indices(n, self.stride, self.device, self.last_index) for n in self.shape]
        nearest = [_nearest(axes[a], coarse_axes[a]) for a in range(3)]
        on_coarse = [coarse_axes[a][nearest[a]] == axes[a] for a in range(3)]
        labels = self.rule.decide(self.values)  # [K, m0, m1, m2] bool on the previous lattice
        self.values = _take(self.values, nearest)
        self.evaluated = _take(self.evaluated, nearest)
        self.evaluated &= on_coarse[0][:, None, None] & on_coarse[1][None, :, None] & on_coarse[2][None, None, :]
        self.axes = axes
        return self.candidates(labels, coarse_axes)

    def _disagreeing(self, labels: torch.Tensor, coarse_axes: list[torch.Tensor]) -> torch.Tensor:
        """Ours: unevaluated points whose previous-lattice cell (its corners lie within p − s of every point of it:
        previous stride p, current s), or with `recheck_boundary` neighbourhood of 2p, disagrees for any class.
        [n0, n1, n2]"""
        previous = self.stages[self.stage - 1]
        radius = 2 * previous if self.recheck_boundary else previous - self.stride
        windows = [_window(self.axes[a], coarse_axes[a], radius) for a in range(3)]
        bits = _box_bits(labels, [w[0] for w in windows], [w[1] for w in windows])  # [K, n0, n1, n2]
        return _any_class(bits == _BOTH) & ~self.evaluated

    def _grown(self, decoded: torch.Tensor) -> torch.Tensor:
        """The growth of rule "ours": flat indices [M] of the unevaluated lattice points next to the just `decoded`
        ones (flat [N]) whose decision differs from that of a decoded neighbour, for any class."""
        shape = self.evaluated.shape
        index = _unravel(decoded, shape)  # [N, 3]
        values = self.values.view(self.classes, -1)
        decided = self.rule.decide(values[:, decoded])  # [K, N]
        sizes = torch.tensor(shape, device=index.device)
        evaluated = self.evaluated.view(-1)
        found = []
        for offset in NEIGHBOUR_OFFSETS:
            neighbour = index + index.new_tensor(offset)  # [N, 3]
            inside = ((neighbour >= 0) & (neighbour < sizes)).all(dim=1)
            flat = ((neighbour[:, 0] * shape[1] + neighbour[:, 1]) * shape[2] + neighbour[:, 2]).clamp(0, evaluated.numel() - 1)
            keep = inside & ~evaluated[flat]  # only unevaluated neighbours can be found: decide nothing else
            flat = flat[keep]
            differs = (self.rule.decide(values[:, flat]) != decided[:, keep]).any(dim=0)
            found.append(flat[differs])
        return torch.unique(torch.cat(found))

    def _near_positive(self, labels: torch.Tensor, coarse_axes: list[torch.Tensor]) -> torch.Tensor:
        """The original's: points, not evaluated positive, within (3^s − 1) / 2 of an evaluated positive
        of the same class; nothing inherited, so unevaluated points are negative. [n0, n1, n2]

        `labels` are the evaluated positives (the previous lattice inherits nothing under this rule), and
        every earlier lattice lies on the previous one, so they are all the positives found so far.
        """
        self.values.masked_fill_(~self.evaluated, 0.0)
        radius = (3**self.stride - 1) // 2
        windows = [_window(self.axes[a], coarse_axes[a], radius) for a in range(3)]
        bits = _box_bits(labels, [w[0] for w in windows], [w[1] for w in windows])  # [K, n0, n1, n2]
        near_positive = (bits & _POSITIVE).bool()
        return _any_class(near_positive & ~self.rule.decide(self.values))


def refine_lattice(lattice: OccupancyLattice, decode_fn: DecodeFn, chunk_size: int = CHUNK_SIZE) -> RefineStats:
    """Drive `lattice` to the end: each stage decodes what `query` asks, in chunks, then `update`s.

    decode_fn maps integer voxel coordinates [N, 3] (long, on the lattice's device) to probabilities
    [N, K] (or [N] for one class). This loop is the one place that splits the decoder's work: at most
    `chunk_size` points per decode_fn call. Returns the cost per stage; the grid is `lattice.to_dense()`.
    """
    stats = RefineStats()
    while not lattice.done:
        start = time.perf_counter()
        stage = lattice.stage
        coords = lattice.query()  # [N, 3]
        stride, points = lattice.stride, lattice.lattice_points
        lattice.update(_evaluate(decode_fn, coords, chunk_size, lattice.classes))
        if coords.is_cuda:
            torch.cuda.synchronize(coords.device)
        seconds = time.perf_counter() - start
        if len(stats.stages) > stage:  # a round of growth: counted with its stage
            grown = stats.stages[stage]
            grown.points_evaluated, grown.seconds, grown.rounds = (
                grown.points_evaluated + len(coords), grown.seconds + seconds, grown.rounds + 1)
        else:
            stats.stages.append(StageStats(stride, points, len(coords), seconds))
    return stats


def _evaluate(decode_fn: DecodeFn, coords: torch.Tensor, chunk_size: int, classes: int) -> torch.Tensor:
    """decode_fn over coords [N, 3] in chunks of at most chunk_size points. [N, K] float32"""
    if len(coords) == 0:
        return torch.zeros(0, classes, dtype=torch.float32, device=coords.device)
    return torch.cat([decode_fn(chunk).reshape(len(chunk), -1).float() for chunk in coords.split(chunk_size)])


def _unravel(flat: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Flat C-order indices [N] of a grid of `shape` -> [N, 3] indices."""
    k = flat % shape[2]
    rest = flat // shape[2]
    return torch.stack([rest // shape[1], rest % shape[1], k], dim=1)


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
    """grid[..., i0, :, :][..., i1, :][..., i2]: the outer-product gather of the last three axes of `grid [..., n0, n1, n2]`.

    The innermost axis goes first, while the tensor is still the small coarse one; the last gather,
    along the outermost spatial axis, copies whole contiguous slabs (gathering along the last axis of
    a large tensor is slow).
    """
    out = _select(grid, -1, index[2])
    out = _select(out, -2, index[1])
    return _select(out, -3, index[0])


def _select(tensor: torch.Tensor, axis: int, index: torch.Tensor) -> torch.Tensor:
    """tensor.index_select(axis, index) for a negative `axis`, by advanced indexing (several times faster
    on the CPU for outer axes)."""
    return tensor[(Ellipsis, index) + (slice(None),) * (-1 - axis)]


def _any_class(mask: torch.Tensor) -> torch.Tensor:
    """mask [K, n0, n1, n2] -> [n0, n1, n2]: set for any class (no reduction pass for one class)."""
    return mask[0] if len(mask) == 1 else mask.any(dim=0)


# The 26 neighbours of a lattice point, offsets in lattice indices: where the band grows (`OccupancyLattice._grown`).
NEIGHBOUR_OFFSETS: tuple[tuple[int, int, int], ...] = tuple(
    offset for offset in itertools.product((-1, 0, 1), repeat=3) if offset != (0, 0, 0))
_POSITIVE, _NEGATIVE = 1, 2  # the bits of one label in `_box_bits`
_BOTH = _POSITIVE | _NEGATIVE


def _box_bits(labels: torch.Tensor, lo: Sequence[torch.Tensor], hi: Sequence[torch.Tensor]) -> torch.Tensor:
    """Which labels the box [lo, hi) of `labels [..., m0, m1, m2]` around every fine point holds, as bits:
    _POSITIVE, _NEGATIVE, or both (a mixed box). [..., n0, n1, n2] uint8

    Each coarse point becomes one bit, OR-ed over the window along each axis in turn. Windows are a
    few points wide (two or three per axis for strides that halve), so the OR is that many gathers,
    the last index repeated to fill the narrower windows. Innermost axis first, so the large
    fine-resolution tensors only appear in the last, slab-wise step, and in bytes.
    """
    bits = torch.where(labels, _POSITIVE, _NEGATIVE).to(torch.uint8)
    for axis in (-1, -2, -3):
        first, stop = lo[3 + axis], hi[3 + axis]
        combined = _select(bits, axis, first)
        for step in range(1, int((stop - first).max())):
            combined |= _select(bits, axis, torch.minimum(first + step, stop - 1))
        bits = combined
    return bits
