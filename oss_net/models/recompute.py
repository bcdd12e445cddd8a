"""Activation recomputation (gradient checkpointing) of the residual blocks, for training at low memory.

A block marked for recomputation keeps only its inputs for backward; the backward pass runs its forward
again (non-reentrant `torch.utils.checkpoint`, which restores the RNG state, so the recomputation sees
the same random numbers) and back-propagates through that copy. Peak activation memory drops to the
blocks' inputs plus one block's activations, for about one more forward pass of compute.

The recomputation must not count as a second training step: its batch norms normalise with the batch
statistics as before but leave the running statistics (and their counter) untouched.

    set_activation_recomputation(model, True)   # OSS-Net (encoder + decoder blocks) or a U-Net baseline

It acts only in train mode with autograd on; in eval mode or under no_grad the blocks run as usual.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint


class RecomputedBlock(nn.Module):
    """Base of a residual block whose activations can be recomputed in backward instead of kept.

    The block's module hooks run in the forward pass only, not again in the recomputation.
    """

    recompute: bool = False  # set by `set_activation_recomputation`

    def __call__(self, *inputs: Any) -> Any:
        if not (self.recompute and self.training and torch.is_grad_enabled()):
            return super().__call__(*inputs)
        run = super().__call__
        return checkpoint(run, *inputs, use_reentrant=False,
                          context_fn=lambda: (contextlib.nullcontext(), running_statistics_frozen(self)))


@contextlib.contextmanager
def running_statistics_frozen(module: nn.Module) -> Iterator[None]:
    """Inside, the batch norms of `module` compute as in training; on exit their running statistics and
    batch counters are back to what they were (the recomputation ran the same ops, so it saves the same
    tensors as the first forward, as the checkpoint requires)."""
    buffers = [b for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
               for b in (m.running_mean, m.running_var, m.num_batches_tracked) if b is not None]
    kept = [b.clone() for b in buffers]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in zip(buffers, kept):
                buffer.copy_(value)


def recomputed_blocks(model: nn.Module) -> list[RecomputedBlock]:
    """The blocks of `model` that can be recomputed (outermost only: a block inside another is covered by it)."""
    blocks: list[RecomputedBlock] = []

    def visit(module: nn.Module) -> None:
        for child in module.children():
            if isinstance(child, RecomputedBlock):
                blocks.append(child)
            else:
                visit(child)

    visit(model)
    return blocks


def set_activation_recomputation(model: nn.Module, enabled: bool) -> int:
    """Recompute every residual block of `model` in backward (enabled) or keep its activations; returns the
    number of blocks. OSS-Net: the encoder's and the decoder's residual blocks; a U-Net: all its blocks."""
    blocks = recomputed_blocks(model)
    for block in blocks:
        block.recompute = enabled
    return len(blocks)
