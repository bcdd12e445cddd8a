"""The pure-PyTorch reference and the module: known values, the closed forms of docs/reference.md §10, errors."""
from __future__ import annotations

import pytest
import torch

from pade_activation_unit import PAU, PAUError, pau, pau_reference
from tests.pade_activation_unit.helpers import random_coefficients


def power_form(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor, version: str) -> torch.Tensor:
    """F written with explicit powers, independent of the reference's Horner code."""
    p = sum(a[j] * x**j for j in range(a.numel()))
    if version == "A":
        q = 1 + sum(b[k].abs() * x.abs() ** (k + 1) for k in range(b.numel()))
    elif version == "B":
        q = 1 + sum(b[k] * x ** (k + 1) for k in range(b.numel())).abs()
    else:
        q = 1 + sum(b[k] * x ** (k + 1) for k in range(b.numel()))
    return p / q


def test_leaky_relu_init_reproduces_the_reference_values() -> None:
    module = PAU().double()
    x = torch.tensor([-1.0, 0.0, 1.0, 2.0, 3.0], dtype=torch.float64)
    values = [round(v, 4) for v in module(x).tolist()]
    assert values[:4] == [-0.0092, 0.0336, 1.0008, 2.0012]
    assert round(values[4], 3) == 2.990


def test_leaky_relu_init_far_field_slope() -> None:
    # docs/reference.md §10.1: outside [-3, 3] F behaves like a5/|b4| x: F(-10) = -2.27, F(10) = 7.83.
    module = PAU().double()
    assert [round(v, 2) for v in module(torch.tensor([-10.0, 10.0], dtype=torch.float64)).tolist()] == [-2.27, 7.83]


@pytest.mark.parametrize("version", ["A", "B", "N"])
def test_reference_equals_power_form(version: str) -> None:
    a, b = random_coefficients(5, 4, seed=3)
    x = torch.linspace(-3, 3, 101, dtype=torch.float64)
    torch.testing.assert_close(pau_reference(x, a, b, version), power_form(x, a, b, version), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", ["reference", None])
def test_version_a_has_no_poles(backend: str | None) -> None:
    module = PAU(backend=backend)
    x = torch.cat([torch.linspace(-1e4, 1e4, 200_001), torch.tensor([-1e4, -1.0, 0.0, 1.0, 1e4])]).requires_grad_()
    y = module(x)
    assert torch.isfinite(y).all()
    y.sum().backward()
    assert torch.isfinite(x.grad).all()
    assert torch.isfinite(module.numerator.grad).all() and torch.isfinite(module.denominator.grad).all()


def test_gradients_follow_the_reference_sheet_formulas() -> None:
    """docs/reference.md §10.2 written out, with sgn(0) = 0; b_3 = 0 exercises sgn(b_k) = 0 in version A."""
    a = torch.tensor([0.1, -0.4, 0.3, 0.2, -0.05, 0.02], dtype=torch.float64)
    b = torch.tensor([0.5, -0.7, 0.0, 0.3], dtype=torch.float64)
    x = torch.tensor([-2.0, -0.5, 0.0, 0.7, 1.9], dtype=torch.float64)
    j = torch.arange(6, dtype=torch.float64)
    k = torch.arange(1, 5, dtype=torch.float64)
    p = (a * x[:, None] ** j).sum(-1)
    dp = (j[1:] * a[1:] * x[:, None] ** (j[1:] - 1)).sum(-1)
    q = 1 + (b.abs() * x.abs()[:, None] ** k).sum(-1)
    dq = x.sign() * (k * b.abs() * x.abs()[:, None] ** (k - 1)).sum(-1)
    expected_x = dp / q - p * dq / q**2
    expected_a = (x[:, None] ** j / q[:, None]).sum(0)
    expected_b = (-(p / q**2)[:, None] * x.abs()[:, None] ** k * b.sign()).sum(0)
    for backend in ("reference", None):
        xr, ar, br = (t.clone().requires_grad_() for t in (x, a, b))
        pau(xr, ar, br, "A", backend=backend).sum().backward()
        torch.testing.assert_close(xr.grad, expected_x, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(ar.grad, expected_a, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(br.grad, expected_b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    ("numerator_shape", "denominator_shape", "message"),
    [
        ((10,), (4,), r"PAU numerator must be a 1-D tensor of 1\.\.9 coefficients, got shape \(10,\)"),
        ((2, 3), (4,), r"PAU numerator must be a 1-D tensor of 1\.\.9 coefficients, got shape \(2, 3\)"),
        ((6,), (0,), r"PAU denominator must be a 1-D tensor of 1\.\.8 coefficients, got shape \(0,\)"),
        ((6,), (9,), r"PAU denominator must be a 1-D tensor of 1\.\.8 coefficients, got shape \(9,\)"),
    ],
)
def test_wrong_coefficient_shape_is_a_clear_error(numerator_shape, denominator_shape, message: str) -> None:
    x = torch.randn(8)
    with pytest.raises(PAUError, match=message):
        pau(x, torch.zeros(numerator_shape), torch.zeros(denominator_shape))


def test_other_bad_arguments() -> None:
    a, b = torch.zeros(6), torch.zeros(4)
    with pytest.raises(ValueError, match="PAU version must be one of"):
        pau(torch.randn(3), a, b, version="C")
    with pytest.raises(PAUError, match="PAU input must be float32, float64, float16 or bfloat16, got torch.int64"):
        pau(torch.arange(3), a, b)
    with pytest.raises(PAUError, match="PAU backend must be one of"):
        pau(torch.randn(3), a, b, backend="triton")
    with pytest.raises(ValueError, match="numerator_degree must be in 0..8, got 9"):
        PAU(numerator_degree=9)


def test_module_parameters_and_identity_init() -> None:
    module = PAU(3, 2, init="identity")
    assert [name for name, _ in module.named_parameters()] == ["numerator", "denominator"]
    assert module.numerator.shape == (4,) and module.denominator.shape == (2,)
    x = torch.linspace(-2, 2, 9)
    torch.testing.assert_close(module(x), x)


def test_identity_init_needs_a_numerator_of_degree_one() -> None:
    with pytest.raises(PAUError, match=r"PAU init 'identity' \(F\(x\) = x\) needs numerator_degree >= 1, got 0"):
        PAU(0, 2, init="identity")
    module = PAU(1, 1, init="identity").double()
    x = torch.tensor([-3.0, 0.0, 0.5, 7.0], dtype=torch.float64)
    assert torch.equal(module(x), x)


def test_pau_error_is_a_value_error_of_its_own() -> None:
    assert PAUError.__mro__ == (PAUError, ValueError, Exception, BaseException, object)
