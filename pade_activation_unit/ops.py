"""Python side of the `pau::forward` / `pau::backward` ops: typed wrappers, fake kernels and autograd.

Laid out like PyTorch's custom C++/CUDA operator tutorial: the C++ libraries define the schemas and kernels,
this module the Python side. `register()` runs once, from `loader.load_libraries` right after libpau_cpu.so
(which defines the schemas) is loaded; nothing here loads anything. `forward`'s autograd
calls the `backward` op (the same kernels), and `backward` has an autograd rule of its own, so second
derivatives (mesh refinement, gradgradcheck) work through the kernels too: the double backward is
computed through the differentiable reference formula, which is exact but runs at reference speed and is
differentiable once more only through autograd of that formula (third order is not supported).
"""
from __future__ import annotations

import torch

from .reference import VERSIONS, pau_reference

VERSION_CODES = {name: code for code, name in enumerate(VERSIONS)}  # A=0, B=1, N=2 as in csrc/pau_math.h


def forward(x: torch.Tensor, numerator: torch.Tensor, denominator: torch.Tensor, version: int) -> torch.Tensor:
    """F(x) by the kernel of x's device; same shape and dtype as x, contiguous."""
    return torch.ops.pau.forward.default(x, numerator, denominator, version)


def backward(
    grad_out: torch.Tensor, x: torch.Tensor, numerator: torch.Tensor, denominator: torch.Tensor, version: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(grad_x [x.shape] in x's dtype, grad_numerator [m+1], grad_denominator [n] in the coefficients' dtypes)."""
    return torch.ops.pau.backward.default(grad_out, x, numerator, denominator, version)


def _check_fake(x: torch.Tensor, numerator: torch.Tensor, denominator: torch.Tensor, version: int) -> None:
    torch._check(0 <= version <= 2, lambda: f"pau: version must be 0 (A), 1 (B) or 2 (N), got {version}")
    torch._check(numerator.dim() == 1 and 1 <= numerator.numel() <= 9, lambda: "pau: numerator must be 1-D with 1..9 coefficients")
    torch._check(denominator.dim() == 1 and 1 <= denominator.numel() <= 8, lambda: "pau: denominator must be 1-D with 1..8 coefficients")
    torch._check(
        x.dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16),
        lambda: f"pau: input dtype must be float32, float64, float16 or bfloat16, got {x.dtype}",
    )


def _forward_fake(x: torch.Tensor, numerator: torch.Tensor, denominator: torch.Tensor, version: int) -> torch.Tensor:
    _check_fake(x, numerator, denominator, version)
    return x.new_empty(x.shape)


def _backward_fake(
    grad_out: torch.Tensor, x: torch.Tensor, numerator: torch.Tensor, denominator: torch.Tensor, version: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    _check_fake(x, numerator, denominator, version)
    torch._check(grad_out.shape == x.shape, lambda: "pau: grad_out shape differs from input shape")
    return x.new_empty(x.shape), numerator.new_empty(numerator.shape), denominator.new_empty(denominator.shape)


def _forward_setup(ctx, inputs: tuple, output: torch.Tensor) -> None:
    x, numerator, denominator, version = inputs
    ctx.save_for_backward(x, numerator, denominator)
    ctx.version = version


def _forward_backward(ctx, grad: torch.Tensor) -> tuple:
    x, numerator, denominator = ctx.saved_tensors
    grad_x, grad_numerator, grad_denominator = backward(grad, x, numerator, denominator, ctx.version)
    needs = ctx.needs_input_grad
    return (
        grad_x if needs[0] else None,
        grad_numerator if needs[1] else None,
        grad_denominator if needs[2] else None,
        None,
    )


def _backward_setup(ctx, inputs: tuple, output: tuple) -> None:
    grad_out, x, numerator, denominator, version = inputs
    ctx.save_for_backward(grad_out, x, numerator, denominator)
    ctx.version = version


def _backward_backward(ctx, grad_grad_x, grad_grad_numerator, grad_grad_denominator) -> tuple:
    """Vector-Jacobian product of `backward` with respect to (grad_out, x, numerator, denominator)."""
    saved = ctx.saved_tensors
    with torch.enable_grad():
        grad_out, x, numerator, denominator = (t.detach().requires_grad_() for t in saved)
        y = pau_reference(x, numerator, denominator, VERSIONS[ctx.version])
        first = torch.autograd.grad(y, (x, numerator, denominator), grad_out, create_graph=True)
        cotangents = [
            torch.zeros_like(f) if g is None else g
            for f, g in zip(first, (grad_grad_x, grad_grad_numerator, grad_grad_denominator))
        ]
        second = torch.autograd.grad(first, (grad_out, x, numerator, denominator), cotangents, allow_unused=True)
    return (*(torch.zeros_like(t) if s is None else s for s, t in zip(second, saved)), None)


_registered = False


def register() -> None:
    """Attach the fake kernels and autograd rules to the loaded ops (once per process)."""
    global _registered
    if _registered:
        return
    torch.library.register_fake("pau::forward", _forward_fake)
    torch.library.register_fake("pau::backward", _backward_fake)
    torch.library.register_autograd("pau::forward", _forward_backward, setup_context=_forward_setup)
    torch.library.register_autograd("pau::backward", _backward_backward, setup_context=_backward_setup)
    _registered = True
