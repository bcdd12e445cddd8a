"""Decoder throughput of configuration C: points/s and achieved GFLOP/s as a fraction of a large matmul's.

    python -m benchmarks.bench_decoder            # BraTS C decoder, chunks of 2^14 points, 2048^3 fp32 matmul
    python -m benchmarks.bench_decoder --smoke    # a 16-wide decoder, seconds

Decoding runs as inference does: eval mode, no autograd, the volume's `FoldedDecoder` built once (as
the predictor asks `OSSNet.fold` per case; not timed), CHUNK_SIZE points decoded in the refinement
loop's chunks (`default_chunk_size`: 2^10 points per call on the CPU, all 2^14 at once on a GPU),
patches gathered beforehand (not timed). The folded decoder is GEMMs plus PAU: every CBN folded into the linear layer
before it, latent 0's share of the first layer in its bias. "executed MFLOP/point" are the matmul FLOPs
that torch.utils.flop_counter counts for one folded decode of a chunk (element-wise ops are not
counted), and "GFLOP/s" is that times points/s: the machine efficiency. The ceiling is the GFLOP/s of a
large float32 matmul measured in the same run, with the same threads: "of matmul" is the share of the
machine's matmul throughput the decoder reaches. "model MFLOP/point" are the FLOPs of the unfolded
decoder module (the model's nominal cost, 8.4 MFLOP for C) and "model GFLOP/s" that times points/s.
The row "decoder C, module" times the unfolded module path (mesh refinement's, with autograd off, all
points in one call) for comparison. All are timed in interleaved rounds, so load from other jobs on a shared machine hits them
alike; "ms" is the median round, "min ms" the fastest, and the GFLOP/s columns use the median.
"""
from __future__ import annotations

import statistics
from typing import Callable

import torch

from benchmarks.common import bench_main, benchmark_device, format_table, interleaved_seconds, write_result
from oss_net.geometry import PATCH_SIZE
from oss_net.inference.defaults import CHUNK_SIZE
from oss_net.inference.efficiency import counted_flops
from oss_net.inference.predictor import default_chunk_size
from oss_net.models import Encoding, build_model, get_config

MATMUL_SIZE = 2048  # [n, n] @ [n, n]: large enough for the BLAS to run at its peak
SMOKE = {"points": 2**8, "matmul": 256, "overrides": {"decoder_width": 16}}


def decoder_calls(device: torch.device, points: int, overrides: dict) -> dict[str, Callable[[], object]]:
    """{"folded": one decode of `points` points of one volume as inference runs it, "module": the same through
    the unfolded decoder module} for an untrained C in eval mode."""
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

    with torch.no_grad():
        folded = model.fold(Encoding(latents, None))  # built once per volume, as the predictor asks for it

    def decode(encoding: Encoding, chunk_size: int) -> Callable[[], object]:
        def call() -> object:  # [1, N, classes], chunk by chunk as the refinement loop calls the decoder
            with torch.no_grad():
                return torch.cat([model.decode(coords[:, start:start + chunk_size], encoding,
                                               None if patches is None else patches[:, start:start + chunk_size])
                                  for start in range(0, points, chunk_size)], dim=1)
        return call

    return {"folded": decode(folded, default_chunk_size(device)), "module": decode(Encoding(latents, None), points)}


def run(size: str = "cpu", smoke: bool = False) -> dict:
    device = benchmark_device(size)
    points = SMOKE["points"] if smoke else CHUNK_SIZE
    side = SMOKE["matmul"] if smoke else MATMUL_SIZE
    calls = decoder_calls(device, points, SMOKE["overrides"] if smoke else {})
    executed = {name: counted_flops(call) for name, call in calls.items()}
    model_flops = executed["module"]  # the unfolded module's FLOPs: the model's nominal cost
    left, right = torch.randn(side, side, device=device), torch.randn(side, side, device=device)
    synchronize = torch.cuda.synchronize if device.type == "cuda" else None
    samples = interleaved_seconds({**calls, "matmul": lambda: left @ right}, rounds=3 if smoke else 6,
                                  warmup=1 if smoke else 1, synchronize=synchronize)
    median = {name: statistics.median(seconds) for name, seconds in samples.items()}
    matmul_gflops = 2.0 * side**3 / median["matmul"] / 1e9
    rows = []
    for name in calls:
        gflops = executed[name] / median[name] / 1e9
        rows.append({"what": f"decoder C, {name}, {points} points", "ms": median[name] * 1e3, "min ms": min(samples[name]) * 1e3,
                     "points/s": points / median[name], "executed MFLOP/point": executed[name] / points / 1e6,
                     "GFLOP/s": gflops, "of matmul": gflops / matmul_gflops,
                     "model MFLOP/point": model_flops / points / 1e6, "model GFLOP/s": model_flops / median[name] / 1e9})
    rows.append({"what": f"matmul fp32 {side}^3", "ms": median["matmul"] * 1e3, "min ms": min(samples["matmul"]) * 1e3,
                 "GFLOP/s": matmul_gflops})
    folded = rows[0]
    result = {"device": str(device), "threads": torch.get_num_threads(), "points_per_s": folded["points/s"],
              "decoder_GFLOPs": folded["GFLOP/s"], "decoder_model_GFLOPs": folded["model GFLOP/s"],
              "matmul_GFLOPs": matmul_gflops, "decoder_of_matmul": folded["of matmul"],
              "folded_speedup_vs_module": median["module"] / median["folded"], "rows": rows}
    result["columns"] = list(dict.fromkeys(key for row in rows for key in row))
    result["headline"] = (f"folded decoder: {folded['GFLOP/s']:.1f} GFLOP/s executed = {folded['of matmul']:.2f} of the "
                          f"{matmul_gflops:.1f} GFLOP/s matmul (target >= 0.5); {folded['points/s']:.0f} points/s, "
                          f"{result['folded_speedup_vs_module']:.2f}x the module path's")
    print(format_table(rows, result["columns"]))
    print(result["headline"])
    write_result("decoder", result)
    return result


def main(argv: list[str] | None = None) -> int:
    return bench_main(run, __doc__, "a 16-wide decoder and a small matmul, seconds", argv)


if __name__ == "__main__":
    raise SystemExit(main())
