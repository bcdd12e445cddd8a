"""Model size and training-step cost of every OSS-Net configuration, without a GPU.

    python -m benchmarks.bench_model            # all 12 BraTS configurations, ~a minute on 2 cores
    python -m benchmarks.bench_model --smoke    # O-Net and C only, seconds

Per configuration (BraTS, the paper's training setting: batch 8, 2^14 points per volume):
- parameters;
- decoder FLOPs per point: matmul/conv FLOPs of one decode of 2^14 points (torch.utils.flop_counter on the
  meta device, so shapes only), divided by the points; element-wise ops (PAU, BN) are not counted and the
  per-volume gamma/beta maps are amortised over the points;
- activation bytes saved for backward per training step (forward + BCE losses), counted with
  saved_tensors_hooks (oss_net.models.memory), parameters excluded. How it is measured and scaled:
    decoder: on the CPU with real tensors at batch 1 and n and 2n points; saved bytes are affine in the
      points, so slope = (b(2n) - b(n)) / n per point and intercept = b(n) - n * slope per volume, and a
      step is 8 * (intercept + 2^14 * slope);
    encoder: at batch 1 on the full 256x256x160 grid on the meta device (exact shapes, nothing computed:
      a real CPU pass would need gigabytes), times 8 (every saved tensor scales with the batch).
  The check: the whole step at batch 8 and 2^14 points on the meta device. `scaled/meta` is the ratio of
  the two (1.000 when the scaling model holds).
  Two PAU accountings: "reference" is what the pure-PyTorch PAU saves (its Horner intermediates; every
  PAU is forced to the reference backend, the only one that runs on the meta device); "fused" counts each
  PAU as a kernel that saves only its input (what pade_activation_unit's compiled kernels keep).
The paper's Table-2 training memory (whole GPU, parameters and optimizer state included; `benchmarks.paper`)
is shown for the Table-1 rows, with both ratios to O-Net. Memory is in GiB (2^30 bytes).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.common import bench_main, format_table, to_gib, write_result
from benchmarks.paper import TABLE2_GIB
from oss_net.geometry import PATCH_SIZE
from oss_net.models import CONFIG_NAMES, Encoding, OSSNet, build_model, count_parameters, get_config
from oss_net.models.config import OSSNetConfig
from oss_net.models.memory import saved_tensor_bytes
from pade_activation_unit import PAU

PAPER_BATCH = 8
PAPER_POINTS = 2**14
SEGMENTATION_LOSS_FACTOR = 0.1
TABLE1 = {"vanilla_o_net_wide": "O-Net", "A": "A", "B": "B", "full": "C", "full2": "D"}


def paper_train_gib(config_name: str) -> float | None:
    """The paper's Table-2 BraTS training memory of a configuration (GiB), None for one not in Table 1."""
    row = TABLE2_GIB.get((TABLE1.get(config_name, ""), "brats"))
    return row[0] if row else None


def _inputs(config: OSSNetConfig, batch: int, points: int, device: str | torch.device) -> dict[str, torch.Tensor | None]:
    """One training batch: model-grid volume, coordinates, labels, patches, segmentation target.

    On the meta device shapes only; on the CPU random values, without the volume (only the decoder runs there).
    """

    def make(*shape: int) -> torch.Tensor:
        return torch.empty(*shape, device=device) if str(device) == "meta" else torch.rand(*shape, device=device)

    coords = make(batch, points, 3) * (torch.tensor(config.volume_shape, device=device) - 1)
    return {
        "volume": make(batch, config.in_channels, *config.volume_shape) if str(device) == "meta" else None,
        "coords": coords,
        "labels": make(batch, points, 1),
        "patches": make(batch, points, config.patch_channels, PATCH_SIZE, PATCH_SIZE, PATCH_SIZE) if config.patches else None,
        "segmentation_target": make(batch, 1, *config.encoder_output_shape) if config.segmentation_head else None,
    }


def _loss(occupancy: torch.Tensor, labels: torch.Tensor, segmentation: torch.Tensor | None, target: torch.Tensor | None) -> torch.Tensor:
    loss = F.binary_cross_entropy(occupancy, labels)
    if segmentation is not None:
        loss = loss + SEGMENTATION_LOSS_FACTOR * F.binary_cross_entropy(segmentation, target)
    return loss


def _saved(model: OSSNet, fn: Callable[[], object], fused_pau: bool) -> int:
    opaque = [m for m in model.modules() if isinstance(m, PAU)] if fused_pau else []
    return saved_tensor_bytes(fn, exclude=list(model.parameters()) + list(model.buffers()), opaque_modules=opaque)


def _decoder_bytes(model: OSSNet, points: int, fused_pau: bool) -> int:
    """Saved bytes of decode + occupancy loss at batch 1 on the CPU, with latents as the encoder gives them."""
    config = model.config
    data = _inputs(config, 1, points, "cpu")
    latents = torch.randn(1, config.number_of_latents, config.latent_size, requires_grad=True)  # [1, K, L]

    def step() -> torch.Tensor:
        occupancy = model.decode(data["coords"], Encoding(latents, None), data["patches"])
        return F.binary_cross_entropy(occupancy, data["labels"])

    return _saved(model, step, fused_pau)


def _encoder_bytes(meta_model: OSSNet, fused_pau: bool) -> int:
    """Saved bytes of encode + auxiliary loss for one full-size volume, on the meta device."""
    data = _inputs(meta_model.config, 1, 1, "meta")

    def step() -> torch.Tensor | None:
        encoding = meta_model.encode(data["volume"])
        if encoding.segmentation is None:
            return encoding.latents
        return F.binary_cross_entropy(encoding.segmentation, data["segmentation_target"])

    return _saved(meta_model, step, fused_pau)


def _full_step_bytes(meta_model: OSSNet, batch: int, points: int, fused_pau: bool) -> int:
    """Saved bytes of the whole training step at the given size, on the meta device."""
    data = _inputs(meta_model.config, batch, points, "meta")

    def step() -> torch.Tensor:
        occupancy, segmentation = meta_model(data["volume"], data["coords"], data["patches"])
        return _loss(occupancy, data["labels"], segmentation, data["segmentation_target"])

    return _saved(meta_model, step, fused_pau)


def _decoder_flops_per_point(meta_model: OSSNet, points: int) -> float:
    config = meta_model.config
    data = _inputs(config, 1, points, "meta")
    latents = torch.randn(1, config.number_of_latents, config.latent_size, device="meta")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        meta_model.decode(data["coords"], Encoding(latents, None), data["patches"])
    return counter.get_total_flops() / points


def measure(
    name: str, measured_points: int, accountings: tuple[str, ...] = ("reference", "fused"), batch: int = PAPER_BATCH, points: int = PAPER_POINTS
) -> dict:
    """Every figure of one BraTS configuration (see the module docstring for how each is taken)."""
    config = get_config(name, "brats")
    torch.manual_seed(0)
    model = build_model(config).train()
    with torch.device("meta"):
        meta_model = build_model(config).train()
    # Meta tensors always run the pure-PyTorch PAU; the CPU ones must too, or the two parts would not add up.
    for pau in (m for network in (model, meta_model) for m in network.modules() if isinstance(m, PAU)):
        pau.backend = "reference"
    row: dict = {"config": config.name, "table1": TABLE1.get(config.name, ""), "parameters": count_parameters(model)}
    row["decoder_mflops_per_point"] = _decoder_flops_per_point(meta_model, points) / 1e6
    for label in accountings:
        fused = label == "fused"
        small = _decoder_bytes(model, measured_points, fused)
        large = _decoder_bytes(model, 2 * measured_points, fused)
        per_point = (large - small) / measured_points
        per_volume = small - measured_points * per_point
        decoder = batch * (per_volume + points * per_point)
        encoder = batch * _encoder_bytes(meta_model, fused)
        scaled = encoder + decoder
        meta = _full_step_bytes(meta_model, batch, points, fused)
        row[f"activation_GiB_{label}"] = to_gib(scaled)
        row[f"encoder_share_{label}"] = encoder / scaled
        row[f"decoder_bytes_per_point_{label}"] = per_point
        row[f"scaled_over_meta_{label}"] = scaled / meta
        row[f"activation_GiB_per_volume_{label}"] = to_gib(scaled / batch)
    return row


def run(size: str = "cpu", smoke: bool = False) -> dict:
    """Measure the configurations, print the table, write benchmarks/results/model.json.

    size does not change the figures (they are device-free); smoke measures O-Net and C with fewer points
    and only the fused-PAU accounting.
    """
    names = ("vanilla_o_net_wide", "full") if smoke else CONFIG_NAMES
    measured_points = 16 if smoke else 64
    accountings = ("fused",) if smoke else ("reference", "fused")
    rows = [measure(name, measured_points, accountings) for name in names]
    reference = next(row for row in rows if row["config"] == "vanilla_o_net_wide")
    for row in rows:
        row["fused_vs_onet"] = row["activation_GiB_fused"] / reference["activation_GiB_fused"]
        paper = paper_train_gib(row["config"])
        row["paper_train_GiB"] = paper if paper is not None else ""
        row["paper_vs_onet"] = paper / paper_train_gib("vanilla_o_net_wide") if paper is not None else ""
    columns = [
        "config",
        "table1",
        "parameters",
        "decoder_mflops_per_point",
        "activation_GiB_reference",
        "activation_GiB_fused",
        "activation_GiB_per_volume_fused",
        "encoder_share_fused",
        "scaled_over_meta_reference",
        "scaled_over_meta_fused",
        "fused_vs_onet",
        "paper_train_GiB",
        "paper_vs_onet",
    ]
    print(f"BraTS training step, batch {PAPER_BATCH}, {PAPER_POINTS} points per volume (decoder measured at {measured_points} and {2 * measured_points} points, batch 1)")
    print(format_table(rows, columns))
    result = {
        "setting": {"dataset": "brats", "batch": PAPER_BATCH, "points": PAPER_POINTS, "measured_points": measured_points, "smoke": smoke, "size": size},
        "rows": rows,
    }
    path = write_result("model", result)
    print(f"wrote {path}")
    return result


def main(argv: list[str] | None = None) -> int:
    return bench_main(run, __doc__, "O-Net and C only, fewer points, fused PAU only (seconds)", argv)


if __name__ == "__main__":
    raise SystemExit(main())
