"""Inference seconds and decoder queries: dense vs standard vs prior refinement, and a full scan end to end.

    python -m benchmarks.bench_infer                    # CPU: demo-size C (64x64x40), what `make bench` runs
    python -m benchmarks.bench_infer --size gpu         # BraTS-size C (256x256x160) on a GPU, fp32 and bf16
    python -m benchmarks.bench_infer --size cpu-brats   # one BraTS-size scan end to end on the CPU (minutes)
    python -m benchmarks.bench_infer --size cpu-brats --original   # plus standard and prior under the original's rule
    python -m benchmarks.bench_infer --checkpoint demo_output/train/best_model.pt   # a trained model instead

The paper (docs/reference.md §8.2, §13.4) makes OSS-Net C's inference about 2x faster by seeding the
coarse stage with the encoder's segmentation ("prior") instead of the MISE-like "standard" scheme
(`benchmarks.paper.FIG6_SECONDS`). Targets here: prior >= 2x faster than standard and <= 5% of the
voxels decoded; on an H100 <= 0.25 s per BraTS-size volume; on the CPU, OSS-Net C prior no slower than
the 3D U-Net's dense pass over the same scan.

"dense" decodes every voxel (stages (1,)), "standard" the whole stride-4 lattice then the boundary
shell, "prior" only the seeded part of the lattice then the same shell (the default stages). Standard
and prior run under both refinement rules (rows' `refinement`): "ours" and the original's ("original",
which decodes every voxel next to a positive, so its counts and seconds are the ones comparable with
the paper's Fig. 6); dense has one stage and no rule ("-"). At the demo grid the ellipsoid is small and
the two rules decode about as many points; `brats_point_counts` (in the CPU result, no model, seconds)
gives the decoder queries of ellipsoids of 0.4%, 1.2% and 3.4% of the BraTS-size grid under each rule
and each seed upsampling, and paper mode's (the original's rule on the original's lattices, which have
no last index: stage 0 of standard decodes exactly the original's 163,840 points). All run through `oss_net.inference.Predictor`. Without a checkpoint the model
is an untrained OSSNet wrapped in `bench_chunks.SyntheticOccupancy`: every decoder computation is real,
but the answers are a fixed ellipsoid of 3.4% of the volume (a large tumour), so the point counts are
those of a well-trained model on that object.

`cpu-brats` times what a user waits for on one scan: read the four NIfTI files of a synthetic
240x240x155 BraTS case and preprocess them onto the 256x256x160 grid, encode, refine stage by stage,
and write the mask NIfTI on the input grid; rows "standard" and "prior" (C, oracle answers, refinement
"ours") and "unet3d" (the untrained 3D U-Net baseline's dense pass, whose cost does not depend on its
weights), each with the split per stage, in benchmarks/results/infer_cpu_brats.json (`make bench` runs
it). Standard and prior run FULL_SCAN_REPEATS times each, in interleaved rounds, and each row is the
median run; the 3D U-Net runs once. `--original` adds standard and prior under the original's rule (several minutes more), the rows to
hold against the paper's Fig. 6.

Where prior's speed-up comes from: both modes decode the same boundary shell at strides 2 and 1
(115,634 points for the 3.4% ellipsoid); they differ only at stride 4, where standard decodes the whole
lattice (173,225 points) and prior the seed (18,570: the encoder's 8x8x5 output cells that touch the
object, max-pooled as its training target is, each value placed at its cell's centre). So prior decodes
2.15x fewer points, and the fixed costs both pay (read, encode, write) take the end-to-end ratio a little
lower; the smaller the object, the larger the ratio (3.5x the points at 1.2%, 6.6x at 0.4%). The
original's corner-aligned upsampling gives this object a seed of 30,077 points (1.98x) and can lose a
small object near a corner (docs/reference.md §12.28). Taking the seed's interior as positive without
decoding it would save more points but is wrong: the interior of a max-pooled seed is mostly outside the
object, so it is not done. Under the original's rule the ratio is lower (552,892 vs 398,237 points): it
decodes the whole object interior in both modes.

What the surface costs: `brats_point_counts` also gives the stride-1 stage's points per boundary voxel next to
`stride_1_floor`, the fewest points a last stage can decode while checking every voxel next to the surface (its
26 neighbours, both sides, less the stride-2 lattice's points). Rule "ours" decodes exactly that floor, about 3.1
points per boundary voxel on every ellipsoid, so the whole refinement's points per boundary voxel (4.2–4.8 in
prior mode, the seed and stride 2 included) cannot come down to 2.5 without checking fewer neighbours.
`benchmarks.bench_band` measures the same on trained models, with the voxels that differ from a dense decode.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from benchmarks.bench_chunks import ELLIPSOID_RADIUS, SyntheticOccupancy, ellipsoid, oracle_config, oracle_model_and_volume
from benchmarks.common import benchmark_device, format_table, time_call, write_result
from oss_net.data import discover, load_case
from oss_net.data.formats import save_image
from oss_net.data.grid import inverse_orientation, reorient
from oss_net.data.nifti import read_header
from oss_net.data.synthetic import write_synthetic_dataset
from oss_net.geometry import grid_at_spacing, spacing_from_affine
from oss_net.inference import DensePredictor, PredictOptions, Predictor
from oss_net.inference.defaults import REFINEMENT, STAGES
from oss_net.inference.lattice import REFINEMENTS, OccupancyLattice, lattice_indices, refine_lattice, seed_from_segmentation
from oss_net.inference.predictor import default_chunk_size
from oss_net.inference.writers import input_grid_labels, save_input_grid_image
from oss_net.metrics import surface_voxels
from oss_net.models import build_model, get_unet_config, load_model

SIZES = ("cpu", "gpu", "cpu-brats")
MODES: dict[str, dict[str, Any]] = {
    "dense": {"mode": "standard", "stages": (1,)},
    "standard": {"mode": "standard", "stages": STAGES},
    "prior": {"mode": "prior", "stages": STAGES},
}
BRATS_INPUT_SHAPE = (240, 240, 155)  # a BraTS scan, preprocessed (zero-padded) onto the 256x256x160 grid
SMOKE_INPUT_SHAPE = (16, 16, 16)  # padded onto the 20x20x16 smoke grid of `bench_chunks.oracle_config`


def _model_and_volume(size: str, smoke: bool, checkpoint: str | None, device: torch.device) -> tuple[Any, torch.Tensor, str]:
    """(model, volume [C, *S], description): a trained checkpoint on a synthetic case, or the ellipsoid oracle."""
    if checkpoint is not None:
        model = load_model(checkpoint, map_location=device)
        return model, _synthetic_case(model.config), f"checkpoint {checkpoint}"
    model, volume = oracle_model_and_volume(size, smoke, device)
    return model, volume, f"untrained {model.config.name} + ellipsoid answers"


def _synthetic_case(config: Any) -> torch.Tensor:
    """One synthetic BraTS case (seed 123, not a training case) loaded onto the model grid."""
    with tempfile.TemporaryDirectory() as folder:
        shape = tuple(s - (4 if i < 2 else 2) for i, s in enumerate(config.volume_shape))
        root = write_synthetic_dataset("brats", folder, cases=1, shape=shape, seed=123)
        case = load_case(discover("brats", root, "all")[0], config, with_border=False)
        return torch.as_tensor(case.image).clone()


def _refinements(name: str) -> tuple[str, ...]:
    """The refinement rules a method runs under: both, or "-" for dense (one stage: no candidates to choose)."""
    return ("-",) if len(MODES[name]["stages"]) == 1 else REFINEMENTS


def _measure(
    model: Any, volume: torch.Tensor, name: str, refinement: str, device: torch.device, amp: str, repeats: int
) -> tuple[dict, torch.Tensor]:
    method, rule = MODES[name], REFINEMENT if refinement == "-" else refinement
    options = PredictOptions(mode=method["mode"], stages=method["stages"], amp=amp, refinement=rule)
    predictor = Predictor(model, options, device=device)  # the device's default chunk
    synchronize = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else None
    outcome: list[Any] = []
    # the last timed call's prediction gives the counts, so nothing is decoded only for them
    seconds = time_call(lambda: outcome.append(predictor.predict(volume)), repeats=repeats, warmup=0, synchronize=synchronize)
    prediction = outcome[-1]
    voxels = prediction.occupancy.numel()
    row = {
        "method": name,
        "refinement": refinement,
        "amp": amp,
        "seconds": seconds,
        "decoder_points": prediction.points_evaluated,
        "voxel_fraction": prediction.points_evaluated / voxels,
        "foreground_voxels": int(prediction.mask_model_grid.sum()),
    }
    return row, prediction.mask_model_grid


def _measure_methods(model: Any, volume: torch.Tensor, device: torch.device, amp: str, repeats: int) -> list[dict]:
    """One row per method and refinement rule at `amp`, each with its voxels differing from dense and its decoded
    points per boundary voxel of the dense mask (`boundary_voxels`)."""
    rows, masks = [], {}
    for name in MODES:
        for refinement in _refinements(name):
            row, masks[name, refinement] = _measure(model, volume, name, refinement, device, amp, repeats)
            rows.append(row)
    boundary = boundary_voxels(masks["dense", "-"])
    for row in rows:
        row["voxels_differing_from_dense"] = int((masks[row["method"], row["refinement"]] != masks["dense", "-"]).sum())
        row["points_per_boundary_voxel"] = row["decoder_points"] / max(boundary, 1)
    return rows


def boundary_voxels(mask: Any) -> int:
    """The surface voxels of a mask (`oss_net.metrics.surface_voxels`: foreground with a background face neighbour),
    what the decoded points are counted against: a refinement that pays for the surface pays a few per voxel."""
    return int(surface_voxels(np.asarray(mask, dtype=bool)).sum())


def stride_1_floor(mask: Any, previous_stride: int = 2) -> int:
    """The fewest points a last stage (stride 1) can decode and still check every voxel next to the surface of `mask
    [*S]` (or of each class of [K, *S]): the voxels with a 26-neighbour of the other decision inside the volume, on
    both sides (what the band's growth verifies, `oss_net.inference.lattice`), less those on the previous stage's
    lattice (decoded there). Counts only the last stage; the coarse stages come on top."""
    masks = np.asarray(mask, dtype=bool).reshape(-1, *np.shape(mask)[-3:])  # [K, *S]
    cube = np.ones((3, 3, 3), dtype=bool)
    band = np.zeros(masks.shape[1:], dtype=bool)
    for each in masks:
        band |= (each & ~ndimage.binary_erosion(each, cube, border_value=1)) | (ndimage.binary_dilation(each, cube) & ~each)
    on_previous = np.zeros(band.shape, dtype=bool)
    on_previous[np.ix_(*(lattice_indices(n, previous_stride).numpy() for n in band.shape))] = True
    return int((band & ~on_previous).sum())


def run(size: str = "cpu", smoke: bool = False, checkpoint: str | None = None, original: bool = False) -> dict:
    """Seconds and decoder queries of dense, standard and prior inference (the last two under both
    refinement rules); prior's speed-ups with ours, and the original rule's cost against ours.
    `size="cpu-brats"` runs the end-to-end full scan instead (`run_full_scan`; `original` adds its rows
    under the original's rule)."""
    if size == "cpu-brats":
        if checkpoint is not None:
            raise ValueError("--size cpu-brats times the ellipsoid oracle; --checkpoint applies to cpu and gpu")
        return run_full_scan(smoke, original)
    if original:
        raise ValueError("--original adds rows to the full scan (--size cpu-brats); cpu and gpu time both rules already")
    device = benchmark_device(size)
    torch.manual_seed(0)
    model, volume, description = _model_and_volume(size, smoke, checkpoint, device)
    repeats = 1 if smoke or size == "cpu" else 5
    amps = ("off", "bf16") if size == "gpu" else ("off",)
    if device.type == "cuda":
        Predictor(model, PredictOptions(mode="standard"), device=device).predict(volume)  # warm-up (kernels, allocator)

    rows = [row for amp in amps for row in _measure_methods(model, volume, device, amp, repeats)]
    timed = {(r["method"], r["amp"]): r for r in rows if r["refinement"] in ("-", REFINEMENT)}
    original = {r["method"]: r for r in rows if r["refinement"] == "original" and r["amp"] == "off"}
    result: dict[str, Any] = {
        "size": size,
        "smoke": smoke,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(),
        "model": description,
        "volume_shape": list(model.config.volume_shape),
        "chunk_size": default_chunk_size(device),
        "rows": rows,
        "speedup_prior_vs_standard": timed[("standard", "off")]["seconds"] / timed[("prior", "off")]["seconds"],
        "speedup_prior_vs_dense": timed[("dense", "off")]["seconds"] / timed[("prior", "off")]["seconds"],
        "points_ratio_standard_vs_prior": timed[("standard", "off")]["decoder_points"] / max(timed[("prior", "off")]["decoder_points"], 1),
        "prior_voxel_fraction": timed[("prior", "off")]["voxel_fraction"],
        "original_vs_ours": {
            method: {
                "points_ratio": row["decoder_points"] / max(timed[(method, "off")]["decoder_points"], 1),
                "seconds_ratio": row["seconds"] / timed[(method, "off")]["seconds"],
            }
            for method, row in original.items()
        },
    }
    if size == "cpu" and not smoke:
        result["brats_point_counts"] = brats_point_counts()
        print(format_table(result["brats_point_counts"]))
    if device.type == "cuda":
        result["gpu_seconds_per_volume"] = min(timed[("prior", amp)]["seconds"] for amp in amps)
    print(format_table(rows))
    print(
        f"prior vs standard: {result['speedup_prior_vs_standard']:.2f}x faster, "
        f"{result['points_ratio_standard_vs_prior']:.2f}x fewer points; prior decodes "
        f"{100 * result['prior_voxel_fraction']:.2f}% of the voxels; {result['speedup_prior_vs_dense']:.1f}x faster than dense"
    )
    for method, ratios in result["original_vs_ours"].items():
        print(f"{method}, original refinement vs ours: {ratios['points_ratio']:.2f}x the points, "
              f"{ratios['seconds_ratio']:.2f}x the seconds")
    write_result("infer", result)
    return result


POINT_COUNT_RADII = (0.1, 0.14, ELLIPSOID_RADIUS)  # ellipsoid radii (fractions of the grid): 0.4%, 1.2%, 3.4% of it
# (refinement rule, lattices with the last index): ours, the original's rule on our lattices, and paper mode's
# (the original's rule on the original's lattices arange(0, R, s), oss_net.compat)
POINT_COUNT_SCHEMES = (("ours", True), ("original", True), ("original", False))


def brats_point_counts() -> list[dict[str, Any]]:
    """Decoder queries of standard and prior for ellipsoids of three sizes on the BraTS-size grid (256x256x160),
    under each refinement rule and lattice (`POINT_COUNT_SCHEMES`; paper mode = rule "original", lattice
    "original", seed "corners") and, for prior, each seed upsampling (cell-centred, ours; corner-aligned, the
    original's); the lattice is driven with the ellipsoid's answers and no model (counts only, seconds)."""
    config = oracle_config("gpu", smoke=False)
    rows = []
    for radius in POINT_COUNT_RADII:
        mask = ellipsoid(config.volume_shape, radius=radius)  # [*S] bool
        low_res = torch.nn.functional.adaptive_max_pool3d(mask[None, None].float(), config.encoder_output_shape)[0]
        boundary, floor = boundary_voxels(mask), stride_1_floor(mask)
        for refinement, last_index in POINT_COUNT_SCHEMES:
            seeds = {"-": None, **{("corners" if corners else "cells"): seed_from_segmentation(
                low_res, config.volume_shape, STAGES[0], align_corners=corners, last_index=last_index)
                for corners in (False, True)}}
            standard_points = None
            for seed_name, seed in seeds.items():
                lattice = OccupancyLattice(config.volume_shape, STAGES, seed=seed, refinement=refinement,
                                           last_index=last_index)
                stats = refine_lattice(lattice, lambda coords: mask[coords[:, 0], coords[:, 1], coords[:, 2]].float())
                standard_points = standard_points or stats.points_evaluated
                rows.append({"object_fraction": round(float(mask.float().mean()), 4),
                             "method": "standard" if seed is None else "prior", "refinement": refinement,
                             "lattice": "ours" if last_index else "original", "seed": seed_name,
                             "decoder_points": stats.points_evaluated,
                             "points_per_boundary_voxel": round(stats.points_evaluated / boundary, 3),
                             "points_ratio_standard_vs_this": round(standard_points / max(stats.points_evaluated, 1), 3),
                             "voxel_fraction": round(stats.points_evaluated / mask.numel(), 5),
                             "stage_points": [stage.points_evaluated for stage in stats.stages],
                             "stride_1_points_per_boundary_voxel": round(stats.stages[-1].points_evaluated / boundary, 3),
                             "stride_1_floor_per_boundary_voxel": round(floor / boundary, 3),
                             "voxels_differing_from_ellipsoid": int(((lattice.to_dense()[0] > 0.5) != mask).sum())})
    return rows


def run_full_scan(smoke: bool = False, original: bool = False) -> dict:
    """One BraTS-size scan end to end on the CPU (read → preprocess → encode → refine → write mask) for
    OSS-Net C standard and prior and the 3D U-Net's dense pass; seconds per stage and the three targets.
    `original` adds standard and prior under the original's refinement rule."""
    torch.manual_seed(0)
    config = oracle_config("cpu-brats", smoke)
    unet_overrides = {"volume_shape": config.volume_shape, "channels": (4, 8), "strides": (2,)} if smoke else {}
    oracle = SyntheticOccupancy(build_model(config))
    # prior runs first: its first run pays the one-time warm-up (thread pool, allocator, first pages), the median drops it
    predictors: dict[tuple[str, str], Any] = {
        (mode, refinement): Predictor(oracle, PredictOptions(mode=mode, refinement=refinement), device="cpu")
        for refinement in (REFINEMENTS if original else (REFINEMENT,)) for mode in ("prior", "standard")
    }
    unet = build_model(get_unet_config("unet3d", "brats", **unet_overrides))
    predictors["unet3d", "-"] = DensePredictor(unet, device="cpu")
    with tempfile.TemporaryDirectory() as folder:
        files = _write_scan(Path(folder), SMOKE_INPUT_SHAPE if smoke else BRATS_INPUT_SHAPE)
        runs: dict[tuple[str, str], list] = {key: [] for key in predictors}
        for repeat in range(FULL_SCAN_REPEATS):  # rounds over the methods: drift hits them alike
            for (method, refinement), predictor in predictors.items():
                if repeat == 0 or method != "unet3d":  # one dense pass: its 40 s leave no doubt about the ratio
                    runs[method, refinement].append(_full_scan_row(method, predictor, files, Path(folder)))
        rows, masks = [], {}
        for (method, refinement), timed in runs.items():
            row, masks[method, refinement] = sorted(timed, key=lambda run: run[0]["seconds"])[len(timed) // 2]  # median
            rows.append({"method": method, "refinement": refinement, "repeats": len(timed),
                         "seconds_of_each_run": [run[0]["seconds"] for run in timed], **row})
        boundary = boundary_voxels(masks["standard", REFINEMENT])  # the oracle's object: standard's mask is dense
        for row in rows:
            differing = masks[row["method"], row["refinement"]] != masks["standard", REFINEMENT]
            row.update(voxels_differing_from_standard=int(differing.sum()),
                       points_per_boundary_voxel=row["decoder_points"] / max(boundary, 1))
        rows.append(_half_spacing_row(oracle, files, Path(folder)))
    by_method = {(row["method"], row["refinement"]): row for row in rows}
    prior, standard, unet = by_method["prior", REFINEMENT], by_method["standard", REFINEMENT], by_method["unet3d", "-"]
    result: dict[str, Any] = {
        "size": "cpu-brats",
        "smoke": smoke,
        "device": "cpu",
        "threads": torch.get_num_threads(),
        "model": f"untrained {config.name} + ellipsoid answers; untrained unet3d",
        "input_shape": list(SMOKE_INPUT_SHAPE if smoke else BRATS_INPUT_SHAPE),
        "volume_shape": list(config.volume_shape),
        "chunk_size": default_chunk_size(torch.device("cpu")),
        "stages": list(STAGES),
        "rows": rows,
        "columns": list(_FULL_SCAN_COLUMNS),
        "speedup_prior_vs_standard": standard["seconds"] / prior["seconds"],
        "points_ratio_standard_vs_prior": standard["decoder_points"] / max(prior["decoder_points"], 1),
        "speedup_prior_vs_unet3d": unet["seconds"] / prior["seconds"],
        "prior_voxel_fraction": prior["voxel_fraction"],
    }
    if original:
        result["original_speedup_prior_vs_standard"] = (
            by_method["standard", "original"]["seconds"] / by_method["prior", "original"]["seconds"])
    half = by_method[HALF_SPACING, REFINEMENT]
    result["half_spacing_vs_prior"] = {"seconds_ratio": half["seconds"] / prior["seconds"],
                                       "points_ratio": half["decoder_points"] / max(prior["decoder_points"], 1)}
    result["targets_met"] = {
        "prior_2x_faster_than_standard": result["speedup_prior_vs_standard"] >= 2.0,
        "prior_decodes_at_most_5%_of_voxels": result["prior_voxel_fraction"] <= 0.05,
        "prior_no_slower_than_unet3d": result["speedup_prior_vs_unet3d"] >= 1.0,
        "half_spacing_at_most_5x_the_points": result["half_spacing_vs_prior"]["points_ratio"] <= 5.0,
        "half_spacing_at_most_5x_the_seconds": result["half_spacing_vs_prior"]["seconds_ratio"] <= 5.0,
    }
    result["headline"] = (
        f"prior vs standard: {result['speedup_prior_vs_standard']:.2f}x faster ({result['points_ratio_standard_vs_prior']:.2f}x "
        f"fewer decoded points); prior vs unet3d: {result['speedup_prior_vs_unet3d']:.2f}x faster; prior decodes "
        f"{100 * result['prior_voxel_fraction']:.2f}% of the voxels, {prior['points_per_boundary_voxel']:.2f} points per "
        f"boundary voxel; at half the spacing prior pays {result['half_spacing_vs_prior']['seconds_ratio']:.2f}x the "
        f"seconds and {result['half_spacing_vs_prior']['points_ratio']:.2f}x the points; targets met: {result['targets_met']}"
        + (f"; original rule: prior vs standard {result['original_speedup_prior_vs_standard']:.2f}x" if original else "")
    )
    print(format_table(rows, _FULL_SCAN_COLUMNS))
    print(result["headline"])
    write_result("infer_cpu_brats", result)
    return result


FULL_SCAN_REPEATS = 3  # runs of each OSS-Net method on the full scan; the row is the median run (end-to-end seconds)
HALF_SPACING = "prior_half_spacing"  # the full-scan row of prior at half the scan's spacing (--output_spacing)
_FULL_SCAN_COLUMNS = (
    "method", "refinement", "repeats", "seconds", "read_s", "encode_s", "stride_8_s", "stride_4_s", "stride_2_s",
    "stride_1_s", "dense_pass_s", "write_s", "decoder_points", "voxel_fraction", "points_per_boundary_voxel",
    "voxels_differing_from_standard",
)


def _half_spacing_row(oracle: Any, files: Any, folder: Path) -> dict[str, Any]:
    """Prior at half the scan's spacing (`--output_spacing`; stages scaled to (8, 4, 2, 1)), once: the row, its voxels
    differing from the oracle's answer at every voxel of that grid (its dense result) and its points per boundary voxel."""
    spacing = float(spacing_from_affine(read_header(files.images[0])[1]).min()) / 2
    predictor = Predictor(oracle, PredictOptions(mode="prior", output_spacing=(spacing,)), device="cpu")
    row, mask = _full_scan_row(HALF_SPACING, predictor, files, folder)
    meta = load_case(files, oracle.config, with_border=False).meta
    shape, scale, offset = meta.spaced_axes(grid_at_spacing(meta.affine, meta.input_shape, spacing))
    axes = [torch.arange(n) * s + o for n, s, o in zip(shape, scale, offset)]  # model-grid coordinates per axis
    dense = reorient(ellipsoid(oracle.config.volume_shape, axes=axes).numpy(), inverse_orientation(meta.orientation))
    return {"method": HALF_SPACING, "refinement": REFINEMENT, "repeats": 1, "output_spacing_mm": spacing, **row,
            "seconds_of_each_run": [row["seconds"]], "voxels_differing_from_standard": int((mask != dense).sum()),
            "points_per_boundary_voxel": row["decoder_points"] / max(boundary_voxels(dense), 1)}


def _write_scan(folder: Path, shape: tuple[int, int, int]) -> Any:
    """The four NIfTI files (and label) of one synthetic BraTS case of `shape` under `folder`; its CaseFiles."""
    root = write_synthetic_dataset("brats", folder / "scan", cases=1, shape=shape, seed=123)
    return discover("brats", root, "all")[0]


def _full_scan_row(method: str, predictor: Any, files: Any, folder: Path) -> tuple[dict[str, Any], np.ndarray]:
    """Time one method on the scan end to end; (row with the per-stage seconds, model-grid mask)."""
    start = time.perf_counter()
    case = load_case(files, predictor.config, with_border=False)  # read the NIfTI files, preprocess
    read = time.perf_counter()
    prediction = predictor.predict_case(case)
    predicted = time.perf_counter()
    mask = prediction.mask_model_grid.numpy()  # on the model grid, or at half the spacing on that grid
    if prediction.grid is not None:
        save_image(mask.astype(np.uint8), prediction.grid.affine, folder / f"{method}_mask.nii.gz", case.meta.header)
    else:
        mask_input = input_grid_labels(prediction.occupancy.numpy(), case.meta, prediction.threshold, predictor.config)
        save_input_grid_image(mask_input, case.meta, folder / f"{method}_mask.nii.gz")
    end = time.perf_counter()

    run = prediction.runs[prediction.mode]
    row: dict[str, Any] = {"seconds": end - start, "read_s": read - start}
    if "stages" in run:
        row["encode_s"] = run["encode_seconds"]
        row.update({f"stride_{stage['stride']}_s": stage["seconds"] for stage in run["stages"]})
        row["stages"] = run["stages"]
    else:
        row["dense_pass_s"] = predicted - read
    row.update({
        "write_s": end - predicted,
        "predict_s": predicted - read,
        "decoder_points": prediction.points_evaluated,
        "voxel_fraction": prediction.points_evaluated / mask.size,
        "foreground_voxels": int(mask.sum()),
    })
    return row, mask


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--size", choices=SIZES, default="cpu")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, a few seconds")
    parser.add_argument("--checkpoint", default=None, help="a trained model instead of the ellipsoid oracle (cpu, gpu)")
    parser.add_argument("--original", action="store_true",
                        help="cpu-brats: also time standard and prior under the original's refinement rule")
    args = parser.parse_args(argv)
    run(args.size, args.smoke, args.checkpoint, args.original)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
