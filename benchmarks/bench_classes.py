"""Decoding cost of K = 3 regions against K = 1 (binary) on the same volume: the ratio should stay near 1.

    python -m benchmarks.bench_classes            # configuration C on the demo grid (cpu) or BraTS grid (gpu)
    python -m benchmarks.bench_classes --smoke    # a 16-wide decoder, seconds

The regions model (label mode "regions", WT/TC/ET) is the binary model with its last decoder layer and
segmentation head repeated three times, so every region's output equals the binary output: both
refine exactly the same points, and what differs is only the K-wide last layer and the K-channel
lattice. Two measurements, each timed in interleaved rounds (load from other jobs hits both alike),
medians reported: "decode" is CHUNK_SIZE points through the decoder folded for the volume, in the
refinement loop's chunks (`default_chunk_size`; patches gathered beforehand), "predict" a whole
standard-mode prediction of one volume (encode, refine, dense grid).
"""
from __future__ import annotations

import statistics

import torch

from benchmarks.common import interleaved_seconds
from benchmarks.common import bench_main, benchmark_device, format_table, write_result
from oss_net.geometry import PATCH_SIZE
from oss_net.inference import PredictOptions, Predictor
from oss_net.inference.defaults import CHUNK_SIZE
from oss_net.inference.predictor import default_chunk_size
from oss_net.labels import config_with_label_mode
from oss_net.models import build_model, demo_config, get_config

SMOKE_OVERRIDES = {"decoder_width": 16}


def binary_and_regions(size: str, smoke: bool, device: torch.device) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(binary C, regions C with every region a copy of the binary output), in eval mode on `device`."""
    torch.manual_seed(0)
    overrides = SMOKE_OVERRIDES if smoke else {}
    config = demo_config("C", **overrides) if size == "cpu" or smoke else get_config("C", "brats", **overrides)
    binary = build_model(config).eval()
    regions = build_model(config_with_label_mode(config, "regions")).eval()
    state = binary.state_dict()
    for name, value in regions.state_dict().items():
        if value.shape != state[name].shape:  # the last layer and the head: one row per region
            state[name] = state[name].repeat(value.shape[0], *[1] * (value.dim() - 1))
    regions.load_state_dict(state)
    return binary.to(device), regions.to(device)


def run(size: str = "cpu", smoke: bool = False) -> dict:
    device = benchmark_device(size)
    models = dict(zip(("K=1", "K=3"), binary_and_regions(size, smoke, device)))
    config = models["K=1"].config
    volume = torch.randn(1, config.in_channels, *config.volume_shape, device=device)
    points = 2**10 if smoke else CHUNK_SIZE
    coords = torch.rand(1, points, 3, device=device) * (torch.tensor(config.volume_shape, device=device) - 1)
    patches = torch.rand(1, points, config.patch_channels, PATCH_SIZE, PATCH_SIZE, PATCH_SIZE, device=device)
    with torch.no_grad():
        encodings = {name: model.fold(model.encode(volume)) for name, model in models.items()}  # as the predictor
    predictors = {name: Predictor(model, PredictOptions(mode="standard"), device=device) for name, model in models.items()}
    steps = {}
    for name, model in models.items():
        steps[f"decode {name}"] = lambda m=model, e=encodings[name]: _decode(m, coords, e, patches)
        steps[f"predict {name}"] = lambda p=predictors[name]: p.predict(volume[0])
    synchronize = torch.cuda.synchronize if device.type == "cuda" else None
    samples = interleaved_seconds(steps, rounds=2 if smoke else 5, warmup=1, synchronize=synchronize)
    median = {name: statistics.median(seconds) for name, seconds in samples.items()}
    one, three = predictors["K=1"].predict(volume[0]), predictors["K=3"].predict(volume[0])
    same_points = one.points_evaluated == three.points_evaluated
    rows = [{"what": what, "K=1 s": median[f"{what} K=1"], "K=3 s": median[f"{what} K=3"],
             "K=3 / K=1": median[f"{what} K=3"] / median[f"{what} K=1"]} for what in ("decode", "predict")]
    rows[0]["points"], rows[1]["points"] = points, one.points_evaluated
    result = {"device": str(device), "threads": torch.get_num_threads(), "volume_shape": list(config.volume_shape),
              "decode_ratio": rows[0]["K=3 / K=1"], "predict_ratio": rows[1]["K=3 / K=1"],
              "same_points_evaluated": same_points, "rows": rows}
    print(format_table(rows, ["what", "points", "K=1 s", "K=3 s", "K=3 / K=1"]))
    print(f"same points refined for K=1 and K=3: {same_points}")
    write_result("classes", result)
    return result


def _decode(model: torch.nn.Module, coords: torch.Tensor, encoding, patches: torch.Tensor) -> torch.Tensor:
    """[1, N, K] decoded chunk by chunk, as the refinement loop calls the decoder."""
    chunk = default_chunk_size(coords.device)
    with torch.no_grad():
        return torch.cat([model.decode(coords[:, start:start + chunk], encoding, patches[:, start:start + chunk])
                          for start in range(0, coords.shape[1], chunk)], dim=1)


def main(argv: list[str] | None = None) -> int:
    return bench_main(run, __doc__, "a 16-wide decoder, seconds", argv)


if __name__ == "__main__":
    raise SystemExit(main())
