"""Process setup: one process per GPU under torchrun (DDP), or a single process on one device.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; without them the run is a single process. The
backend is NCCL on GPUs and gloo on the CPU (used by the tests). `--cuda_devices` must reach
CUDA_VISIBLE_DEVICES before CUDA starts, which `select_cuda_devices` does first thing in `train`.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Any

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


def wrap_model(model: nn.Module, context: ProcessContext, replicas: int | None = None) -> nn.Module:
    """The model as trained: DDP under torchrun, with batch norm pooled (ours) or per replica (paper mode).

    replicas None (ours): the encoder's BatchNorm3d layers see few volumes per GPU, so their statistics are
    synchronised (on GPUs; SyncBatchNorm has no CPU path, so gloo runs keep per-process statistics and DDP
    broadcasts rank 0's buffers). The decoder's CBN normalisation pools over all B·N points of the
    process, which is plenty, and stays per process as under the original's DataParallel.
    replicas n (paper mode, `oss_net.compat.replicas_per_process`): no SyncBatchNorm; each process splits its
    batch into n `VirtualReplicas`, so every batch norm sees one replica's volumes as under the original's
    DataParallel, and DDP broadcasts rank 0's running statistics, those of the first replica.
    """
    if replicas is not None and replicas > 1:
        model = VirtualReplicas(model, replicas)
    if not context.distributed:
        return model
    if context.device.type == "cuda" and replicas is None:
        model.encoder = nn.SyncBatchNorm.convert_sync_batchnorm(model.encoder)
    device_ids = [context.device.index] if context.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


class VirtualReplicas(nn.Module):
    """The original's nn.DataParallel batch norm on one device (docs/reference.md §5, §12.22).

    The batch is split as DataParallel scatters it (`torch.chunk` into at most `replicas` parts along the
    first axis of every tensor argument); each part runs through `module` on its own, so every batch-norm
    layer normalises over its replica's volumes (and, in the decoder, their points); the outputs are joined
    along the first axis. The running statistics are the first replica's, as DataParallel keeps replica 0's:
    every later replica updates copies of the buffers. In eval mode the module runs once on the whole batch.
    """

    def __init__(self, module: nn.Module, replicas: int) -> None:
        super().__init__()
        if replicas < 1:
            raise ValueError(f"replicas must be at least 1 (got {replicas})")
        self.module = module
        self.replicas = replicas

    def forward(self, *inputs: torch.Tensor | None) -> Any:
        if not self.training:
            return self.module(*inputs)
        batch = next(x for x in inputs if isinstance(x, torch.Tensor))
        parts = len(batch.chunk(self.replicas))
        split = [x.chunk(self.replicas) if isinstance(x, torch.Tensor) else (x,) * parts for x in inputs]
        outputs = [self.module(*[pieces[0] for pieces in split])]
        outputs += [self._keeping_buffers([pieces[index] for pieces in split]) for index in range(1, parts)]
        return _join(outputs)

    def _keeping_buffers(self, inputs: list[torch.Tensor | None]) -> Any:
        """module(*inputs) updating copies of every buffer (the running statistics), which are dropped after.

        The buffers are swapped rather than copied back: the first replica's autograd graph holds them.
        """
        buffers = [(module, name, buffer) for module in self.module.modules()
                   for name, buffer in module.named_buffers(recurse=False)]
        for module, name, buffer in buffers:
            setattr(module, name, buffer.clone())
        try:
            return self.module(*inputs)
        finally:
            for module, name, buffer in buffers:
                setattr(module, name, buffer)


def _join(outputs: list[Any]) -> Any:
    """The replicas' outputs (tensors, or tuples of tensors and Nones) joined along the first axis."""
    first = outputs[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(outputs)
    return type(first)(None if part is None else torch.cat([output[i] for output in outputs])
                       for i, part in enumerate(first))


def bare_model(network: nn.Module) -> nn.Module:
    """The model inside `wrap_model`'s wrappers (DDP, VirtualReplicas)."""
    while isinstance(network, (nn.parallel.DistributedDataParallel, VirtualReplicas)):
        network = network.module
    return network


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
