"""The C++ CPU kernel against the reference: values, gradients (first and second order), determinism,
dtypes and layouts, errors, opcheck and torch.compile. Skipped when the extension is not built."""
from __future__ import annotations

import pytest
import torch

from pade_activation_unit import PAU, pau, pau_reference
from tests.pade_activation_unit.helpers import DEGREES, VERSIONS, random_coefficients, requires_cpu_kernel, sample_points

pytestmark = requires_cpu_kernel
VERSION_CODES = {"A": 0, "B": 1, "N": 2}


def kernel_and_reference_gradients(x, a, b, version, grad):
    results = []
    for backend in ("cpu-kernel", "reference"):
        leaves = [t.detach().clone().requires_grad_() for t in (x, a, b)]
        y = pau(*leaves, version, backend=backend)
        results.append((y, *torch.autograd.grad(y, leaves, grad)))
    return results


@pytest.mark.parametrize("backend", ["cpu-kernel", "reference"])
@pytest.mark.parametrize("degrees", DEGREES, ids=str)
@pytest.mark.parametrize("version", VERSIONS)
def test_gradcheck_and_gradgradcheck(version: str, degrees: tuple[int, int], backend: str) -> None:
    a, b = random_coefficients(*degrees, seed=sum(degrees) + VERSION_CODES[version])
    x = sample_points(a, b, version, count=12, seed=7)
    inputs = tuple(t.clone().requires_grad_() for t in (x, a, b))

    def function(x, a, b):
        return pau(x, a, b, version, backend=backend)

    assert torch.autograd.gradcheck(function, inputs)
    assert torch.autograd.gradgradcheck(function, inputs)


@pytest.mark.parametrize("degrees", [*DEGREES, (0, 2), (2, 1), (8, 1)], ids=str)
@pytest.mark.parametrize("version", VERSIONS)
def test_float32_kernel_equals_reference(version: str, degrees: tuple[int, int]) -> None:
    a, b = random_coefficients(*degrees, seed=11, dtype=torch.float32)
    if version == "N":
        b = b.abs()  # keeps 1 + S(x) away from zero on x >= 0
    generator = torch.Generator().manual_seed(5)
    x = torch.rand(40_000, generator=generator) * 5 - 2.5
    if version == "N":
        x = x.abs()
    grad = torch.randn(x.shape, generator=generator)
    kernel, reference = kernel_and_reference_gradients(x, a, b, version, grad)
    # Relative to each output's magnitude: where values cancel (dF/dx near its zeros, a coefficient
    # gradient summed over 40k elements) both float32 results carry the same absolute rounding error.
    # Measured: both are within 7e-7 of the float64 result, relative to the largest value.
    for name, value, expected in zip(("y", "grad_x", "grad_numerator", "grad_denominator"), kernel, reference):
        scale = expected.abs().max().item()
        torch.testing.assert_close(value, expected, rtol=1e-5, atol=1e-5 * scale, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize(("degrees", "version"), [((5, 4), "A"), ((3, 3), "B"), ((8, 8), "N")], ids=str)
def test_backward_is_bitwise_deterministic_across_runs_and_thread_counts(
    degrees: tuple[int, int], version: str, dtype: torch.dtype
) -> None:
    """Chunks of 2^14 claimed by any thread in any order: the coefficient gradients keep their bits."""
    a, b = random_coefficients(*degrees, seed=4, dtype=torch.float32)
    b = b.abs() if version == "N" else b
    generator = torch.Generator().manual_seed(0)
    x = (torch.randn(300_001, generator=generator) * 3).to(dtype)  # 19 chunks of 2^14, the last one ragged
    x = x.abs() if version == "N" else x
    grad = torch.randn(x.shape, generator=generator).to(dtype)
    threads = torch.get_num_threads()

    def run() -> tuple[torch.Tensor, ...]:
        return torch.ops.pau.backward(grad, x, a, b, VERSION_CODES[version])

    try:
        torch.set_num_threads(2)
        runs = [run() for _ in range(3)]
        torch.set_num_threads(1)
        runs.append(run())
    finally:
        torch.set_num_threads(threads)
    for first, *others in zip(*runs):
        assert all(torch.equal(first, other) for other in others)
    # Partial sums are per chunk of 2^14: a first chunk gives the same bits alone or followed by a chunk
    # that adds exactly zero.
    head, tail = slice(0, 2**14), torch.zeros(5, dtype=dtype)
    alone = torch.ops.pau.backward(grad[head], x[head], a, b, VERSION_CODES[version])
    followed = torch.ops.pau.backward(torch.cat([grad[head], tail]), torch.cat([x[head], tail]), a, b, VERSION_CODES[version])
    assert torch.equal(alone[1], followed[1]) and torch.equal(alone[2], followed[2])


def test_non_contiguous_input() -> None:
    module = PAU()
    x = (torch.randn(64, 96) * 2).t()[::2]  # [48, 64], strided
    grad = torch.randn(64, 48).t()  # [48, 64], strided upstream gradient
    assert not x.is_contiguous() and not grad.is_contiguous()
    x_kernel, x_reference = x.clone().requires_grad_(), x.contiguous().requires_grad_()
    assert not x_kernel.is_contiguous()
    y = pau(x_kernel, module.numerator, module.denominator, backend="cpu-kernel")
    y_reference = pau_reference(x_reference, module.numerator, module.denominator)
    torch.testing.assert_close(y, y_reference, rtol=1e-5, atol=1e-6)
    (gx,) = torch.autograd.grad(y, x_kernel, grad)
    (gx_reference,) = torch.autograd.grad(y_reference, x_reference, grad)
    torch.testing.assert_close(gx, gx_reference, rtol=1e-5, atol=1e-5)


def test_empty_tensor() -> None:
    module = PAU()
    x = torch.empty(0, 5, requires_grad=True)
    y = module(x)
    assert y.shape == (0, 5)
    y.sum().backward()
    assert x.grad.shape == (0, 5)
    assert torch.equal(module.numerator.grad, torch.zeros(6)) and torch.equal(module.denominator.grad, torch.zeros(4))


def test_nan_propagates() -> None:
    module = PAU()
    x = torch.tensor([1.0, float("nan"), -2.0, float("inf")], requires_grad=True)
    y = module(x)
    assert torch.isnan(y[1]) and torch.isnan(y[3])  # inf/inf in version A
    assert torch.isfinite(y[[0, 2]]).all()
    y.sum().backward()
    assert torch.isnan(x.grad[1]) and torch.isfinite(x.grad[[0, 2]]).all()
    assert torch.isnan(module.numerator.grad).all()  # the NaN element enters every coefficient sum


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_computed_in_float32(dtype: torch.dtype) -> None:
    module = PAU()
    x = (torch.randn(10_000) * 2).to(dtype).requires_grad_()
    y = module(x)
    assert y.dtype == dtype
    # Both compute in float32 from the same rounded inputs and round once at the end; the kernel may use
    # fused multiply-adds, so a float32 result next to a rounding boundary can land one half-ulp apart.
    expected = pau_reference(x.detach().float(), module.numerator, module.denominator).to(dtype)
    torch.testing.assert_close(y, expected)
    y.float().sum().backward()
    assert x.grad.dtype == dtype and module.numerator.grad.dtype == torch.float32
    reference_x = x.detach().float().requires_grad_()
    pau_reference(reference_x, module.numerator, module.denominator).sum().backward()
    torch.testing.assert_close(x.grad.float(), reference_x.grad.to(dtype).float(), rtol=0.02, atol=1e-2)


def test_op_rejects_wrong_coefficient_shape_with_a_clear_message() -> None:
    x = torch.randn(4)
    with pytest.raises(RuntimeError, match=r"pau: numerator must be a 1-D tensor of 1\.\.9 coefficients, got shape \[2, 3\]"):
        torch.ops.pau.forward(x, torch.zeros(2, 3), torch.zeros(4), 0)
    with pytest.raises(RuntimeError, match=r"pau: denominator must be a 1-D tensor of 1\.\.8 coefficients, got shape \[9\]"):
        torch.ops.pau.backward(x, x, torch.zeros(6), torch.zeros(9), 0)
    with pytest.raises(RuntimeError, match=r"pau: version must be 0 \(A\), 1 \(B\) or 2 \(N\), got 3"):
        torch.ops.pau.forward(x, torch.zeros(6), torch.zeros(4), 3)


def test_opcheck() -> None:
    a, b = random_coefficients(5, 4, seed=1)
    x = torch.randn(3, 7, dtype=torch.float64)
    for requires_grad in (False, True):
        leaves = [t.clone().requires_grad_(requires_grad) for t in (x, a, b)]
        torch.library.opcheck(torch.ops.pau.forward.default, (*leaves, 0))
        torch.library.opcheck(torch.ops.pau.backward.default, (torch.randn_like(x), *leaves, 1))
    a8, b8 = random_coefficients(8, 8, seed=2, dtype=torch.float32)
    torch.library.opcheck(torch.ops.pau.forward.default, (x.float().requires_grad_(), a8, b8.requires_grad_(), 2))


def test_torch_compile_of_a_pau_module() -> None:
    torch._dynamo.reset()
    module = PAU()
    compiled = torch.compile(module, fullgraph=True)
    x = torch.randn(32, 8, requires_grad=True)
    y = compiled(x)
    torch.testing.assert_close(y, module(x), rtol=1e-6, atol=1e-6)
    compiled_grads = torch.autograd.grad(y.square().sum(), (x, module.numerator, module.denominator))
    eager_grads = torch.autograd.grad(module(x).square().sum(), (x, module.numerator, module.denominator))
    torch.testing.assert_close(compiled_grads, eager_grads, rtol=1e-5, atol=1e-5)
