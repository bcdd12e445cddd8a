"""Shared inputs for the PAU tests: coefficient sets, sample points away from kinks and poles, skip marks."""
from __future__ import annotations

import pytest
import torch

from pade_activation_unit.backend import backend_state

DEGREES = [(5, 4), (3, 3), (8, 8)]
VERSIONS = ["A", "B", "N"]

requires_cpu_kernel = pytest.mark.skipif(
    not backend_state().cpu_kernel, reason=f"PAU CPU kernel not loaded ({backend_state().reason}): run make build"
)
requires_cuda_kernel = pytest.mark.skipif(
    not (backend_state().cuda_kernel and torch.cuda.is_available()),
    reason="needs a CUDA device and the built PAU CUDA kernel",
)


def random_coefficients(m: int, n: int, seed: int, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """numerator [m+1], denominator [n] with both signs (version A's sgn(b_k) matters), scaled so that
    high powers stay moderate on [-2.5, 2.5]."""
    generator = torch.Generator().manual_seed(seed)
    scale = torch.tensor([0.6**k for k in range(max(m + 1, n + 1))], dtype=torch.float64)
    numerator = torch.randn(m + 1, generator=generator, dtype=torch.float64) * scale[: m + 1]
    denominator = torch.randn(n, generator=generator, dtype=torch.float64) * scale[1 : n + 1]
    return numerator.to(dtype), denominator.to(dtype)


def sample_points(numerator: torch.Tensor, denominator: torch.Tensor, version: str, count: int, seed: int) -> torch.Tensor:
    """float64 points in [-2.5, 2.5] kept away from the non-differentiable places, so finite differences
    with eps 1e-6 see a smooth function: |x| >= 0.2 (the |x| kink of A and B), |S(x)| >= 0.05 for B
    (the |S| kink; S(x) = sum_k b_k x^k) and |1 + S(x)| >= 0.3 for N (its poles)."""
    generator = torch.Generator().manual_seed(seed)
    x = (torch.rand(count * 8, generator=generator, dtype=torch.float64) * 5 - 2.5)
    powers = torch.stack([x ** (k + 1) for k in range(denominator.numel())], dim=-1)  # [P, n]
    s = powers @ denominator.double()
    keep = x.abs() >= 0.2
    if version == "B":
        keep &= s.abs() >= 0.05
    if version == "N":
        keep &= (1 + s).abs() >= 0.3
    points = x[keep][:count]
    if points.numel() < count:
        raise RuntimeError(f"only {points.numel()} of {count} sample points are away from kinks and poles")
    return points
