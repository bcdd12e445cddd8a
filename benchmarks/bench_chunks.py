"""Paper Fig. 6 analogue: inference seconds and memory against the chunk size, standard vs prior refinement.

    python -m benchmarks.bench_chunks            # CPU: demo-size C (64x64x40), chunks 2^9..2^14 (minutes)
    python -m benchmarks.bench_chunks --size gpu # BraTS-size C (256x256x160) on a GPU

The paper (docs/reference.md §13.4) halves OSS-Net C's inference time by seeding the coarse stage with
the encoder's low-resolution segmentation ("prior") instead of evaluating the whole stride-4 lattice
("standard"), about 2x at every chunk size (`benchmarks.paper.FIG6_SECONDS`). Both of the paper's modes
used the original's refinement rule, which decodes every voxel next to a positive; each chunk size
therefore has a row per rule (`refinement`: "ours" and "original"), and the "original" rows are the
ones to hold against the paper's figure.

What is timed: `oss_net.inference.Predictor.predict` (encode, then coarse-to-fine refinement with the
patches of every chunk gathered from the case's padded volume) with the real model's decoder doing
the work. The model is untrained, so its own answers would make the number of points refined
arbitrary. `SyntheticOccupancy` therefore keeps every computation of the real model but replaces its
answers by an ellipsoid "tumour" (radii 0.2 of the grid, ~3% of the volume): decode returns the ellipsoid's occupancy at the queried points, and the encoder's
segmentation is the ellipsoid adaptive-max-pooled to the low-resolution grid (what the auxiliary loss
trains the head to predict). So both modes refine the same object and the point counts are those of a
well-trained model on that object.

Memory against the chunk size: on the CPU the device-free peak of live tensor bytes of one decode call of
`chunk` points of BraTS-size C (weights, volume and latents included; `memory_counts.inference_peak_bytes`),
which is what the chunk size bounds: the paper's Fig. 6 right. On a GPU, torch.cuda.max_memory_allocated
of the whole prediction.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from benchmarks.memory_counts import build, inference_peak_bytes, parameter_bytes
from benchmarks.common import RESULTS_DIR, bench_main, benchmark_device, format_table, time_call, to_gib, write_result
from benchmarks.paper import FIG6_SECONDS
from oss_net.inference import PredictOptions, Predictor
from oss_net.inference.lattice import REFINEMENTS
from oss_net.io import atomic_write
from oss_net.models import build_model, demo_config, get_config

CHUNK_SIZES: tuple[int, ...] = tuple(2**k for k in range(9, 19))
# A 64x64x40 volume never queries more than 2^14 points in one stage, so larger chunks time the same.
CPU_TIMED_CHUNK_SIZES: tuple[int, ...] = tuple(2**k for k in range(9, 15))
SMOKE_CHUNK_SIZES: tuple[int, ...] = (2**10,)
MODES: tuple[str, ...] = ("standard", "prior")
ELLIPSOID_RADIUS = 0.2  # radii as a fraction of each grid size


def ellipsoid(shape: tuple[int, int, int], device: torch.device | str = "cpu", radius: float = ELLIPSOID_RADIUS,
              axes: list[torch.Tensor] | None = None) -> torch.Tensor:
    """Bool [*shape]: the centred ellipsoid with radii `radius` * shape, at the voxel centres, or on the grid whose
    model-grid coordinates along each axis are `axes` (an output at another spacing: [len(a) for a in axes])."""
    axes = [torch.arange(n, device=device) for n in shape] if axes is None else axes
    scaled = [(a.to(device, torch.float32) - (n - 1) / 2) / (radius * n) for a, n in zip(axes, shape)]
    return (scaled[0][:, None, None] ** 2 + scaled[1][None, :, None] ** 2 + scaled[2][None, None, :] ** 2) <= 1


def ellipsoid_at(coords: torch.Tensor, shape: tuple[int, int, int], radius: float = ELLIPSOID_RADIUS) -> torch.Tensor:
    """Bool [...]: whether model-grid coordinates `coords [..., 3]` (any, not only voxel centres) lie in `ellipsoid`'s
    ellipsoid; at voxel centres exactly `ellipsoid`'s values."""
    scaled = [(coords[..., a].float() - (n - 1) / 2) / (radius * n) for a, n in enumerate(shape)]
    return scaled[0] ** 2 + scaled[1] ** 2 + scaled[2] ** 2 <= 1


class SyntheticOccupancy(nn.Module):
    """An OSSNet that computes as usual but answers with a fixed ellipsoid (see the module docstring).

    Shapes are those of OSSNet: encode(volume [B, C, *S]) -> Encoding; decode(coords [B, N, 3], ...) -> [B, N, 1].
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.config = model.config
        self.register_buffer("mask", ellipsoid(model.config.volume_shape), persistent=False)  # [*S] bool

    def encode(self, volume: torch.Tensor) -> Any:
        encoding = self.model.encode(volume)
        low_res = torch.nn.functional.adaptive_max_pool3d(self.mask[None, None].float(), self.config.encoder_output_shape)
        return encoding._replace(segmentation=low_res.expand(volume.shape[0], -1, -1, -1, -1).to(encoding.latents.dtype))

    def fold(self, encoding: Any) -> Any:
        return self.model.fold(encoding)

    def decode(self, coords: torch.Tensor, encoding: Any, patches: torch.Tensor | None = None, **kwargs: Any) -> torch.Tensor:
        probabilities = self.model.decode(coords, encoding, patches, **kwargs)  # [B, N, 1], computed and discarded
        inside = ellipsoid_at(coords, self.config.volume_shape)  # [B, N]: the same object between voxel centres
        return inside[..., None].to(probabilities.dtype) + 0 * probabilities


def oracle_config(size: str, smoke: bool) -> Any:
    """Configuration C at the benchmark's grid: BraTS-size for "gpu" and "cpu-brats", demo-size for "cpu";
    for smoke runs a tiny encoder and decoder on a 16x16x12 grid (20x20x16 for "cpu-brats", which reads
    a NIfTI case of at least 16 voxels per axis)."""
    if smoke:
        grid = (20, 20, 16) if size == "cpu-brats" else (16, 16, 12)
        return demo_config("C", "brats", volume_shape=grid, encoder_channels=((4, 8),), decoder_width=16)
    return get_config("C", "brats") if size in ("gpu", "cpu-brats") else demo_config("C", "brats")


def oracle_model_and_volume(size: str, smoke: bool, device: torch.device) -> tuple[nn.Module, torch.Tensor]:
    """An untrained C wrapped in SyntheticOccupancy at the benchmark's grid, and a random volume [C, *S]."""
    config = oracle_config(size, smoke)
    model = SyntheticOccupancy(build_model(config)).to(device)
    return model, torch.randn(config.in_channels, *config.volume_shape)


def _measure(
    model: nn.Module, volume: torch.Tensor, mode: str, refinement: str, chunk: int, device: torch.device, repeats: int
) -> dict[str, Any]:
    """Median seconds of Predictor.predict, its decoder queries and (GPU) its peak memory."""
    predictor = Predictor(model, PredictOptions(mode=mode, chunk_size=chunk, refinement=refinement), device=device)
    synchronize = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else None
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    prediction = predictor.predict(volume)
    record: dict[str, Any] = {"points": prediction.points_evaluated, "foreground": int(prediction.mask_model_grid.sum())}
    if device.type == "cuda":
        record["memory_GiB"] = to_gib(torch.cuda.max_memory_allocated(device))
    record["seconds"] = time_call(lambda: predictor.predict(volume), repeats=repeats, warmup=0, synchronize=synchronize)
    return record


def run(size: str = "cpu", smoke: bool = False) -> dict:
    """Seconds (and memory) per chunk size and refinement rule for standard and prior; the speedup of prior."""
    device = benchmark_device(size)
    torch.manual_seed(0)
    model, volume = oracle_model_and_volume(size, smoke, device)
    config = model.config
    chunks = SMOKE_CHUNK_SIZES if smoke else CPU_TIMED_CHUNK_SIZES if size == "cpu" else CHUNK_SIZES
    repeats = 1 if smoke or size == "cpu" else 3
    if not smoke:
        Predictor(model, PredictOptions(mode="prior", chunk_size=chunks[-1]), device=device).predict(volume)  # warm-up

    rows = []
    for chunk in chunks:
        for refinement in REFINEMENTS:
            row: dict[str, Any] = {"chunk": chunk, "refinement": refinement}
            for mode in MODES:
                record = _measure(model, volume, mode, refinement, chunk, device, repeats)
                row.update({f"{mode}_{key}": value for key, value in record.items()})
            row["speedup"] = row["standard_seconds"] / row["prior_seconds"]
            row["query_ratio"] = row["standard_points"] / row["prior_points"]
            rows.append(row)
    memory_rows = []
    if size == "cpu":
        memory_model = build("C", "brats", "meta")
        for chunk in SMOKE_CHUNK_SIZES if smoke else CHUNK_SIZES:
            peak = inference_peak_bytes(memory_model, chunk) + parameter_bytes(memory_model)
            memory_rows.append({"chunk": chunk, "decode_memory_GiB": to_gib(peak)})

    result: dict[str, Any] = {
        "size": size,
        "smoke": smoke,
        "timed_grid": list(config.volume_shape),
        "timed_config": config.to_dict(),
        "device": str(device),
        "memory_measure": "device-free peak live bytes of one decode call, BraTS-size C" if size == "cpu" else "torch.cuda.max_memory_allocated",
        "rows": rows,
        "memory_rows": memory_rows,
        "median_speedup": {refinement: _median([r["speedup"] for r in rows if r["refinement"] == refinement])
                           for refinement in REFINEMENTS},
        "paper": "C: ~{:g} s standard vs ~{:g} s prior at 2^14 (about 2x at every chunk size)".format(*FIG6_SECONDS[2**14]),
    }
    print(format_table(rows))
    if memory_rows:
        print(format_table(memory_rows))
    for refinement, speedup in result["median_speedup"].items():
        print(f"prior vs standard, {refinement} refinement: median speedup {speedup:.2f}x")
    name = "chunks" if size == "cpu" else "chunks_gpu"
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    _plot(rows, memory_rows, str(RESULTS_DIR / f"{name}.png"), config.volume_shape, device)
    result["plot"] = str(RESULTS_DIR / f"{name}.png")
    write_result(name, result)
    return result


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def _plot(rows: list[dict[str, Any]], memory_rows: list[dict[str, Any]], path: str, grid: tuple[int, ...], device: torch.device) -> None:
    """Left: seconds per volume against the chunk size (both modes); right: memory against the chunk size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt


    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for refinement in REFINEMENTS:
        ruled = [r for r in rows if r["refinement"] == refinement]
        for mode in MODES:
            left.plot([r["chunk"] for r in ruled], [r[f"{mode}_seconds"] for r in ruled], marker="o",
                      linestyle="-" if refinement == "ours" else "--", label=f"{mode} ({refinement})")
    left.set(xscale="log", xlabel="max points per chunk", ylabel="seconds per volume",
             title=f"C, {'x'.join(map(str, grid))} on {device.type}")
    left.set_xscale("log", base=2)
    left.legend()
    if memory_rows:
        right.plot([r["chunk"] for r in memory_rows], [r["decode_memory_GiB"] for r in memory_rows], marker="o", color="tab:green")
        right.set(title="one decode call, BraTS-size C (device-free)")
    else:
        ruled = [r for r in rows if r["refinement"] == REFINEMENTS[0]]
        for mode in MODES:
            right.plot([r["chunk"] for r in ruled], [r[f"{mode}_memory_GiB"] for r in ruled], marker="o", label=mode)
        right.set(title="torch.cuda.max_memory_allocated")
        right.legend()
    right.set(xlabel="max points per chunk", ylabel="GiB")
    right.set_xscale("log", base=2)
    right.set_yscale("log")
    figure.tight_layout()
    with atomic_write(path, "wb") as handle:
        figure.savefig(handle, format="png", dpi=100)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    return bench_main(run, __doc__, "a 16x16x12 grid, one chunk size", argv)


if __name__ == "__main__":
    raise SystemExit(main())
