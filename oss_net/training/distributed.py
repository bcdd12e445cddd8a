"""Process setup: one process per GPU under torchrun (DDP), or a single process on one device.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; without them the run is a single process. The
backend is NCCL on GPUs and gloo on the CPU (used by the tests). `--cuda_devices` must reach
CUDA_VISIBLE_DEVICES before CUDA starts, which `select_cuda_devices` does first thing in `train`.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class ProcessContext:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def select_cuda_devices(cuda_devices: str | None) -> None:
    """Export CUDA_VISIBLE_DEVICES (the original's --cuda_devices) if CUDA has not started yet."""
    if cuda_devices is None:
        return
    if torch.cuda.is_initialized():
        warnings.warn(f"--cuda_devices {cuda_devices} ignored: CUDA was already initialised in this process", stacklevel=2)
        return
    os.environ["CUDA_VISIBLE_DEVICES"] = cuda_devices


def setup_process(cpu: bool) -> ProcessContext:
    """Join the torchrun process group if there is one and pick this process's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = not cpu and torch.cuda.is_available()
    if use_cuda:
        device = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", rank=rank, world_size=world_size)
    return ProcessContext(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def teardown_process(context: ProcessContext) -> None:
    if context.distributed and dist.is_initialized():
        dist.destroy_process_group()


def wrap_model(model: nn.Module, context: ProcessContext) -> nn.Module:
    """DDP with SyncBatchNorm in the encoder only.

    The encoder's BatchNorm3d layers see few volumes per GPU, so their statistics are synchronised
    (on GPUs; SyncBatchNorm has no CPU path, so gloo runs keep per-process statistics and DDP
    broadcasts rank 0's buffers). The decoder's CBN normalisation pools over all B·N points of the
    process, which is plenty, and stays per process as under the original's DataParallel.
    """
    if not context.distributed:
        return model
    if context.device.type == "cuda":
        model.encoder = nn.SyncBatchNorm.convert_sync_batchnorm(model.encoder)
    device_ids = [context.device.index] if context.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def all_ranks_true(flag: bool, context: ProcessContext) -> bool:
    """Whether `flag` holds on every rank (one tiny all-reduce; no-op in a single process)."""
    if not context.distributed:
        return flag
    value = torch.tensor([0.0 if flag else 1.0], device=context.device)
    dist.all_reduce(value)
    return bool(value.item() == 0.0)


def barrier(context: ProcessContext) -> None:
    if context.distributed:
        dist.barrier()
