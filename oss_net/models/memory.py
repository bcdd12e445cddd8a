"""Activation memory without a GPU: count the bytes autograd saves for backward.

Every tensor an op keeps for its backward passes through torch.autograd.graph.saved_tensors_hooks, so the
sum of their storages is the activation memory of a training step, on any device, the meta device
included (shapes only, nothing computed). Tensors that share a storage (views, an input saved by two ops)
are counted once.

With activation recomputation (`oss_net.models.recompute`) a recomputed block saves its inputs only: its
inner saves go to the checkpoint's own hooks, which take precedence over the counting hook. The backward
pass then holds, on top of that, one block's activations while it recomputes the block:
`largest_saved_bytes_within` counts the largest of those.
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


class _SavedTensorCount:
    """The distinct storages saved for backward while `fn` runs: in total, and per outermost call of a scope
    module (beyond the scope's own inputs). Opaque modules count as one kernel that saves its input."""

    def __init__(self, exclude: Iterable[torch.Tensor], opaque_modules: Iterable[nn.Module],
                 scopes: Iterable[nn.Module], scopes_recomputed: bool) -> None:
        self.excluded = {_storage_key(t) for t in exclude}
        self.seen: dict[int, int] = {}
        self.kept: list[torch.Tensor] = []  # keeps storages alive, so no address is reused during the count
        self.opaque_depth = 0
        self.scope: dict[int, int] | None = None  # what the running outermost scope saved so far
        self.scope_owner: nn.Module | None = None
        self.scope_inputs: set[int] = set()
        self.largest_scope = 0
        self.scopes_recomputed = scopes_recomputed
        self.handles = [m.register_forward_pre_hook(self.enter_opaque) for m in opaque_modules]
        self.handles += [m.register_forward_hook(self.leave_opaque) for m in opaque_modules]
        self.handles += [m.register_forward_pre_hook(self.enter_scope) for m in scopes]
        self.handles += [m.register_forward_hook(self.leave_scope) for m in scopes]

    def record(self, tensor: torch.Tensor) -> None:
        key = _storage_key(tensor)
        if key in self.excluded:
            return
        size = tensor.untyped_storage().nbytes()
        if key not in self.seen:
            self.seen[key] = size
            self.kept.append(tensor)
        if self.scope is not None:
            self.scope.setdefault(key, size)

    def pack(self, tensor: torch.Tensor) -> torch.Tensor:
        if not self.opaque_depth:
            self.record(tensor)
        return tensor

    def enter_opaque(self, module: nn.Module, inputs: tuple[Any, ...]) -> None:
        inside_recomputed = self.scopes_recomputed and self.scope is not None  # the checkpoint keeps nothing inside
        if not self.opaque_depth and not inside_recomputed and torch.is_grad_enabled():
            for value in inputs:
                if isinstance(value, torch.Tensor) and value.requires_grad:
                    self.record(value)
        self.opaque_depth += 1

    def leave_opaque(self, module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        self.opaque_depth -= 1

    def enter_scope(self, module: nn.Module, inputs: tuple[Any, ...]) -> None:
        if self.scope is None:
            self.scope = {}
            self.scope_owner = module
            self.scope_inputs = {_storage_key(v) for v in inputs if isinstance(v, torch.Tensor)}

    def leave_scope(self, module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        if self.scope is not None and module is self.scope_owner:
            inner = sum(size for key, size in self.scope.items() if key not in self.scope_inputs)
            self.largest_scope = max(self.largest_scope, inner)
            self.scope = None

    def run(self, fn: Callable[[], Any]) -> None:
        try:
            with torch.autograd.graph.saved_tensors_hooks(self.pack, lambda tensor: tensor):
                result = fn()
            del result
        finally:
            for handle in self.handles:
                handle.remove()
        self.kept.clear()


def saved_tensor_bytes(
    fn: Callable[[], Any],
    exclude: Iterable[torch.Tensor] = (),
    opaque_modules: Iterable[nn.Module] = (),
    recomputed_modules: Iterable[nn.Module] = (),
) -> int:
    """Bytes of the distinct storages saved for backward while fn() runs.

    exclude: tensors not to count (e.g. model.parameters(): they live in memory anyway).
    opaque_modules: modules counted as one fused kernel that saves only its input (e.g. every PAU, as
    the compiled PAU kernel does), instead of what their pure-PyTorch ops save.
    recomputed_modules: the blocks fn() runs under activation recomputation: they keep only their
    inputs (the checkpoint's hooks take their inner saves), so an opaque module inside them counts nothing.
    The outputs of fn() are kept until the count is done, so no storage address can be reused meanwhile.
    """
    count = _SavedTensorCount(exclude, opaque_modules, recomputed_modules, scopes_recomputed=True)
    count.run(fn)
    return sum(count.seen.values())


def largest_saved_bytes_within(
    fn: Callable[[], Any],
    modules: Iterable[nn.Module],
    exclude: Iterable[torch.Tensor] = (),
    opaque_modules: Iterable[nn.Module] = (),
) -> int:
    """The most bytes one call of one of `modules` saves for backward beyond its own inputs, fn() run
    without recomputation: what the backward pass holds at once while it recomputes that block."""
    count = _SavedTensorCount(exclude, opaque_modules, modules, scopes_recomputed=False)
    count.run(fn)
    return count.largest_scope
