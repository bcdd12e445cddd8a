"""Functional PAU: dispatches to the selected backend (the kernels arrive with the extension build)."""
from __future__ import annotations

import torch

from .reference import pau_reference


def pau(
    x: torch.Tensor,
    numerator: torch.Tensor,
    denominator: torch.Tensor,
    version: str = "A",
    backend: str | None = None,
) -> torch.Tensor:
    """Padé activation of x with coefficients numerator [m+1] and denominator [n]; shape of x is kept."""
    return pau_reference(x, numerator, denominator, version)
