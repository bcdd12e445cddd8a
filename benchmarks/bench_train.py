"""Training throughput: iterations/s and the fraction of time spent waiting for data.

CPU (`size="cpu"`): the `--demo` preset on a synthetic BraTS set (64×64×40 model grid), for O-Net
and C, with AMP off and bf16, through the loop's own data (`TrainingData`) and step (`train_step`).
Every row trains from the same seed on the same batches (their case ids are in the JSON); the ratio
column is each variant's speed over O-Net without AMP.
GPU (`size="gpu"`, only with CUDA): peak memory of `train_step` for C at the paper's setting (BraTS
256×256×160, 2^14 points per volume; per-GPU batch 4 and 8), fp32 and bf16, in GiB next to the
paper's Table-2 figure for C (target ≤ 1.5 GiB).

    python -m benchmarks.bench_train            # CPU table
    python -m benchmarks.bench_train --size gpu
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import format_table, to_gib, write_result
from benchmarks.paper import table2_gib
from oss_net.data.synthetic import write_synthetic_dataset
from oss_net.models import build_model, get_config, parameter_groups
from oss_net.training.distributed import ProcessContext
from oss_net.training.lookahead import build_optimizer
from oss_net.training.loop import TrainingData, build_run
from oss_net.training.settings import DEMO_PRESET, resolve_settings
from oss_net.training.step import train_step

VARIANTS = (("O-Net", "off"), ("O-Net", "bf16"), ("C", "off"), ("C", "bf16"))
# Columns of the tables (and keys of every row in benchmarks/results/train.json); units in the names.
CPU_COLUMNS = ("config", "amp", "points", "batch", "steps", "it_per_s", "s_per_it", "data_wait_fraction", "speed_vs_onet_fp32")
GPU_COLUMNS = ("config", "amp", "batch", "points", "peak_GiB", "s_per_it")
TARGET_PEAK_GIB = 1.5  # C at batch 4, bf16


def _cpu_variant(dataset_path: Path, output: Path, network: str, amp: str, samples: int, batch_size: int,
                 warmup: int, iterations: int) -> dict:
    """Time `iterations` training steps after `warmup`: data loading and `train_step`, as the loop runs them."""
    settings = resolve_settings({
        "train": True, "demo": True, "cpu": True, "uniform_sampling": True, "network_config": network, "amp": amp,
        "batch_size": batch_size, "training_samples": samples, "dataset_path": str(dataset_path), "output_dir": str(output),
    })
    run = build_run(settings, ProcessContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu")))
    batches = TrainingData(run).batches_from(epoch=0, start_batch=0)
    waited = computed = 0.0
    cases, losses = [], []
    for step in range(warmup + iterations):
        started = time.perf_counter()
        batch = next(batches)
        fetched = time.perf_counter()
        loss = train_step(run.network, batch, run.optimizer, amp=amp, scaler=run.scaler,
                          segmentation_loss_factor=settings.segmentation_loss_factor).total
        finished = time.perf_counter()
        if step >= warmup:
            waited += fetched - started
            computed += finished - fetched
        cases.append(list(batch["case_id"]))
        losses.append(loss.item())
    run.recorder.close()
    total = waited + computed
    return {"config": network, "amp": amp, "points": samples, "batch": batch_size, "steps": iterations,
            "it_per_s": iterations / total, "s_per_it": total / iterations, "data_wait_fraction": waited / total,
            "cases": cases, "losses": losses}


def run_cpu(smoke: bool = False) -> list[dict]:
    preset = DEMO_PRESET["brats"]
    samples, batch = (64, 1) if smoke else (preset["training_samples"], preset["batch_size"])
    warmup, iterations = (0, 1) if smoke else (1, 4)
    variants = VARIANTS[:2] if smoke else VARIANTS  # smoke: only that it runs (O-Net, off vs bf16)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        root = write_synthetic_dataset("brats", Path(folder) / "data", cases=3 if smoke else 10, shape=(60, 60, 38), seed=0)
        for network, amp in variants:
            rows.append(_cpu_variant(root, Path(folder) / f"{network}_{amp}", network, amp, samples, batch, warmup, iterations))
    baseline = rows[0]["it_per_s"]
    for row in rows:
        row["speed_vs_onet_fp32"] = row["it_per_s"] / baseline
    return rows


def run_gpu(smoke: bool = False) -> list[dict]:
    """Peak memory of `train_step` for C at the paper's BraTS size (random inputs: memory only)."""
    device = torch.device("cuda")
    config = get_config("C", "brats")
    points = 2**10 if smoke else 2**14
    rows = []
    for batch_size in ((1,) if smoke else (4, 8)):
        for amp in ("off", "bf16"):
            torch.manual_seed(0)
            model = build_model(config).to(device)
            optimizer = build_optimizer(parameter_groups(model, lr=3e-4))
            batch = {
                "volume": torch.randn(batch_size, config.in_channels, *config.volume_shape, device=device),
                "label": (torch.rand(batch_size, *config.volume_shape, device=device) > 0.9).to(torch.uint8),
                "coords": torch.randint(0, 160, (batch_size, points, 3), device=device).float(),
                "labels": torch.rand(batch_size, points, 1, device=device).round(),
            }
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats(device)
            started = time.perf_counter()
            steps = 3
            for _ in range(steps):
                train_step(model, batch, optimizer, amp=amp)
            torch.cuda.synchronize()
            rows.append({"config": "C", "amp": amp, "batch": batch_size, "points": points,
                         "peak_GiB": to_gib(torch.cuda.max_memory_allocated(device)),
                         "s_per_it": (time.perf_counter() - started) / steps})
            del model, optimizer, batch
            torch.cuda.empty_cache()
    return rows


def run(size: str = "cpu", smoke: bool = False) -> dict:
    if size == "gpu":
        if not torch.cuda.is_available():
            result = {"size": size, "skipped": "no CUDA device"}
            print("bench_train: no CUDA device, GPU memory benchmark skipped")
            write_result("train", result)
            return result
        rows = run_gpu(smoke)
        result = {"size": size, "smoke": smoke, "rows": rows, "device": torch.cuda.get_device_name(),
                  "paper_train_GiB_C_brats": table2_gib("C", "brats")["paper_train_GiB"], "target_peak_GiB": TARGET_PEAK_GIB}
        print(format_table(rows, list(GPU_COLUMNS)))
        write_result("train", result)
        return result
    rows = run_cpu(smoke)
    result = {"size": size, "smoke": smoke, "threads": torch.get_num_threads(), "rows": rows}
    print(format_table(rows, list(CPU_COLUMNS)))
    write_result("train", result)
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--size", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument("--smoke", action="store_true")
    arguments = parser.parse_args()
    run(arguments.size, arguments.smoke)
