"""Decoder throughput of configuration C: points/s and achieved GFLOP/s as a fraction of a large matmul's.

    python -m benchmarks.bench_decoder            # BraTS C decoder, chunks of 2^14 points, 2048^3 fp32 matmul
    python -m benchmarks.bench_decoder --smoke    # a 16-wide decoder, seconds

The decoder is GEMMs plus PAU and batch norm. Its FLOPs per point are the matmul FLOPs that
torch.utils.flop_counter counts for one decode of a chunk (element-wise ops are not counted; the
per-volume gamma/beta maps are spread over the chunk's points), and its achieved GFLOP/s is that times
points/s. The ceiling is the GFLOP/s of a large float32 matmul measured in the same run, with the same
threads: "of matmul" is the share of the machine's matmul throughput the decoder reaches.
Decoding runs as inference does: eval mode, no autograd, one chunk of CHUNK_SIZE points of one volume
per call, patches gathered beforehand (not timed). The decoder and the matmul are timed in interleaved
rounds, so load from other jobs on a shared machine hits both alike; "ms" is the median round,
"min ms" the fastest, and the GFLOP/s columns use the median.
"""
from __future__ import annotations

import statistics
from typing import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.common import bench_main, benchmark_device, format_table, interleaved_seconds, write_result
from oss_net.data.patches import PATCH_SIZE
from oss_net.inference.defaults import CHUNK_SIZE
from oss_net.models import Encoding, build_model, get_config

MATMUL_SIZE = 2048  # [n, n] @ [n, n]: large enough for the BLAS to run at its peak
SMOKE = {"points": 2**8, "matmul": 256, "overrides": {"decoder_width": 16}}


def decoder_call(device: torch.device, points: int, overrides: dict) -> tuple[Callable[[], object], float]:
    """(one decode of `points` points of one volume, its matmul FLOPs) for an untrained C in eval mode."""
    torch.manual_seed(0)
    model = build_model(get_config("C", "brats", **overrides)).to(device).eval()
    config = model.config
    extent = torch.tensor(config.volume_shape, device=device) - 1
    coords = torch.rand(1, points, 3, device=device) * extent  # [1, N, 3] voxel indices
    latents = torch.randn(1, config.number_of_latents, config.latent_size, device=device)  # [1, K, L]
    patches = (
        torch.rand(1, points, config.patch_channels, PATCH_SIZE, PATCH_SIZE, PATCH_SIZE, device=device)
        if config.patches else None
    )  # [1, N, C_p, 7, 7, 7]

    def decode() -> object:
        with torch.no_grad():
            return model.decode(coords, Encoding(latents, None), patches)

    with FlopCounterMode(display=False) as counter:
        decode()
    return decode, float(counter.get_total_flops())


def run(size: str = "cpu", smoke: bool = False) -> dict:
    device = benchmark_device(size)
    points = SMOKE["points"] if smoke else CHUNK_SIZE
    side = SMOKE["matmul"] if smoke else MATMUL_SIZE
    decode, decoder_flops = decoder_call(device, points, SMOKE["overrides"] if smoke else {})
    left, right = torch.randn(side, side, device=device), torch.randn(side, side, device=device)
    matmul_flops = 2.0 * side**3
    synchronize = torch.cuda.synchronize if device.type == "cuda" else None
    samples = interleaved_seconds({"decoder": decode, "matmul": lambda: left @ right}, rounds=3 if smoke else 10,
                                  warmup=1 if smoke else 2, synchronize=synchronize)
    median = {name: statistics.median(seconds) for name, seconds in samples.items()}
    matmul_gflops = matmul_flops / median["matmul"] / 1e9
    decoder_gflops = decoder_flops / median["decoder"] / 1e9
    rows = [
        {"what": f"decoder C, {points} points", "ms": median["decoder"] * 1e3, "min ms": min(samples["decoder"]) * 1e3,
         "points/s": points / median["decoder"], "MFLOP/point": decoder_flops / points / 1e6,
         "GFLOP/s": decoder_gflops, "of matmul": decoder_gflops / matmul_gflops},
        {"what": f"matmul fp32 {side}^3", "ms": median["matmul"] * 1e3, "min ms": min(samples["matmul"]) * 1e3,
         "GFLOP/s": matmul_gflops},
    ]
    result = {"device": str(device), "threads": torch.get_num_threads(), "points_per_s": points / median["decoder"],
              "decoder_GFLOPs": decoder_gflops, "matmul_GFLOPs": matmul_gflops,
              "decoder_of_matmul": decoder_gflops / matmul_gflops, "rows": rows}
    print(format_table(rows, list(dict.fromkeys(key for row in rows for key in row))))
    write_result("decoder", result)
    return result


def main(argv: list[str] | None = None) -> int:
    return bench_main(run, __doc__, "a 16-wide decoder and a small matmul, seconds", argv)


if __name__ == "__main__":
    raise SystemExit(main())
