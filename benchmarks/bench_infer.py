"""Dense vs standard vs prior inference on the same model and volume: seconds and decoder queries.

    python -m benchmarks.bench_infer                  # CPU: demo-size C (64x64x40)
    python -m benchmarks.bench_infer --size gpu       # BraTS-size C (256x256x160) on a GPU, fp32 and bf16
    python -m benchmarks.bench_infer --checkpoint demo_output/train/best_model.pt   # a trained model instead

Paper (reference §8.2, §13.4): seeding the coarse stage with the encoder's segmentation ("prior") makes
OSS-Net C's inference ~2x faster than the MISE-like "standard" scheme (~5.4 s -> ~2.6 s per volume at
chunks of 2^14). Targets here: prior >= 2x faster than standard and <= 5% of the voxels decoded; on an
H100 <= 0.25 s per BraTS-size volume.

"dense" decodes every voxel (stages (1,)), "standard" the whole stride-4 lattice then the boundary
shell, "prior" only the seeded part of the lattice then the same shell (stages (4, 2, 1)). All three run
through `oss_net.inference.Predictor`. Without a checkpoint the model is an untrained OSSNet wrapped
in `bench_chunks.SyntheticOccupancy`: every decoder computation is real, but the answers are a fixed
ellipsoid of ~3% of the volume, so the point counts are those of a well-trained model on that object.
"""
from __future__ import annotations

import argparse
from typing import Any

import torch

from benchmarks.bench_chunks import oracle_model_and_volume
from benchmarks.common import benchmark_device, format_table, time_call, write_result
from oss_net.inference import Predictor
from oss_net.models import load_model

MODES: dict[str, dict[str, Any]] = {
    "dense": {"mode": "standard", "stages": (1,)},
    "standard": {"mode": "standard", "stages": (4, 2, 1)},
    "prior": {"mode": "prior", "stages": (4, 2, 1)},
}
CHUNK = 2**14


def _model_and_volume(size: str, smoke: bool, checkpoint: str | None, device: torch.device) -> tuple[Any, torch.Tensor, str]:
    """(model, volume [C, *S], description): a trained checkpoint on a synthetic case, or the ellipsoid oracle."""
    if checkpoint is not None:
        model = load_model(checkpoint, map_location=device)
        return model, _synthetic_case(model.config), f"checkpoint {checkpoint}"
    model, volume = oracle_model_and_volume(size, smoke, device)
    return model, volume, f"untrained {model.config.name} + ellipsoid answers"


def _synthetic_case(config: Any) -> torch.Tensor:
    """One synthetic BraTS case (seed 123, not a training case) loaded onto the model grid."""
    import tempfile

    from oss_net.data import discover, load_case
    from oss_net.data.synthetic import write_synthetic_dataset

    with tempfile.TemporaryDirectory() as folder:
        shape = tuple(s - (4 if i < 2 else 2) for i, s in enumerate(config.volume_shape))
        root = write_synthetic_dataset("brats", folder, cases=1, shape=shape, seed=123)
        case = load_case(discover("brats", root, "all")[0], config, with_border=False)
        return torch.as_tensor(case.image).clone()


def _measure(model: Any, volume: torch.Tensor, name: str, device: torch.device, amp: str, repeats: int) -> tuple[dict, torch.Tensor]:
    options = MODES[name]
    predictor = Predictor(model, mode=options["mode"], stages=options["stages"], chunk_size=CHUNK, amp=amp, device=device)
    synchronize = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else None
    outcome: list[Any] = []
    # the last timed call's prediction gives the counts, so nothing is decoded only for them
    seconds = time_call(lambda: outcome.append(predictor.predict(volume)), repeats=repeats, warmup=0, synchronize=synchronize)
    prediction = outcome[-1]
    voxels = prediction.occupancy.numel()
    row = {
        "method": name,
        "amp": amp,
        "seconds": seconds,
        "decoder_points": prediction.points_evaluated,
        "voxel_fraction": prediction.points_evaluated / voxels,
        "foreground_voxels": int(prediction.mask_model_grid.sum()),
    }
    return row, prediction.mask_model_grid


def run(size: str = "cpu", smoke: bool = False, checkpoint: str | None = None) -> dict:
    """Seconds and decoder queries of dense, standard and prior inference; prior's speed-ups."""
    device = benchmark_device(size)
    torch.manual_seed(0)
    model, volume, description = _model_and_volume(size, smoke, checkpoint, device)
    repeats = 1 if smoke or size == "cpu" else 5
    amps = ("off", "bf16") if size == "gpu" else ("off",)
    if device.type == "cuda":
        Predictor(model, mode="standard", device=device).predict(volume)  # warm-up (kernels, allocator)

    rows = []
    for amp in amps:
        masks = {}
        for name in MODES:
            row, masks[name] = _measure(model, volume, name, device, amp, repeats)
            rows.append(row)
        for row in rows[-len(MODES):]:
            row["voxels_differing_from_dense"] = int((masks[row["method"]] != masks["dense"]).sum())
    timed = {(r["method"], r["amp"]): r for r in rows}
    result: dict[str, Any] = {
        "size": size,
        "smoke": smoke,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(),
        "model": description,
        "volume_shape": list(model.config.volume_shape),
        "chunk_size": CHUNK,
        "rows": rows,
        "speedup_prior_vs_standard": timed[("standard", "off")]["seconds"] / timed[("prior", "off")]["seconds"],
        "speedup_prior_vs_dense": timed[("dense", "off")]["seconds"] / timed[("prior", "off")]["seconds"],
        "points_ratio_standard_vs_prior": timed[("standard", "off")]["decoder_points"] / max(timed[("prior", "off")]["decoder_points"], 1),
        "prior_voxel_fraction": timed[("prior", "off")]["voxel_fraction"],
    }
    if device.type == "cuda":
        result["gpu_seconds_per_volume"] = min(timed[("prior", amp)]["seconds"] for amp in amps)
    print(format_table(rows))
    print(
        f"prior vs standard: {result['speedup_prior_vs_standard']:.2f}x faster, "
        f"{result['points_ratio_standard_vs_prior']:.2f}x fewer points; prior decodes "
        f"{100 * result['prior_voxel_fraction']:.2f}% of the voxels; {result['speedup_prior_vs_dense']:.1f}x faster than dense"
    )
    write_result("infer", result)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, a few seconds")
    parser.add_argument("--checkpoint", default=None, help="a trained model instead of the ellipsoid oracle")
    args = parser.parse_args(argv)
    run(args.size, args.smoke, args.checkpoint)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
