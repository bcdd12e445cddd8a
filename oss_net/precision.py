"""Mixed precision: the autocast modes training and inference accept, and the one context manager both use.

"off" runs in float32. "bf16" and "fp16" wrap the forward pass in `torch.autocast` on the model's device
type with that dtype, on the CPU as on a GPU (torch autocasts both dtypes on both). fp16 training also
needs a GradScaler, which the training loop adds itself.
"""
from __future__ import annotations

import contextlib

import torch

AMP_MODES = ("off", "bf16", "fp16")
_DTYPES: dict[str, torch.dtype | None] = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def autocast_dtype(mode: str) -> torch.dtype | None:
    """The autocast dtype of `mode` (None for "off"); ValueError naming the modes for anything else."""
    if mode not in _DTYPES:
        raise ValueError(f"unknown amp mode {mode!r}; expected one of {', '.join(AMP_MODES)}")
    return _DTYPES[mode]


def autocast(mode: str, device: torch.device | str) -> contextlib.AbstractContextManager:
    """A fresh context for one forward pass: `torch.autocast` on `device`'s type, or a no-op for "off"."""
    dtype = autocast_dtype(mode)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)
