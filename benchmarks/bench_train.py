"""Training throughput: iterations/s and the fraction of time spent waiting for data.

CPU (`size="cpu"`): the `--demo` preset on a synthetic BraTS set (64×64×40 model grid), for O-Net
and C, with AMP off and bf16; the ratio column is each variant's speed over O-Net without AMP.
GPU (`size="gpu"`, only with CUDA): peak memory of one training step of C at the paper's setting
(BraTS 256×256×160, 2^14 points per volume; per-GPU batch 4 and 8), fp32 and bf16 (paper Table 2:
2.59 GB for C; target ≤ 1.5 GB).

    python -m benchmarks.bench_train            # CPU table
    python -m benchmarks.bench_train --size gpu
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import format_table, write_result

VARIANTS = (("O-Net", "off"), ("O-Net", "bf16"), ("C", "off"), ("C", "bf16"))


def _cpu_variant(dataset_path: Path, output: Path, network: str, amp: str, samples: int, batch_size: int,
                 warmup: int, iterations: int) -> dict:
    """Time `iterations` steps after `warmup` of the real loop pieces (data, step, optimiser)."""
    from oss_net.training import loop
    from oss_net.training.distributed import ProcessContext
    from oss_net.training.settings import resolve_settings

    settings = resolve_settings({
        "train": True, "demo": True, "cpu": True, "uniform_sampling": True, "network_config": network, "amp": amp,
        "batch_size": batch_size, "training_samples": samples, "dataset_path": str(dataset_path), "output_dir": str(output),
    })
    context = ProcessContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    run = loop._build_run(settings, context)
    dataset, sampler, loader_for = loop._training_data(run)
    autocast = loop._autocast(settings, context.device)
    waited = computed = 0.0
    done = 0
    epoch = 0
    while done < warmup + iterations:
        sampler.set_epoch(epoch)
        dataset.set_epoch(epoch)
        batches = iter(loader_for(epoch))
        while done < warmup + iterations:
            started = time.perf_counter()
            batch = next(batches, None)
            if batch is None:
                break
            fetched = time.perf_counter()
            loss = loop._step(run, batch, autocast)[0]
            run.optimizer.zero_grad(set_to_none=True)
            run.scaler.scale(loss).backward()
            run.scaler.step(run.optimizer)
            run.scaler.update()
            finished = time.perf_counter()
            if done >= warmup:
                waited += fetched - started
                computed += finished - fetched
            done += 1
        epoch += 1
    run.recorder.close()
    total = waited + computed
    return {"config": network, "amp": amp, "points": samples, "batch": batch_size, "it_per_s": iterations / total,
            "data_wait_fraction": waited / total, "s_per_it": total / iterations}


def run_cpu(smoke: bool = False) -> list[dict]:
    from oss_net.data.synthetic import write_synthetic_dataset
    from oss_net.training.settings import DEMO_PRESET

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
    """Peak memory of a training step of C at the paper's BraTS size (random inputs: memory only)."""
    from oss_net.data import gather_patches, segmentation_target
    from oss_net.models import build_model, get_config, parameter_groups
    from oss_net.training.lookahead import build_optimizer
    from oss_net.training.loss import training_loss

    device = torch.device("cuda")
    config = get_config("C", "brats")
    points = 2**10 if smoke else 2**14
    rows = []
    for batch in ((1,) if smoke else (4, 8)):
        for amp in ("off", "bf16"):
            torch.manual_seed(0)
            model = build_model(config).to(device)
            optimizer = build_optimizer(parameter_groups(model, lr=3e-4))
            volume = torch.randn(batch, config.in_channels, *config.volume_shape, device=device)
            label = (torch.rand(batch, *config.volume_shape, device=device) > 0.9).to(torch.uint8)
            coords = torch.randint(0, 160, (batch, points, 3), device=device).float()
            labels = torch.rand(batch, points, 1, device=device).round()
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats(device)
            started = time.perf_counter()
            steps = 3
            for _ in range(steps):
                patches = gather_patches(volume, coords, large=config.large_patches)
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp == "bf16"):
                    occupancy, segmentation = model(volume, coords, patches)
                target = segmentation_target(label, config.encoder_output_shape)
                loss = training_loss(occupancy, labels, segmentation, target, 0.1)[0]
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            torch.cuda.synchronize()
            rows.append({"config": "C", "amp": amp, "batch": batch, "points": points,
                         "peak_gb": torch.cuda.max_memory_allocated(device) / 1e9,
                         "s_per_it": (time.perf_counter() - started) / steps})
            del model, optimizer, volume, label
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
        result = {"size": size, "smoke": smoke, "rows": rows, "paper_peak_gb_c_brats": 2.59, "target_peak_gb": 1.5,
                  "device": torch.cuda.get_device_name()}
        print(format_table(rows, ["config", "amp", "batch", "points", "peak_gb", "s_per_it"]))
        write_result("train", result)
        return result
    rows = run_cpu(smoke)
    result = {"size": size, "smoke": smoke, "threads": torch.get_num_threads(), "rows": rows}
    print(format_table(rows, ["config", "amp", "points", "batch", "it_per_s", "s_per_it", "data_wait_fraction", "speed_vs_onet_fp32"]))
    write_result("train", result)
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument("--smoke", action="store_true")
    arguments = parser.parse_args()
    run(arguments.size, arguments.smoke)
