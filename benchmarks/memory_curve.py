"""Training memory per volume against resolution: the 3D U-Net and C, each with and without recomputation.

Device-free counts (`memory_counts`: one training step's activations, batch 1, 2^14 points, plus the parameter
state: weights, gradients, Adam's two moments) of the LiTS configurations (1 channel) on cubic model grids
from 64^3 to 512^3 (C from 128^3, the smallest its five-block encoder takes); the U-Net runs at the grid
itself (no resize; at 512^3 that is the native LiTS U-Net).
The BraTS configurations (4 channels) at the BraTS grid are marked beside them, and the measured CPU steps
(`memory_steps`: peak of the step + the same parameter state) go on top. Where a curve crosses a memory
line (16, 24, 40, 80 GiB) is where that model stops fitting: `stops_fitting` gives the largest cube per line.
"""
from __future__ import annotations

import math
from typing import Any

from benchmarks.common import to_gib
from benchmarks.memory_counts import UNET_MODELS, build_at, training_memory_bytes
from oss_net.io import atomic_write
from oss_net.models import get_config

CURVE_DATASET = "lits"
CURVE_EDGES: tuple[int, ...] = (64, 96, 128, 192, 256, 384, 512)
SERIES: tuple[tuple[str, bool], ...] = (("unet3d", False), ("unet3d", True), ("C", False), ("C", True))
MEMORY_LINES_GIB: tuple[int, ...] = (16, 24, 40, 80)
MACHINE_LINE_GIB = 24  # this machine's memory, also a common GPU size
GRIDS: dict[str, tuple[int, int, int]] = {"BraTS": (256, 256, 160), "LiTS": (512, 512, 512)}


def series_label(model: str, recompute: bool) -> str:
    return ("3D U-Net" if model == "unet3d" else model) + (" + recompute" if recompute else "")


def memory_point(model: str, dataset: str, grid: tuple[int, int, int], recompute: bool) -> dict[str, Any]:
    """Training memory of one model on one grid (device-free), in GiB."""
    activations, state = training_memory_bytes(build_at(model, dataset, grid, "meta"), recompute)
    return {"model": model, "recompute": recompute, "dataset": dataset, "grid": "x".join(map(str, grid)),
            "voxels": math.prod(grid), "activations_GiB": to_gib(activations), "param_state_GiB": to_gib(state),
            "train_GiB": to_gib(activations + state)}


def smallest_edge(model: str) -> int:
    """The smallest cube `model` trains on: any for the U-Net; for OSS-Net an encoder output of 2^3 (its batch
    norms need more than one value per channel), i.e. 2^(blocks + 2): 128 for the LiTS configurations."""
    if model in UNET_MODELS:
        return 1
    return 2 ** (len(get_config(model, CURVE_DATASET).encoder_channels) + 2)


def curve_points(edges: tuple[int, ...] = CURVE_EDGES, series: tuple[tuple[str, bool], ...] = SERIES) -> list[dict[str, Any]]:
    """The curve: every series on every cubic grid edge^3 of the LiTS configuration it trains on."""
    return [memory_point(model, CURVE_DATASET, (edge,) * 3, recompute) for model, recompute in series
            for edge in edges if edge >= smallest_edge(model)]


def largest_fitting_edge(points: list[dict[str, Any]], limit_gib: float) -> float | None:
    """The cube edge at which a curve (points of one series, by growing size) reaches `limit_gib`, interpolated
    log-log between the two points around it; inf when the whole curve fits, None when even its first does not."""
    if points[0]["train_GiB"] > limit_gib:
        return None
    for below, above in zip(points, points[1:]):
        if above["train_GiB"] > limit_gib:
            fraction = math.log(limit_gib / below["train_GiB"]) / math.log(above["train_GiB"] / below["train_GiB"])
            voxels = below["voxels"] * (above["voxels"] / below["voxels"]) ** fraction
            return voxels ** (1 / 3)
    return math.inf


def stops_fitting(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per series and memory line: the largest cube that trains in it, in words and as an edge."""
    rows = []
    for model, recompute in dict.fromkeys((p["model"], p["recompute"]) for p in points):
        curve = sorted((p for p in points if (p["model"], p["recompute"]) == (model, recompute)), key=lambda p: p["voxels"])
        row: dict[str, Any] = {"series": series_label(model, recompute)}
        for limit in MEMORY_LINES_GIB:
            edge = largest_fitting_edge(curve, limit)
            if edge is None:
                row[f"{limit}_GiB"] = f"not even {round(curve[0]['voxels'] ** (1 / 3))}^3"
            elif math.isinf(edge):
                row[f"{limit}_GiB"] = f">= {round(curve[-1]['voxels'] ** (1 / 3))}^3 ({curve[-1]['train_GiB']:.1f} GiB)"
            else:
                row[f"{limit}_GiB"] = f"{edge:.0f}^3"
        rows.append(row)
    return rows


def measured_points(measured_steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The measured CPU steps as points of the plot: the step's peak plus the parameter state, in GiB."""
    return [{"model": row["model"], "recompute": row["recompute"], "dataset": row["dataset"], "grid": row["grid"],
             "voxels": row["voxels"], "train_GiB": row["peak_rss_GiB"] + row["param_state_GiB"]}
            for row in measured_steps if "peak_rss_GiB" in row]


def plot(result: dict[str, Any], path: str) -> None:
    """Log-log memory against voxels: the curves, the BraTS points, the measured points, the memory lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"unet3d": "tab:red", "C": "tab:blue"}
    figure, axis = plt.subplots(figsize=(9, 7.2))
    for model, recompute in SERIES:
        style = {"color": colours[model], "linestyle": "--" if recompute else "-"}
        curve = [p for p in result["points"] if (p["model"], p["recompute"]) == (model, recompute)]
        axis.plot([p["voxels"] for p in curve], [p["train_GiB"] for p in curve], marker=".", label=series_label(model, recompute), **style)
        brats = [p for p in result["brats_points"] if (p["model"], p["recompute"]) == (model, recompute)]
        axis.scatter([p["voxels"] for p in brats], [p["train_GiB"] for p in brats], marker="D", facecolors="none",
                     edgecolors=colours[model], s=50, zorder=3)
        measured = [p for p in result["measured"] if (p["model"], p["recompute"]) == (model, recompute)]
        axis.scatter([p["voxels"] for p in measured], [p["train_GiB"] for p in measured], marker="o" if recompute else "s",
                     color=colours[model], edgecolors="black", s=60, zorder=4)
    axis.scatter([], [], marker="D", facecolors="none", edgecolors="grey", label="BraTS configuration (4 channels), counted")
    axis.scatter([], [], marker="s", color="grey", edgecolors="black", label="measured CPU step (square; circle: recompute)")
    left = min(p["voxels"] for p in result["points"])
    for limit in MEMORY_LINES_GIB:
        axis.axhline(limit, color="black" if limit == MACHINE_LINE_GIB else "grey", linewidth=0.8, linestyle=":")
        name = f"{limit} GiB" + (" (this machine)" if limit == MACHINE_LINE_GIB else "")
        axis.text(left, limit * 1.04, name, fontsize=8, va="bottom")
    bottom = axis.get_xaxis_transform()  # x in data, y in axes fraction
    for name, grid in GRIDS.items():
        axis.axvline(math.prod(grid), color="grey", linewidth=0.8, linestyle="-.")
        axis.text(math.prod(grid) * 0.93, 0.02, f"{name} grid\n{'x'.join(map(str, grid))}", transform=bottom, fontsize=8,
                  ha="right", va="bottom")
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_ylim(0.1, 3000)
    axis.set_xlabel("voxels per volume (model grid; LiTS configurations on n^3 grids, C from 128^3)")
    axis.set_ylabel("training memory per volume, GiB (activations + weights, gradients, Adam)")
    axis.set_title("Training memory against resolution: one step, batch 1, 2^14 points")
    axis.legend(fontsize=8, loc="upper left", ncol=2)
    axis.grid(True, which="major", alpha=0.3)
    lines = ["largest cube that trains in   " + "  ".join(f"{limit:>7} GiB" for limit in MEMORY_LINES_GIB)]
    lines += [f"{row['series']:<28} " + "  ".join(f"{row[f'{limit}_GiB'].split(' (')[0]:>11}" for limit in MEMORY_LINES_GIB)
              for row in result["stops_fitting"]]
    figure.subplots_adjust(left=0.09, right=0.98, top=0.95, bottom=0.24)
    figure.text(0.09, 0.02, "\n".join(lines), fontsize=8, family="monospace", va="bottom")
    with atomic_write(path, "wb") as handle:
        figure.savefig(handle, format="png", dpi=110)
    plt.close(figure)


def memory_curve(measured_steps: list[dict[str, Any]], edges: tuple[int, ...] = CURVE_EDGES) -> dict[str, Any]:
    """The curve's figures: its points, the BraTS points, the measured points and where each model stops fitting."""
    points = curve_points(edges)
    return {
        "configuration": f"{CURVE_DATASET} configurations on n^3 grids, n in {list(edges)}; batch 1, 2^14 points",
        "measure": "device-free: saved-for-backward bytes (+ largest recomputed block) + 4x parameter bytes",
        "memory_lines_GiB": list(MEMORY_LINES_GIB),
        "points": points,
        "brats_points": [memory_point(model, "brats", GRIDS["BraTS"], recompute) for model, recompute in SERIES],
        "measured": measured_points(measured_steps),
        "stops_fitting": stops_fitting(points),
    }
