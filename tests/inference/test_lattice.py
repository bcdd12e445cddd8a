"""The coarse-to-fine lattice and its loop on analytic shapes, where the dense answer is known exactly."""
from __future__ import annotations

import pytest
import torch

from oss_net.inference.defaults import CHUNK_SIZE
from oss_net.inference.lattice import (
    OccupancyLattice,
    cell_interpolation,
    check_stages,
    lattice_indices,
    lattice_shape,
    refine_lattice,
    seed_from_segmentation,
    spaced_stages,
)

SHAPE = (48, 44, 31)


def refine_grid(decode, shape=SHAPE, chunk_size=CHUNK_SIZE, **options):
    """(grid [D, H, W] of one class, RefineStats): the lattice driven by the one loop."""
    lattice = OccupancyLattice(shape, **options)
    stats = refine_lattice(lattice, decode, chunk_size)
    return lattice.to_dense()[0], stats


def sphere(centre: tuple[float, float, float], radius: float):
    """decode_fn of a soft ball; also counts how often each voxel is asked for."""
    centre_t = torch.tensor(centre)
    calls: list[torch.Tensor] = []

    def decode(coords: torch.Tensor) -> torch.Tensor:  # [N, 3] long -> [N]
        assert coords.dtype == torch.long and coords.shape[1] == 3
        calls.append(coords.clone())
        return torch.sigmoid(2.0 * (radius - (coords.float() - centre_t).norm(dim=1)))

    return decode, calls


def dense(decode, shape=SHAPE) -> torch.Tensor:
    grid = torch.stack(torch.meshgrid(*[torch.arange(n) for n in shape], indexing="ij"), dim=-1)
    return decode(grid.reshape(-1, 3)).reshape(*shape, -1).squeeze(-1)  # [*shape] or [*shape, K]


@pytest.mark.parametrize("stages", [(4, 2, 1), (8, 4, 2, 1), (2, 1), (6, 3, 1)])
def test_convex_object_matches_dense_grid(stages):
    decode, calls = sphere((22.3, 20.8, 15.1), 10.5)
    truth = dense(decode) > 0.5
    calls.clear()
    grid, stats = refine_grid(decode, SHAPE, stages=stages)
    assert grid.shape == SHAPE and grid.dtype == torch.float32
    assert torch.equal(grid > 0.5, truth)
    # nothing is decoded twice, and the stats count exactly what was decoded
    asked = torch.cat(calls)
    assert len(torch.unique(asked, dim=0)) == len(asked) == stats.points_evaluated
    assert [s.stride for s in stats.stages] == list(stages)
    assert stats.points_evaluated < 0.5 * truth.numel()


def test_evaluated_voxels_keep_their_probability():
    decode, calls = sphere((20.0, 21.0, 14.0), 9.0)
    grid, _ = refine_grid(decode, SHAPE)
    asked = torch.cat(calls)
    expected = decode(asked)
    assert torch.allclose(grid[asked[:, 0], asked[:, 1], asked[:, 2]], expected)


def test_prior_agrees_with_standard_and_decodes_fewer_points():
    decode, _ = sphere((24.0, 20.0, 14.0), 8.0)
    standard, standard_stats = refine_grid(decode, SHAPE, stages=(4, 2, 1))
    # a coarse "encoder segmentation" over 4 × 4 × 3 cells that covers the ball with one cell to spare
    low_res = torch.zeros(4, 4, 3)
    low_res[1:3, 1:3, 0:3] = 0.9
    seed = seed_from_segmentation(low_res, SHAPE, stride=4)
    assert seed.shape == lattice_shape(SHAPE, 4) and 0 < seed.sum() < seed.numel()
    prior, prior_stats = refine_grid(decode, SHAPE, stages=(4, 2, 1), seed=seed)
    assert torch.equal(prior > 0.5, standard > 0.5)
    assert prior_stats.stages[0].points_evaluated == int(seed.sum())
    assert prior_stats.points_evaluated < standard_stats.points_evaluated


@pytest.mark.parametrize(
    "size, cells, positions, expected",
    [  # even cells: centres 1.5 and 5.5; uneven (adaptive cells [0, 3) and [2, 5)): centres 1 and 3
        (8, 2, [0, 1, 3, 4, 7], [[1, 0], [1, 0], [0.625, 0.375], [0.375, 0.625], [0, 1]]),
        (5, 2, [0, 1, 2, 3, 4], [[1, 0], [1, 0], [0.5, 0.5], [0, 1], [0, 1]]),
        (6, 1, [0, 5], [[1], [1]]),
    ],
)
def test_cell_interpolation_puts_each_cell_at_the_centre_of_its_voxels(size, cells, positions, expected):
    weights = cell_interpolation(torch.tensor(positions), size, cells)
    assert torch.allclose(weights, torch.tensor(expected, dtype=torch.float32))


def test_cell_centred_seed_is_the_cell_and_corner_aligned_seed_is_the_original_upsampling():
    low_res = torch.zeros(4, 4, 3)
    low_res[3, 0, 1] = 1.0  # the cell of voxels [36, 48) x [0, 11) x [10, 21)
    seed = seed_from_segmentation(low_res, SHAPE, stride=4)
    positions = [lattice_indices(n, 4)[seed.nonzero()[:, a]] for a, n in enumerate(SHAPE)]
    # seeded: the lattice points within half a cell of the cell's centre (41.5, 5, 15), clamped at the faces
    assert positions[0].min() >= 36 and positions[0].max() == 47
    assert positions[1].min() == 0 and positions[1].max() <= 11
    assert positions[2].min() >= 10 and positions[2].max() <= 20
    original = torch.nn.functional.interpolate(low_res[None, None], size=lattice_shape(SHAPE, 4), mode="trilinear",
                                               align_corners=True)[0, 0] > 0.5
    assert torch.equal(seed_from_segmentation(low_res, SHAPE, 4, align_corners=True), original)
    assert not torch.equal(seed, original)


@pytest.mark.parametrize("centre, radius", [((42.5, 38.5, 26.0), 3.0), ((44.0, 40.0, 27.0), 2.8)])
def test_a_small_object_near_a_corner_is_kept_by_the_cell_centred_seed(centre, radius):
    """The original's corner-aligned upsampling moves the coarse map by up to half a cell near the faces:
    the seed misses the object and the prior loses all of it; the cell-centred seed finds it exactly."""
    decode, _ = sphere(centre, radius)
    truth = dense(decode) > 0.5
    low_res = torch.nn.functional.adaptive_max_pool3d(truth.float()[None], (6, 6, 4))[0]
    kept, _ = refine_grid(decode, seed=seed_from_segmentation(low_res, SHAPE, 4))
    lost, _ = refine_grid(decode, seed=seed_from_segmentation(low_res, SHAPE, 4, align_corners=True))
    assert torch.equal(kept > 0.5, truth)
    assert not (lost > 0.5).any() and truth.any()


def test_empty_seed_finds_nothing_and_decodes_nothing():
    decode, calls = sphere((24.0, 20.0, 14.0), 8.0)
    seed = torch.zeros(lattice_shape(SHAPE, 4), dtype=torch.bool)
    grid, stats = refine_grid(decode, SHAPE, seed=seed)
    assert stats.points_evaluated == 0 and not calls
    assert not (grid > 0.5).any()


def test_chunking_does_not_change_the_result():
    decode, calls = sphere((21.0, 23.0, 16.0), 9.7)
    big, _ = refine_grid(decode, SHAPE, chunk_size=2**20)
    calls.clear()
    small, stats = refine_grid(decode, SHAPE, chunk_size=97)
    # the same points are decoded either way; values differ only by float reduction order
    assert torch.equal(big > 0.5, small > 0.5)
    assert torch.allclose(big, small, rtol=1e-5, atol=1e-7)
    assert max(len(c) for c in calls) <= 97
    assert sum(len(c) for c in calls) == stats.points_evaluated


def test_object_touching_the_far_faces_is_resolved():
    # the lattice always holds the last index, so a ball centred on the far corner is still exact
    decode, _ = sphere((SHAPE[0] - 1.0, SHAPE[1] - 1.0, SHAPE[2] - 1.0), 12.2)
    grid, _ = refine_grid(decode, SHAPE, stages=(8, 4, 2, 1))
    assert torch.equal(grid > 0.5, dense(decode) > 0.5)


def test_two_separate_balls_and_recheck_boundary():
    def decode(coords):
        x = coords.float()
        a = (x - torch.tensor([12.0, 12.0, 10.0])).norm(dim=1) < 7.2
        b = (x - torch.tensor([34.0, 30.0, 20.0])).norm(dim=1) < 6.4
        return (a | b).float()

    truth = dense(decode) > 0.5
    grid, stats = refine_grid(decode, SHAPE)
    wide, wide_stats = refine_grid(decode, SHAPE, recheck_boundary=True)
    assert torch.equal(grid > 0.5, truth) and torch.equal(wide > 0.5, truth)
    assert wide_stats.points_evaluated > stats.points_evaluated


def test_coarser_final_stride_inherits_from_the_nearest_lattice_point():
    decode, _ = sphere((22.0, 20.0, 15.0), 10.0)
    grid, stats = refine_grid(decode, SHAPE, stages=(4, 2))
    last = refine_grid(decode, SHAPE, stages=(4, 2, 1))[0]
    assert stats.stages[-1].stride == 2
    # on the stride-2 lattice both schedules hold the same values; off it, a voxel copies a neighbour
    lattice = [lattice_indices(n, 2) for n in SHAPE]
    on = grid[lattice[0]][:, lattice[1]][:, :, lattice[2]]
    assert torch.equal(on > 0.5, last[lattice[0]][:, lattice[1]][:, :, lattice[2]] > 0.5)
    assert torch.equal(grid[1], grid[0]) and torch.equal(grid[3], grid[2])
    assert ((grid > 0.5) != (last > 0.5)).float().mean() < 0.02


def test_lattice_includes_last_index():
    assert lattice_indices(10, 4).tolist() == [0, 4, 8, 9]
    assert lattice_indices(9, 4).tolist() == [0, 4, 8]
    assert lattice_shape((10, 9, 1), 4) == (4, 3, 1)


def test_the_originals_lattice_leaves_the_last_index_out():
    assert lattice_indices(10, 4, last_index=False).tolist() == [0, 4, 8]
    assert lattice_shape((10, 9, 1), 4, last_index=False) == (3, 3, 1)
    assert lattice_shape((256, 256, 160), 4, last_index=False) == (64, 64, 40)  # the original's R/4
    assert lattice_shape((256, 256, 160), 4) == (65, 65, 41)


def test_standard_inference_on_the_brats_grid_decodes_the_originals_163840_points_at_stage_0():
    counts = {}
    for last_index in (False, True):
        lattice = OccupancyLattice((256, 256, 160), refinement="original", last_index=last_index)
        counts[last_index] = [stage.points_evaluated for stage in refine_lattice(lattice, lambda c: torch.zeros(len(c))).stages]
    assert counts == {False: [163_840, 0, 0], True: [173_225, 0, 0]}


def original_inference(decode, shape, seed=None) -> tuple[torch.Tensor, list[int]]:
    """The original's inference as docs/reference.md §8.1 writes it: a dense grid G, lattices arange(0, R, s),
    stage 0 on the whole lattice (or the seed), then the stride-s points where G dilated by 3^s differs from G.
    (G [*shape] of 0/1, decoder queries per stage)"""
    grid = torch.zeros(shape)
    counts = []
    for stride in (4, 2, 1):
        axes = torch.meshgrid(*[torch.arange(0, n, stride) for n in shape], indexing="ij")
        if stride == 4:
            mask = torch.ones(axes[0].shape, dtype=torch.bool) if seed is None else seed
        else:
            kernel = 3**stride
            dilated = torch.nn.functional.max_pool3d(grid[None, None], kernel, stride=1, padding=kernel // 2)[0, 0]
            mask = (dilated != grid)[axes]
        points = torch.stack([axis[mask] for axis in axes], dim=1)  # [N, 3]
        counts.append(len(points))
        positive = points[decode(points) > 0.5]
        grid[positive[:, 0], positive[:, 1], positive[:, 2]] = 1.0
    return grid, counts


@pytest.mark.parametrize("centre, radius", [((24.0, 20.0, 14.0), 9.0), ((45.0, 41.0, 30.0), 6.0)])
def test_paper_lattices_and_rule_make_exactly_the_originals_queries_and_grid(centre, radius):
    """Standard and prior, the second ball touching the far faces (where the original's lattice stops short)."""
    shape = (48, 44, 32)
    decode, _ = sphere(centre, radius)
    low_res = torch.nn.functional.adaptive_max_pool3d((dense(decode, shape) > 0.5).float()[None], (6, 6, 4))[0]
    original_seed = torch.nn.functional.interpolate(low_res[None, None], size=(12, 11, 8), mode="trilinear",
                                                    align_corners=True)[0, 0] > 0.5  # onto R/4, as §8.2
    seed = seed_from_segmentation(low_res, shape, 4, align_corners=True, last_index=False)
    assert torch.equal(seed, original_seed)
    for first in (None, seed):
        expected, counts = original_inference(decode, shape, first)
        grid, stats = refine_grid(decode, shape, seed=first, refinement="original", last_index=False)
        assert [stage.points_evaluated for stage in stats.stages] == counts
        assert torch.equal((grid > 0.5).float(), expected)


@pytest.mark.parametrize(
    "stages, message",
    [((), "at least one stride"), ((4, 0), "positive"), ((2, 4), "strictly decreasing"), ((4, 3, 1), "dividing")],
)
def test_bad_stages(stages, message):
    with pytest.raises(ValueError, match=message):
        check_stages(stages)


def test_seed_of_wrong_shape_is_rejected():
    decode, _ = sphere((10.0, 10.0, 10.0), 3.0)
    with pytest.raises(ValueError, match=r"`seed` has shape \(12, 11, 8\), expected the stride-4 lattice shape \(13, 12, 9\)"):
        refine_grid(decode, SHAPE, seed=torch.ones(12, 11, 8, dtype=torch.bool))


def three_regions(centre=(22.0, 20.0, 15.0)):
    """decode_fn of K = 3 nested soft balls (like BraTS WT ⊃ TC ⊃ ET) plus a separate ball in class 2 only."""
    centre_t = torch.tensor(centre)
    radii = torch.tensor([11.5, 7.3, 3.6])
    calls: list[torch.Tensor] = []

    def decode(coords: torch.Tensor) -> torch.Tensor:  # [N, 3] long -> [N, 3]
        calls.append(coords.clone())
        x = coords.float()
        nested = torch.sigmoid(2.0 * (radii - (x - centre_t).norm(dim=1, keepdim=True)))  # [N, 3]
        apart = torch.sigmoid(2.0 * (4.4 - (x - torch.tensor([40.0, 36.0, 24.0])).norm(dim=1)))
        return torch.stack([nested[:, 0], torch.maximum(nested[:, 1], apart), nested[:, 2]], dim=1)

    return decode, calls


@pytest.mark.parametrize("prior", [False, True])
def test_three_classes_match_the_dense_grid_per_class(prior):
    decode, calls = three_regions()
    truth = dense(decode).permute(3, 0, 1, 2) > 0.5  # [3, *SHAPE]
    assert all(0 < truth[k].sum() < truth[k].numel() for k in range(3))
    calls.clear()
    seed = None
    if prior:  # a coarse K-channel "encoder segmentation": every class present in a cell marks it
        low_res = torch.nn.functional.adaptive_max_pool3d(truth.float()[None], (6, 6, 4))[0]
        seed = seed_from_segmentation(low_res, SHAPE, stride=4)
    lattice = OccupancyLattice(SHAPE, seed=seed, classes=3)
    stats = refine_lattice(lattice, decode, chunk_size=1000)
    grid = lattice.to_dense()
    assert grid.shape == (3, *SHAPE) and torch.equal(grid > 0.5, truth)
    asked = torch.cat(calls)
    assert len(torch.unique(asked, dim=0)) == len(asked) == stats.points_evaluated < 0.5 * truth[0].numel()
    # every decoded voxel keeps all three of its probabilities
    assert torch.allclose(grid[:, asked[:, 0], asked[:, 1], asked[:, 2]], decode(asked).t())


def test_a_class_undecided_alone_is_refined():
    """Class 2's separate ball lies where classes 0 and 1 are all negative: it is still resolved exactly."""
    decode, _ = three_regions()
    lattice = OccupancyLattice(SHAPE, classes=3)
    refine_lattice(lattice, decode)
    one_class = OccupancyLattice(SHAPE)
    refine_lattice(one_class, lambda coords: decode(coords)[:, 1])
    assert torch.equal(lattice.to_dense()[1] > 0.5, dense(decode)[..., 1] > 0.5)
    assert torch.equal(one_class.to_dense()[0] > 0.5, dense(decode)[..., 1] > 0.5)


def test_seed_of_several_classes_is_any_class_above_threshold():
    low_res = torch.zeros(2, 4, 4, 3)
    low_res[0, 0, 0, 0] = 0.9
    low_res[1, 3, 3, 2] = 0.9
    seed = seed_from_segmentation(low_res, SHAPE, stride=4)
    assert seed[0, 0, 0] and seed[-1, -1, -1]
    assert torch.equal(seed, seed_from_segmentation(low_res[0], SHAPE, 4) | seed_from_segmentation(low_res[1], SHAPE, 4))


def ellipsoid_decoder(centre, radii):
    """decode_fn of a soft ellipsoid (any orientation of its axes along the grid's)."""
    centre_t, radii_t = torch.tensor(centre), torch.tensor(radii)

    def decode(coords: torch.Tensor) -> torch.Tensor:
        distance = (((coords.float() - centre_t) / radii_t) ** 2).sum(dim=1).sqrt()
        return torch.sigmoid(8.0 * (1.0 - distance))

    return decode


def test_the_band_is_the_cells_whose_corners_disagree_and_grows_to_the_dense_result():
    """Over many shapes the narrow band plus its growth equals the dense grid; growth is what some need; the
    wide window of recheck_boundary decodes more for the same answer."""
    generator = torch.Generator().manual_seed(0)
    grew = False
    for _ in range(12):
        centre = (torch.rand(3, generator=generator) * torch.tensor([20.0, 18.0, 10.0]) + 12).tolist()
        radii = (torch.rand(3, generator=generator) * 9 + 2.5).tolist()
        decode = ellipsoid_decoder(centre, radii)
        narrow, stats = refine_grid(decode, SHAPE)
        assert torch.equal(narrow > 0.5, dense(decode) > 0.5)
        wide, wide_stats = refine_grid(decode, SHAPE, recheck_boundary=True)
        assert torch.equal(wide > 0.5, narrow > 0.5)
        assert stats.stages[-1].points_evaluated < wide_stats.stages[-1].points_evaluated
        grew |= any(stage.rounds > 1 for stage in stats.stages)
    assert grew


def test_growth_corrects_labels_the_narrow_band_left_wrong():
    """Driven by hand: in some rounds after the first, decoded points get another label than the one they had
    inherited, which the narrow band alone would have kept (wrong: the final grid equals the dense one)."""
    generator = torch.Generator().manual_seed(0)
    corrected = 0
    for _ in range(12):
        centre = (torch.rand(3, generator=generator) * torch.tensor([20.0, 18.0, 10.0]) + 12).tolist()
        decode = ellipsoid_decoder(centre, (torch.rand(3, generator=generator) * 9 + 2.5).tolist())
        lattice = OccupancyLattice(SHAPE)
        while not lattice.done:
            stage, growing = lattice.stage, lattice.pending is not None
            coords = lattice.query()
            inherited = lattice.values.view(1, -1)[0, lattice.pending] > 0.5 if len(coords) else None
            values = decode(coords)
            if growing and len(coords):
                corrected += int(((values > 0.5) != inherited).sum())
            lattice.update(values)
            assert stage == lattice.stage or lattice.pending is None  # a round of growth stays in its stage
        assert torch.equal(lattice.to_dense()[0] > 0.5, dense(decode) > 0.5)
    assert corrected > 0


def test_spaced_stages_keep_the_first_lattice_in_millimetres():
    assert spaced_stages((4, 2, 1), (0.5, 0.5, 0.5)) == (8, 4, 2, 1)
    assert spaced_stages((4, 2, 1), (0.25, 0.5, 0.4)) == (8, 4, 2, 1)  # the least refined axis decides
    assert spaced_stages((4, 2, 1), (0.25, 0.25, 0.25)) == (16, 8, 4, 2, 1)
    assert spaced_stages((6, 3, 1), (0.25,) * 3) == (24, 12, 4, 2, 1)
    assert spaced_stages((4, 2), (0.5,) * 3) == (8, 4, 2)
    assert spaced_stages((4, 2, 1), (1.0, 1.0, 0.2)) == spaced_stages((4, 2, 1), (2.0,) * 3) == (4, 2, 1)
    for stages in ((8, 4, 2, 1), (16, 8, 4, 2, 1), (24, 12, 4, 2, 1)):
        assert check_stages(stages) == stages


def test_a_seed_at_positions_is_the_seed_of_the_lattice_those_positions_are():
    low_res = torch.rand(2, 4, 4, 3, generator=torch.Generator().manual_seed(3))
    default = seed_from_segmentation(low_res, SHAPE, 4, keep_classes=True)
    positions = [lattice_indices(n, 4).double() for n in SHAPE]
    assert torch.equal(seed_from_segmentation(low_res, SHAPE, 4, keep_classes=True, positions=positions), default)
    # a lattice twice as fine, half a voxel off (an output at half the spacing): stride 8 of it is stride 4 here
    fine = [lattice_indices(2 * n, 8).double() / 2 - 0.25 for n in SHAPE]
    seed = seed_from_segmentation(low_res, SHAPE, 8, positions=fine)
    assert seed.shape == tuple(len(p) for p in fine) and seed.any() and not seed.all()
    with pytest.raises(ValueError, match="corner-aligned seed"):
        seed_from_segmentation(low_res, SHAPE, 4, align_corners=True, positions=positions)


def test_lattice_walks_query_update_to_dense():
    lattice = OccupancyLattice((9, 5, 5), stages=(4, 1))
    with pytest.raises(RuntimeError, match="update\\(\\) must follow query\\(\\)"):
        lattice.update(torch.zeros(0))
    coords = lattice.query()
    assert lattice.stride == 4 and coords.tolist()[:3] == [[0, 0, 0], [0, 0, 4], [0, 4, 0]]
    assert len(coords) == lattice.lattice_points == 3 * 2 * 2
    with pytest.raises(ValueError, match=r"values must be \[12, 1\] \(points, classes\), got \[12, 2\]"):
        lattice.update(torch.zeros(12, 2))
    with pytest.raises(RuntimeError, match="at stage 0 of 2: finish it"):
        lattice.to_dense()
    lattice.update(torch.zeros(12))  # all negative: nothing is undecided at stride 1
    assert len(lattice.query()) == 0
    lattice.update(torch.zeros(0))
    assert lattice.done and torch.equal(lattice.to_dense(), torch.zeros(1, 9, 5, 5))
    with pytest.raises(RuntimeError, match="finished"):
        lattice.query()


# --- the original's candidate rule (refinement="original", docs/reference.md §8.1) --------------------------------


def decoded_per_stage(calls: list[torch.Tensor], stats) -> list[torch.Tensor]:
    """The coordinates [N_k, 3] each stage asked for (calls come in stage order, chunks within a stage)."""
    return list(torch.cat(calls).split([s.points_evaluated for s in stats.stages]))


def as_mask(coords: torch.Tensor) -> torch.Tensor:
    mask = torch.zeros(SHAPE, dtype=torch.bool)
    mask[coords[:, 0], coords[:, 1], coords[:, 2]] = True
    return mask


@pytest.mark.parametrize("refinement", ["ours", "original"])
@pytest.mark.parametrize("centre, radius", [((24.0, 20.0, 14.0), 8.0), ((24.0, 22.0, 15.0), 14.0)])
def test_both_rules_equal_dense_thresholding_on_a_smooth_oracle(refinement, centre, radius):
    decode, _ = sphere(centre, radius)
    grid, _ = refine_grid(decode, SHAPE, refinement=refinement)
    assert torch.equal(grid > 0.5, dense(decode) > 0.5)


def test_original_rule_decodes_the_whole_object_where_ours_decodes_a_shell():
    decode, calls = sphere((24.0, 22.0, 15.0), 14.0)
    ours, ours_stats = refine_grid(decode, SHAPE, chunk_size=2**20)
    ours_stages = decoded_per_stage(calls, ours_stats)
    calls.clear()
    original, original_stats = refine_grid(decode, SHAPE, chunk_size=2**20, refinement="original")
    original_stages = decoded_per_stage(calls, original_stats)
    inside = original > 0.5
    assert torch.equal(inside, ours > 0.5)
    # nothing is inherited: every voxel of the original's object was decoded; ours leaves the interior undecoded
    assert bool(as_mask(torch.cat(original_stages))[inside].all())
    assert not bool(as_mask(torch.cat(ours_stages))[inside].all())
    # same first stage; at stride 2 the original's 9^3 window around positives holds more than ours' band
    assert torch.equal(original_stages[0], ours_stages[0])
    assert len(ours_stages[1]) < len(original_stages[1])
    # for an object this large (radius 14) the interior outweighs ours' thicker shell
    assert original_stats.points_evaluated > ours_stats.points_evaluated


def test_original_rule_decodes_known_negatives_again_and_counts_them():
    decode, calls = sphere((24.0, 20.0, 14.0), 8.0)
    grid, stats = refine_grid(decode, SHAPE, refinement="original")
    asked = torch.cat(calls)
    assert len(asked) == stats.points_evaluated > len(torch.unique(asked, dim=0))
    first, later = asked.split([stats.stages[0].points_evaluated, len(asked) - stats.stages[0].points_evaluated])
    again = as_mask(first) & as_mask(later)
    assert again.any() and not (grid[again] > 0.5).any()  # only known negatives are asked for again


def test_pocket_smaller_than_the_coarse_spacing_is_kept_by_the_original_and_filled_by_ours():
    """A two-voxel negative pocket between the stride-2 lattice points inside a ball: the original decodes
    every voxel next to a positive and finds it; ours sees agreeing neighbourhoods there, decodes
    nothing and fills it (documented in oss_net.inference.lattice)."""
    pocket = torch.tensor([[21, 21, 15], [21, 21, 16]])
    ball, _ = sphere((22.0, 20.0, 15.0), 10.0)

    def decode(coords: torch.Tensor) -> torch.Tensor:
        in_pocket = (coords[:, None, :] == pocket[None]).all(dim=2).any(dim=1)
        return torch.where(in_pocket, 0.0, ball(coords))

    truth = dense(decode) > 0.5
    original, _ = refine_grid(decode, SHAPE, refinement="original")
    ours, _ = refine_grid(decode, SHAPE)
    assert torch.equal(original > 0.5, truth)
    assert (ours[pocket[:, 0], pocket[:, 1], pocket[:, 2]] > 0.5).all()
    assert int(((ours > 0.5) != truth).sum()) == len(pocket)


def test_original_rule_loses_a_positive_voxel_whose_stride_2_neighbours_are_all_negative():
    """Where the ball's surface grazes voxel (28, 12, 15), its two stride-2 neighbours (z 14 and 16) lie just
    outside: the original never decodes it (and cannot recover it); ours' wider window does."""
    decode, _ = sphere((22.3, 20.8, 15.1), 10.5)
    truth = dense(decode) > 0.5
    assert truth[28, 12, 15] and not truth[28, 12, 14] and not truth[28, 12, 16]
    original, _ = refine_grid(decode, SHAPE, refinement="original")
    ours, _ = refine_grid(decode, SHAPE)
    assert original[28, 12, 15] == 0.0 and torch.equal(ours > 0.5, truth)


@pytest.mark.parametrize("prior", [False, True])
def test_original_rule_with_three_classes_matches_the_dense_grid(prior):
    decode, _ = three_regions()
    truth = dense(decode).permute(3, 0, 1, 2) > 0.5  # [3, *SHAPE]
    seed = None
    if prior:
        seed = seed_from_segmentation(torch.nn.functional.adaptive_max_pool3d(truth.float()[None], (6, 6, 4))[0], SHAPE, 4)
    lattice = OccupancyLattice(SHAPE, seed=seed, classes=3, refinement="original")
    refine_lattice(lattice, decode, chunk_size=1000)
    assert torch.equal(lattice.to_dense() > 0.5, truth)
