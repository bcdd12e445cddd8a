"""Is querying the occupancy network at a finer spacing better than resampling its output? (issue 28)

    python -m benchmarks.bench_resolution                     # what `make bench` runs: C trained twice, 6 test shapes at 0.5 mm
    python -m benchmarks.bench_resolution --smoke             # two training steps, predictions at 1 mm

The cases are analytic shapes whose true surface is known in closed form (`benchmarks.analytic_shapes`:
ellipsoids, tori, thin spherical shells), rendered at 2 mm with partial-volume intensities and noise, their
labels at 2 mm (voxels at least half inside). Configuration C is trained on them with the demo preset twice:
on voxel centres (the paper's sampling) and with `--continuous_sampling`. On held-out shapes each model then
predicts a 0.5 mm grid covering the scan's box (`oss_net.geometry.grid_at_spacing`) three ways:

- (a) "fine_queries": the decoder queried on the 0.5 mm lattice itself (`--output_spacing 0.5`);
- (b) "trilinear_upsampling": the 2 mm probability map upsampled trilinearly, then thresholded at 0.5 (how
  nnU-Net changes resolution);
- (c) "nearest_upsampling": the 2 mm mask upsampled by nearest neighbour (what resampling a mask gives).

Against the analytic truth at 0.5 mm (fine voxel centres inside the shape): Dice, mean surface distance and
HD95 in mm (`oss_net.metrics`), the mean distance of the mesh's vertices to the true surface (marching cubes
at 0.5 of each method's field: the fine probabilities, the upsampled probabilities, the upsampled mask; no
decimation), and the seconds each method costs (its prediction plus its upsampling). Rows are means over
the test shapes per training and method; `case_rows` has every case. benchmarks/results/resolution.json and
resolution.png (one slice of a torus: the truth filled, the three methods' contours over it).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.analytic_shapes import AnalyticShape, case_affine, shape_series, truth_mask, write_shape_cases
from benchmarks.common import RESULTS_DIR, format_table, write_result
from oss_net.data import discover, load_case
from oss_net.geometry import SpacedGrid, grid_at_spacing
from oss_net.inference import PredictOptions, Predictor
from oss_net.io import atomic_write
from oss_net.meshing import extract_mesh
from oss_net.metrics import dice
from oss_net.metrics.surface import hd95_from_distances, msd_from_distances, surface_distances
from oss_net.models import load_model
from oss_net.training import demo_settings, train

OUTPUT_SPACING_MM = 0.5
SMOKE_OUTPUT_SPACING_MM = 1.0
# (training shapes, test shapes: two of each kind, epochs): 144 steps of 2 cases (8 per epoch), about 35 s per training
# on 2 idle cores; the demo preset's 10 epochs on fewer shapes leave a model that predicts nothing
SIZES = {"cpu": (18, 6, 18)}
SMOKE_TRAIN_CASES, SMOKE_TEST_CASES = 3, 3
TRAININGS = {"voxel_centres": False, "continuous": True}  # name -> --continuous_sampling
COLUMNS = ("training", "method", "dice", "msd_mm", "hd95_mm", "mesh_mm", "seconds")
CONTOUR_STYLES = {"fine_queries": ("red", "solid"), "trilinear_upsampling": ("deepskyblue", "dashed"),
                  "nearest_upsampling": ("yellow", "dotted")}


def train_model(root: Path, folder: Path, continuous: bool, smoke: bool, epochs: int) -> Any:
    """Configuration C trained on the shapes under `root` with the demo preset for `epochs` (`continuous`:
    --continuous_sampling); the final model."""
    options: dict[str, Any] = {"test": False, "continuous_sampling": continuous, "seed": 0, "epochs": epochs}
    if smoke:
        options.update(max_iterations=2, training_samples=64, epochs=1)
    run_dir = train(demo_settings(str(root), str(folder), **options))
    return load_model(run_dir / "final_model.pt")


def fine_queries(predictor: Predictor, case: Any, grid: SpacedGrid) -> dict[str, tuple[np.ndarray, np.ndarray, float]]:
    """(a): {"fine_queries": (mask [*grid.shape] bool, probabilities [*grid.shape], seconds)}: the predictor at the
    output spacing (its lattice on `grid`, the decoder queried between voxel centres)."""
    start = time.perf_counter()
    prediction = predictor.predict_case(case)
    seconds = time.perf_counter() - start
    if prediction.grid is None or tuple(prediction.grid.shape) != tuple(grid.shape):
        raise RuntimeError(f"the fine prediction is not on the {grid.spacing} mm grid {grid.shape}")
    probability = prediction.occupancy.numpy()
    return {"fine_queries": (probability > prediction.threshold, probability, seconds)}


def coarse_methods(predictor: Predictor, case: Any, grid: SpacedGrid) -> dict[str, tuple[np.ndarray, np.ndarray, float]]:
    """(b) and (c): {method: (mask [*grid.shape] bool, field for the mesh [*grid.shape], seconds)} from one
    prediction on the input grid, upsampled."""
    start = time.perf_counter()
    prediction = predictor.predict_case(case)
    probability = torch.as_tensor(np.asarray(case.meta.to_input_grid(prediction.occupancy.numpy(), order=1)))
    predicted = time.perf_counter() - start
    start = time.perf_counter()
    upsampled = F.interpolate(probability[None, None].float(), size=grid.shape, mode="trilinear", align_corners=False)[0, 0]
    trilinear = (upsampled.numpy(), time.perf_counter() - start)
    start = time.perf_counter()
    mask = (probability > prediction.threshold).float()[None, None]
    nearest = F.interpolate(mask, size=grid.shape, mode="nearest-exact")[0, 0].numpy()
    nearest_seconds = time.perf_counter() - start
    return {
        "trilinear_upsampling": (trilinear[0] > prediction.threshold, trilinear[0], predicted + trilinear[1]),
        "nearest_upsampling": (nearest > 0.5, nearest, predicted + nearest_seconds),
    }


def scores(mask: np.ndarray, field: np.ndarray, truth: np.ndarray, shape: AnalyticShape, grid: SpacedGrid) -> dict[str, float]:
    """Dice, MSD and HD95 (mm) against the truth, and the mean distance (mm) of the field's mesh to the true surface."""
    mesh = extract_mesh(field, grid.affine, level=0.5, min_component_voxels=0, edge_mm=None)
    vertices = np.asarray(mesh.vertices)
    distances = surface_distances(mask, truth, grid.spacing)  # two distance transforms, shared by MSD and HD95
    return {"dice": dice(mask, truth), "msd_mm": msd_from_distances(distances), "hd95_mm": hd95_from_distances(distances),
            "mesh_mm": float(shape.surface_distance(vertices).mean()) if len(vertices) else float("nan")}


def case_rows(model: Any, case: Any, shape: AnalyticShape, spacing: float,
              training: str) -> tuple[list[dict[str, Any]], dict[str, np.ndarray], np.ndarray, SpacedGrid]:
    """One test case under every method: (rows, {method: mask}, truth mask, the fine grid)."""
    grid = grid_at_spacing(case.meta.affine, case.meta.input_shape, spacing)
    truth = truth_mask(shape, grid)
    outputs = {**fine_queries(Predictor(model, PredictOptions(output_spacing=(spacing,)), device="cpu"), case, grid),
               **coarse_methods(Predictor(model, device="cpu"), case, grid)}
    rows, masks = [], {}
    for method, (mask, field, seconds) in outputs.items():
        masks[method] = mask
        rows.append({"training": training, "method": method, "case": case.case_id, "kind": shape.kind,
                     **scores(mask, field, truth, shape, grid), "seconds": seconds})
    return rows, masks, truth, grid


def mean_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (training, method): the mean of every score over the cases."""
    keys = list(dict.fromkeys((row["training"], row["method"]) for row in rows))
    means = []
    for training, method in keys:
        group = [row for row in rows if (row["training"], row["method"]) == (training, method)]
        means.append({"training": training, "method": method, "cases": len(group),
                      **{key: float(np.nanmean([row[key] for row in group])) for key in COLUMNS[2:]}})
    return means


def write_picture(path: Path, truth: np.ndarray, masks: dict[str, np.ndarray], grid: SpacedGrid, shape: AnalyticShape,
                  title: str) -> Path:
    """PNG of the slice through the shape's centre across the array axis closest to its own third axis (a torus
    seen as a ring), cropped to the shape with a margin: the truth filled grey, each method's contour over it."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    to_voxel = np.linalg.inv(grid.affine[:3, :3])
    axis = int(np.argmax(np.abs(to_voxel @ np.asarray(shape.rotation)[:, 2])))
    centre = np.round(to_voxel @ (np.asarray(shape.centre) - grid.affine[:3, 3])).astype(int)
    plane = [a for a in range(3) if a != axis]
    cut = [slice(None)] * 3
    cut[axis] = int(np.clip(centre[axis], 0, truth.shape[axis] - 1))
    margin = int(np.ceil(shape.reach / min(grid.spacing))) + 4
    window = tuple(slice(max(0, centre[a] - margin), centre[a] + margin) for a in plane)

    def view(mask: np.ndarray) -> np.ndarray:
        return mask[tuple(cut)][window].T.astype(float)  # [plane 1, plane 0], drawn with plane 0 across

    image = view(truth)
    extent = (window[0].start * grid.spacing[plane[0]], (window[0].start + image.shape[1]) * grid.spacing[plane[0]],
              window[1].start * grid.spacing[plane[1]], (window[1].start + image.shape[0]) * grid.spacing[plane[1]])
    figure = Figure(figsize=(7, 7), dpi=110)
    axes = figure.add_subplot()
    axes.imshow(image, cmap="gray", origin="lower", extent=extent, vmin=0, vmax=1.6, interpolation="nearest")
    handles = []
    for method, mask in masks.items():
        colour, style = CONTOUR_STYLES[method]
        axes.contour(view(mask), levels=[0.5], colors=colour, linestyles=style, linewidths=1.4, origin="lower", extent=extent)
        handles.append(Line2D([], [], color=colour, linestyle=style, label=method))
    axes.legend(handles=handles, loc="upper right", fontsize=8)
    axes.set_title(title, fontsize=9)
    axes.set_xlabel(f"array axis {plane[0]} (mm)")
    axes.set_ylabel(f"array axis {plane[1]} (mm)")
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    with atomic_write(path, "wb") as handle:
        canvas.print_png(handle)
    return path


def run(size: str = "cpu", smoke: bool = False) -> dict:
    """Train C with and without continuous sampling, compare the three ways to a fine grid on held-out shapes."""
    if size not in SIZES:
        raise ValueError(f"bench_resolution trains on the CPU: size must be one of {', '.join(SIZES)}, got {size!r}")
    spacing = SMOKE_OUTPUT_SPACING_MM if smoke else OUTPUT_SPACING_MM
    train_count, test_count, epochs = (SMOKE_TRAIN_CASES, SMOKE_TEST_CASES, 1) if smoke else SIZES[size]
    affine = case_affine()
    train_shapes, test_shapes = shape_series(train_count, seed=1, affine=affine), shape_series(test_count, seed=2, affine=affine)
    rows: list[dict[str, Any]] = []
    picture: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as folder:
        train_root = write_shape_cases(Path(folder) / "train", train_shapes, seed=1)
        test_root = write_shape_cases(Path(folder) / "test", test_shapes, seed=2)
        test_files = discover("brats", test_root, "all")
        for training, continuous in TRAININGS.items():
            model = train_model(train_root, Path(folder) / training, continuous, smoke, epochs)
            for files, shape in zip(test_files, test_shapes):
                case = load_case(files, model.config, with_border=False)
                found, masks, truth, grid = case_rows(model, case, shape, spacing, training)
                rows += found
                if shape.kind == "torus" and training == "continuous" and not picture:
                    picture = {"truth": truth, "masks": masks, "grid": grid, "case": files.case_id, "shape": shape}
    means = mean_rows(rows)
    result: dict[str, Any] = {
        "smoke": smoke, "input_spacing_mm": float(abs(affine[0, 0])), "output_spacing_mm": spacing,
        "train_cases": train_count, "test_cases": test_count, "columns": list(COLUMNS), "rows": means, "case_rows": rows,
    }
    if picture:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        title = f"{picture['case']} (torus), {spacing} mm grid: truth filled, contours per method"
        result["picture"] = write_picture(RESULTS_DIR / "resolution.png", picture["truth"], picture["masks"],
                                          picture["grid"], picture["shape"], title).name
    print(format_table(means, COLUMNS))
    write_result("resolution", result)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--size", choices=tuple(SIZES), default="cpu",
                        help="cpu: 18 training and 6 test shapes, 18 epochs (default: cpu)")
    parser.add_argument("--smoke", action="store_true", help="two training steps, predictions at 1 mm: seconds")
    args = parser.parse_args(argv)
    run(args.size, args.smoke)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
