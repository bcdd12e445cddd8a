"""Paper Table 2 analogue, and what it takes to train at high resolution: counted, measured and plotted.

    python -m benchmarks.bench_memory                  # CPU, what `make bench` runs (9 min on 2 busy cores)
    python -m benchmarks.bench_memory --size cpu-full  # + real full-size training steps (25 min; 31 with the U-Net's)
    python -m benchmarks.bench_memory --size gpu       # torch.cuda.max_memory_allocated at the paper's sizes

The paper's claim (docs/reference.md §13.2; figures in `benchmarks.paper`): OSS-Net C trains in 2.59 GiB
where the 3D residual U-Net needs 14.41 GiB (5.6x). Every figure here is in GiB (2^30 bytes).

- Table 2, device-free (`memory_counts`, meta device, real sizes): training activations of one step
  (batch 1; OSS-Net 2^14 points; the 3D U-Net the whole volume at its network grid, BraTS 256x256x160,
  LiTS 224^3 as the paper; the 2D U-Net one native slice), without and with activation recomputation
  (`--checkpoint_activations`, `oss_net.models.recompute`); the parameter state (weights + gradients + two
  Adam moments = 4x the parameter bytes); inference peaks at 2^14 and 2^17 points.
- Measured steps (`memory_steps`), each in a fresh process: one real training step's own peak resident
  memory and seconds, next to the device-free count of its activations. `cpu`: C and the 3D U-Net at the
  BraTS grid /4 and /2 per axis, which must tell the two models apart and grow as the counts do (the
  `cross_check`). `cpu-full` adds the full sizes: C and C + recomputation at the BraTS grid and at the
  LiTS grid (512^3 volume, 256^3 encoder input), the 3D U-Net and U-Net + recomputation at the BraTS grid;
  the native 512^3 LiTS U-Net is counted only, and its row says whether it would fit this machine.
- Recomputation's time cost: seconds per step with and without it, interleaved in one process.
- The curve (`memory_curve`): training memory against voxels per volume, 64^3 to 512^3, log-log, with the
  measured points on top: benchmarks/results/memory_vs_resolution.png and .json.
- GPU (size="gpu"): torch.cuda.max_memory_allocated of one `train_step` with Adam and of the inference
  calls, and the measured step of C at the LiTS grid with and without recomputation.

The figures to check: `ratio_unet3d_over_C_train_act_GiB` = 3D U-Net / C training activations at the same
grid (target >= 6x; paper 5.6x with totals) and `ratio_unet3d_over_C_recompute` = plain 3D U-Net / C with
recomputation (target >= 10x at the BraTS grid); `ratio_unet3d_recompute_over_C_recompute` compares both
recomputed.
"""
from __future__ import annotations

import argparse
import importlib.util
from typing import Any

import torch

from benchmarks.common import RESULTS_DIR, benchmark_device, format_table, to_gib, write_result
from benchmarks.memory_counts import (
    INFERENCE_POINTS, MODELS, PARAMETER_STATE_FACTOR, TRAIN_POINTS, build, inference_call, inference_peak_bytes,
    parameter_bytes, training_activation_bytes, training_batch,
)
from benchmarks.memory_curve import memory_curve, plot as plot_curve
from benchmarks.memory_steps import StepSpec, device_free_row, measured_row, recompute_time_cost
from benchmarks.paper import TABLE2_DATASETS, UNET3D_LITS_NATIVE_TRAIN_GIB, table2_gib
from oss_net.io import atomic_write
from oss_net.training.step import train_step

SIZES = ("cpu", "cpu-full", "gpu")
BRATS_GRID = (256, 256, 160)
LITS_GRID = (512, 512, 512)
CROSS_CHECK_GRIDS: tuple[tuple[int, int, int], ...] = ((64, 64, 40), (128, 128, 80))  # the BraTS grid /4, /2 per axis
CPU_STEP_TIMEOUT_S = 900  # one cross-check step (start-up and two steps) on 2 busy cores
FULL_STEP_TIMEOUT_S = 3600  # one full-size step on the CPU
GPU_STEP_TIMEOUT_S = 120
TIME_COST_GRID = (64, 64, 40)
TIME_COST_ROUNDS = 3
TARGET_RATIO = 6.0
TARGET_RATIO_RECOMPUTE = 10.0
STEP_COLUMNS = ["model", "dataset", "grid", "recompute", "peak_rss_GiB", "predicted_GiB", "peak_over_predicted",
                "process_peak_GiB", "seconds", "status"]


def cpu_row(name: str, dataset: str) -> dict[str, Any]:
    """One Table-2 row from device-free counts at the real sizes."""
    model = build(name, dataset, "meta")
    params = parameter_bytes(model)
    activations = training_activation_bytes(model)
    row: dict[str, Any] = {
        "model": name,
        "dataset": dataset,
        "params_M": sum(p.numel() for p in model.parameters()) / 1e6,
        "train_act_GiB": to_gib(activations),
        "train_act_recompute_GiB": to_gib(training_activation_bytes(model, recompute=True)),
        "param_state_GiB": to_gib(PARAMETER_STATE_FACTOR * params),
        "train_total_GiB": to_gib(activations + PARAMETER_STATE_FACTOR * params),
    }
    for points in INFERENCE_POINTS:
        row[f"infer_2^{points.bit_length() - 1}_GiB"] = to_gib(inference_peak_bytes(model, points) + params)
    row.update(table2_gib(name, dataset))
    return row


def gpu_row(name: str, dataset: str) -> dict[str, Any]:
    """One Table-2 row from torch.cuda.max_memory_allocated at the real sizes (OOM is recorded, not raised)."""
    device = torch.device("cuda")
    row: dict[str, Any] = {"model": name, "dataset": dataset}
    model = build(name, dataset, device)
    try:
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
        batch = training_batch(model.train(), TRAIN_POINTS, device)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        train_step(model, batch, optimizer)
        torch.cuda.synchronize()
        row["train_GiB"] = to_gib(torch.cuda.max_memory_allocated())
        optimizer.zero_grad(set_to_none=True)
        del optimizer, batch
    except torch.cuda.OutOfMemoryError:
        row["train_GiB"] = "OOM"
    torch.cuda.empty_cache()
    for points in INFERENCE_POINTS:
        key = f"infer_2^{points.bit_length() - 1}_GiB"
        try:
            model.eval()
            call = inference_call(model, points, device)
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            with torch.inference_mode():
                call()
            torch.cuda.synchronize()
            row[key] = to_gib(torch.cuda.max_memory_allocated())
        except torch.cuda.OutOfMemoryError:
            row[key] = "OOM"
        torch.cuda.empty_cache()
    row.update(table2_gib(name, dataset))
    return row


def _plot(rows: list[dict[str, Any]], path: str, title: str) -> None:
    """Grouped log-scale bars: training total and inference at 2^14 / 2^17 per model, one panel per dataset."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in ("train_total_GiB", "train_GiB", "infer_2^14_GiB", "infer_2^17_GiB") if any(k in r for r in rows)]
    datasets = sorted({r["dataset"] for r in rows})
    figure, axes = plt.subplots(1, len(datasets), figsize=(6 * len(datasets), 4), squeeze=False)
    for axis, dataset in zip(axes[0], datasets):
        subset = [r for r in rows if r["dataset"] == dataset]
        width = 0.8 / len(keys)
        for k, key in enumerate(keys):
            values = [r[key] if isinstance(r.get(key), float) else 0.0 for r in subset]
            axis.bar([i + k * width for i in range(len(subset))], values, width, label=key.replace("_GiB", ""))
        axis.set_xticks([i + 0.4 - width / 2 for i in range(len(subset))], [r["model"] for r in subset])
        axis.set_yscale("log")
        axis.set_ylabel("GiB")
        axis.set_title(f"{title}: {dataset}")
        axis.legend(fontsize=7)
    figure.tight_layout()
    with atomic_write(path, "wb") as handle:
        figure.savefig(handle, format="png", dpi=100)
    plt.close(figure)


def cross_check_specs() -> list[StepSpec]:
    """C and the 3D U-Net at the BraTS grid /4 and /2 per axis, and both with recomputation at /2."""
    small, large = CROSS_CHECK_GRIDS
    plain = [StepSpec(model, "brats", grid, False) for grid in (small, large) for model in ("C", "unet3d")]
    return plain + [StepSpec(model, "brats", large, True) for model in ("C", "unet3d")]


def full_size_specs() -> list[StepSpec]:
    """The full-size CPU steps, cheapest first: C (+ recomputation) at BraTS and LiTS, the U-Net (+ recomputation) at BraTS."""
    return [StepSpec(model, dataset, grid, recompute) for model, dataset, grid in
            (("C", "brats", BRATS_GRID), ("C", "lits", LITS_GRID), ("unet3d", "brats", BRATS_GRID)) for recompute in (True, False)]


def cross_check(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Whether the measured peaks tell C from the U-Net and grow with the grid as the counts predict: the U-Net
    / C ratio on every grid both ran on (alike in recomputation), and each model's growth from one measured
    grid to the next, measured next to predicted."""
    measured = sorted((r for r in rows if "peak_rss_GiB" in r), key=lambda r: r["voxels"])
    by_key = {(r["model"], r["recompute"], r["grid"]): r for r in measured}
    checks = []

    def check(what: str, a: dict[str, Any], b: dict[str, Any]) -> None:
        checks.append({"comparison": what, "measured": a["peak_rss_GiB"] / b["peak_rss_GiB"],
                       "predicted": a["predicted_GiB"] / b["predicted_GiB"]})

    for row in measured:
        c = by_key.get(("C", row["recompute"], row["grid"]))
        if row["model"] == "unet3d" and c is not None:
            check(f"3D U-Net / C at {row['grid']}{' (both recompute)' if row['recompute'] else ''}", row, c)
    for model, recompute in dict.fromkeys((r["model"], r["recompute"]) for r in measured):
        series = [r for r in measured if (r["model"], r["recompute"], r["dataset"]) == (model, recompute, "brats")]
        for small, large in zip(series, series[1:]):
            check(f"{model}{' + recompute' if recompute else ''}: {large['grid']} / {small['grid']}", large, small)
    return checks


def lits_steps(device: str, grid: tuple[int, int, int] = LITS_GRID, points: int = TRAIN_POINTS,
               timeout_s: float = GPU_STEP_TIMEOUT_S) -> list[dict[str, Any]]:
    """The real step of C at the LiTS grid without and with recomputation on `device` (gpu_check's; a rehearsal
    passes the CPU, a small grid and few points)."""
    return [measured_row(StepSpec("C", "lits", grid, recompute, points, device), timeout_s) for recompute in (False, True)]


def user_sentence(rows: list[dict[str, Any]], native: list[dict[str, Any]]) -> str | None:
    """"C trains on a 512^3 volume in X GiB on a CPU; a 3D U-Net would need Y GiB", from the full-size rows
    (X: the process's peak resident memory during the step; Y: the native U-Net's count, with its parameter state)."""
    measured = {r["recompute"]: r for r in rows if (r["model"], r["grid"]) == ("C", "512x512x512") and "peak_rss_GiB" in r}
    if set(measured) != {False, True}:
        return None
    need = {r["recompute"]: r["predicted_GiB"] + r["param_state_GiB"] for r in native}
    return (f"C trains on a 512³ volume in {measured[False]['process_peak_GiB']:.1f} GiB on a CPU "
            f"({measured[True]['process_peak_GiB']:.1f} GiB with recomputation); a 3D U-Net would need "
            f"{need[False]:.0f} GiB ({need[True]:.0f} GiB with recomputation).")


def recompute_ratios(rows: list[dict[str, Any]], datasets: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """Plain 3D U-Net / C + recomputation, and U-Net + recomputation / C + recomputation, per dataset."""
    by_name = {(r["model"], r["dataset"]): r for r in rows}

    def ratio(dataset: str, unet_key: str) -> float:
        return by_name[("unet3d", dataset)][unet_key] / by_name[("C", dataset)]["train_act_recompute_GiB"]

    return {"ratio_unet3d_over_C_recompute": {d: ratio(d, "train_act_GiB") for d in datasets},
            "ratio_unet3d_recompute_over_C_recompute": {d: ratio(d, "train_act_recompute_GiB") for d in datasets}}


def write_curve(measured_steps: list[dict[str, Any]]) -> dict[str, Any]:
    """benchmarks/results/memory_vs_resolution.json (+ .png when matplotlib is there); returns the curve."""
    curve = memory_curve(measured_steps)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    if importlib.util.find_spec("matplotlib") is None:
        curve["plot"] = "skipped: matplotlib not installed"
    else:
        plot_curve(curve, str(RESULTS_DIR / "memory_vs_resolution.png"))
        curve["plot"] = str(RESULTS_DIR / "memory_vs_resolution.png")
    write_result("memory_vs_resolution", curve)
    return curve


def high_resolution(size: str) -> dict[str, Any]:
    """The measured steps, the cross-check, recomputation's time cost, the native LiTS U-Net and the curve."""
    rows = []
    for spec in cross_check_specs() + (full_size_specs() if size == "cpu-full" else []):
        rows.append(measured_row(spec, FULL_STEP_TIMEOUT_S if spec.grid in (BRATS_GRID, LITS_GRID) else CPU_STEP_TIMEOUT_S))
        print(format_table(rows[-1:], STEP_COLUMNS), flush=True)
    native = [device_free_row(StepSpec("unet3d", "lits", LITS_GRID, recompute)) for recompute in (False, True)]
    rows += native
    curve = write_curve(rows)
    result: dict[str, Any] = {
        "measured_steps": rows,
        "cross_check": cross_check(rows),
        "recompute_time_cost": [recompute_time_cost(model, "brats", TIME_COST_GRID, TIME_COST_ROUNDS) for model in ("C", "unet3d")],
        "unet3d_lits_native_512_train_act_GiB": native[0]["predicted_GiB"],
        "curve": {"json": str(RESULTS_DIR / "memory_vs_resolution.json"), "plot": curve["plot"],
                  "stops_fitting": curve["stops_fitting"]},
    }
    sentence = user_sentence(rows, native)
    if sentence:
        result["headline"] = sentence
    print(format_table(rows, STEP_COLUMNS))
    print(format_table(result["cross_check"]))
    print(format_table(result["recompute_time_cost"]))
    print(format_table(curve["stops_fitting"]))
    print(f"3D U-Net at native LiTS 512^3: {native[0]['predicted_GiB']:.1f} GiB of activations "
          f"(paper: > {UNET3D_LITS_NATIVE_TRAIN_GIB:g} GiB)")
    if sentence:
        print(sentence)
    return result


def run(size: str = "cpu", smoke: bool = False, models: tuple[str, ...] | None = None,
        datasets: tuple[str, ...] | None = None) -> dict:
    """Table 2 at the paper's sizes; smoke = C and the 3D U-Net on BraTS only, device-free (seconds). `models`
    and `datasets` choose the rows instead (benchmarks/gpu_check.sh: C and the 3D U-Net on both datasets);
    both must include C and the 3D U-Net, whose ratio is the figure to check. Not smoke, the CPU sizes add
    the measured steps and the curve (`high_resolution`); the GPU adds the measured LiTS steps of C."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, got {size!r}")
    benchmark_device("gpu" if size == "gpu" else "cpu")
    models = models or (("C", "unet3d") if smoke else MODELS)
    datasets = datasets or (("brats",) if smoke else TABLE2_DATASETS)
    if not {"C", "unet3d"} <= set(models):
        raise ValueError(f"models must include 'C' and 'unet3d' (their ratio is the figure to check), got {models}")
    row_fn = gpu_row if size == "gpu" else cpu_row
    rows = [row_fn(name, dataset) for dataset in datasets for name in models]
    key = "train_GiB" if size == "gpu" else "train_act_GiB"
    by_name = {(r["model"], r["dataset"]): r for r in rows}
    ratios = {}
    for dataset in datasets:
        unet, oss = by_name[("unet3d", dataset)].get(key), by_name[("C", dataset)].get(key)
        ratios[dataset] = unet / oss if isinstance(unet, float) and isinstance(oss, float) else None
    result: dict[str, Any] = {
        "size": size,
        "smoke": smoke,
        "measure": "torch.cuda.max_memory_allocated" if size == "gpu" else "device-free (meta): saved-for-backward bytes, peak live bytes",
        "batch": 1,
        "train_points": TRAIN_POINTS,
        "rows": rows,
        f"ratio_unet3d_over_C_{key}": ratios,
        "target_ratio": TARGET_RATIO,
    }
    if size == "gpu":
        result["measured_steps"] = lits_steps("cuda")
    else:
        result.update(recompute_ratios(rows, datasets), target_ratio_recompute=TARGET_RATIO_RECOMPUTE)
        if not smoke:
            result.update(high_resolution(size))
    print(format_table(rows, ["model", "dataset", "params_M", key, "train_act_recompute_GiB", "param_state_GiB",
                              "train_total_GiB", "infer_2^14_GiB", "infer_2^17_GiB", "paper_train_GiB", "paper_infer_2^17_GiB"]))
    print(f"3D U-Net / C ({key}): " + ", ".join(f"{d} {r:.2f}x" if r else f"{d} n/a" for d, r in ratios.items()))
    for name in ("ratio_unet3d_over_C_recompute", "ratio_unet3d_recompute_over_C_recompute"):
        if name in result:
            print(f"{name}: " + ", ".join(f"{d} {r:.2f}x" for d, r in result[name].items()))
    name = "memory_gpu" if size == "gpu" else "memory"
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    if importlib.util.find_spec("matplotlib") is None:  # a GPU machine's own python may lack it: figures first
        result["plot"] = "skipped: matplotlib not installed"
    else:
        _plot(rows, str(RESULTS_DIR / f"{name}.png"), "Table 2 analogue")
        result["plot"] = str(RESULTS_DIR / f"{name}.png")
    write_result(name, result)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--size", choices=SIZES, default="cpu", help="cpu (default), cpu-full (+ full-size steps), gpu")
    parser.add_argument("--smoke", action="store_true", help="C and the 3D U-Net on BraTS only, device-free")
    args = parser.parse_args(argv)
    run(args.size, args.smoke)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
