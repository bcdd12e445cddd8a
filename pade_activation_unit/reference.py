"""Pure-PyTorch Padé activation: the ground truth for the kernels and the last fallback.

F(x) = P(x) / Q(x), P(x) = a_0 + a_1 x + ... + a_m x^m, and Q depends on the version:
  "A" (safe):   Q(x) = 1 + sum_k |b_k| |x|^k      (Q >= 1, no poles)
  "B":          Q(x) = 1 + |sum_k b_k x^k|        (Q >= 1, no poles)
  "N":          Q(x) = 1 + sum_k b_k x^k          (unsafe: poles possible)
with k = 1..n. Both polynomials are evaluated in Horner form (fewer ops, better rounding than powers).

Derivatives come from autograd. Through torch.abs they use sgn(0) = 0, the convention the kernels follow
(csrc/pau_math.h): at x = 0 the |x| terms of version A contribute nothing to dF/dx, and in version B a
zero of the denominator sum contributes nothing either.
"""
from __future__ import annotations

import torch

VERSIONS = ("A", "B", "N")
MAX_DEGREE = 8


class PAUError(ValueError):
    """A bad PAU argument, or a backend that cannot run here. Standalone (the package imports nothing from
    oss_net); applications that treat it as a user error catch it next to their own errors."""


def check_pau_arguments(x: torch.Tensor, numerator: torch.Tensor, denominator: torch.Tensor, version: str) -> None:
    """Raise one clear error for arguments every backend rejects."""
    if version not in VERSIONS:
        raise PAUError(f"PAU version must be one of {VERSIONS}, got {version!r}")
    if numerator.dim() != 1 or not 1 <= numerator.numel() <= MAX_DEGREE + 1:
        raise PAUError(
            f"PAU numerator must be a 1-D tensor of 1..{MAX_DEGREE + 1} coefficients, got shape {tuple(numerator.shape)}"
        )
    if denominator.dim() != 1 or not 1 <= denominator.numel() <= MAX_DEGREE:
        raise PAUError(
            f"PAU denominator must be a 1-D tensor of 1..{MAX_DEGREE} coefficients, got shape {tuple(denominator.shape)}"
        )
    if x.dtype not in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
        raise PAUError(f"PAU input must be float32, float64, float16 or bfloat16, got {x.dtype}")
    if numerator.device != x.device or denominator.device != x.device:
        raise PAUError(
            f"PAU input, numerator and denominator must be on one device, got {x.device}, {numerator.device}, {denominator.device}"
        )


def _horner(x: torch.Tensor, coefficients: torch.Tensor) -> torch.Tensor:
    """sum_j c_j x^j for c = coefficients [K], j = 0..K-1."""
    result = torch.zeros_like(x) + coefficients[-1]
    for c in coefficients.flip(0)[1:]:
        result = result * x + c
    return result


def pau_reference(x: torch.Tensor, numerator: torch.Tensor, denominator: torch.Tensor, version: str = "A") -> torch.Tensor:
    """Padé activation of x (any shape) with coefficients numerator [m+1] and denominator [n].

    Half-precision inputs are computed in float32 and returned in the input dtype, like the kernels.
    """
    check_pau_arguments(x, numerator, denominator, version)
    compute_dtype = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
    xc = x.to(compute_dtype)
    a = numerator.to(compute_dtype)
    b = denominator.to(compute_dtype)
    p = _horner(xc, a)
    # Denominator polynomial without its constant term: x * (b_1 + b_2 x + ... + b_n x^(n-1)).
    if version == "A":
        q = 1 + xc.abs() * _horner(xc.abs(), b.abs())
    elif version == "B":
        q = 1 + (xc * _horner(xc, b)).abs()
    else:
        q = 1 + xc * _horner(xc, b)
    return (p / q).to(x.dtype)
