"""Activation memory without a GPU: count the bytes autograd saves for backward.

Every tensor an op keeps for its backward passes through torch.autograd.graph.saved_tensors_hooks, so the
sum of their storages is the activation memory of a training step, on any device, the meta device
included (shapes only, nothing computed). Tensors that share a storage (views, an input saved by two ops)
are counted once.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

import torch
from torch import nn


def _storage_key(tensor: torch.Tensor) -> int:
    """Identity of the tensor's storage: its data pointer, or the storage object itself on the meta device."""
    storage = tensor.untyped_storage()
    pointer = storage.data_ptr()
    # Meta storages all have data pointer 0; their StorageImpl address still tells them apart.
    return pointer if pointer else storage._cdata


def saved_tensor_bytes(
    fn: Callable[[], Any],
    exclude: Iterable[torch.Tensor] = (),
    opaque_modules: Iterable[nn.Module] = (),
) -> int:
    """Bytes of the distinct storages saved for backward while fn() runs.

    exclude: tensors not to count (e.g. model.parameters(): they live in memory anyway).
    opaque_modules: modules counted as one fused kernel that saves only its input (e.g. every PAU, as
    the compiled PAU kernel does), instead of what their pure-PyTorch ops save.
    The outputs of fn() are kept until the count is done, so no storage address can be reused meanwhile.
    """
    seen: dict[int, int] = {_storage_key(t): 0 for t in exclude}
    kept: list[torch.Tensor] = []
    inside = [0]  # depth of opaque modules currently running

    def record(tensor: torch.Tensor) -> None:
        key = _storage_key(tensor)
        if key not in seen:
            seen[key] = tensor.untyped_storage().nbytes()
            kept.append(tensor)

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        if not inside[0]:
            record(tensor)
        return tensor

    def enter(module: nn.Module, inputs: tuple[Any, ...]) -> None:
        if not inside[0] and torch.is_grad_enabled():
            for value in inputs:
                if isinstance(value, torch.Tensor) and value.requires_grad:
                    record(value)
        inside[0] += 1

    def leave(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        inside[0] -= 1

    handles = [m.register_forward_pre_hook(enter) for m in opaque_modules]
    handles += [m.register_forward_hook(leave) for m in opaque_modules]
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            result = fn()
        total = sum(seen.values())
    finally:
        for handle in handles:
            handle.remove()
    del result, kept
    return total
