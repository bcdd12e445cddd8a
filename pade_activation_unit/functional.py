"""Functional PAU: one entry point that runs the kernel of the tensor's device or the reference."""
from __future__ import annotations

import torch

from .backend import backend_for
from .ops import VERSION_CODES, forward
from .reference import check_pau_arguments, pau_reference


def pau(
    x: torch.Tensor,
    numerator: torch.Tensor,
    denominator: torch.Tensor,
    version: str = "A",
    backend: str | None = None,
) -> torch.Tensor:
    """Padé activation of x (any shape) with coefficients numerator [m+1] and denominator [n].

    Args:
        version: "A" (safe, per-term absolute values), "B" (absolute value of the sum) or "N" (unsafe).
        backend: None picks by device (see `backend`); "reference", "cpu-kernel" or "cuda-kernel" forces one.

    Returns a tensor of x's shape and dtype (contiguous when a kernel ran). Differentiable twice.
    """
    check_pau_arguments(x, numerator, denominator, version)
    if backend_for(x, backend) == "reference":
        return pau_reference(x, numerator, denominator, version)
    return forward(x, numerator, denominator, VERSION_CODES[version])
