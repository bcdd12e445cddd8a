"""The CUDA kernel (skipped without a GPU and a built CUDA library): reference equality, gradients,
deterministic bits, half precision, torch.compile, and compute-sanitizer memcheck."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pade_activation_unit import PAU, pau
from tests.pade_activation_unit.helpers import DEGREES, VERSIONS, random_coefficients, requires_cuda_kernel, sample_points

pytestmark = [requires_cuda_kernel, pytest.mark.gpu]
REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("degrees", [*DEGREES, (2, 1)], ids=str)
@pytest.mark.parametrize("version", VERSIONS)
def test_cuda_equals_reference(version: str, degrees: tuple[int, int]) -> None:
    a, b = random_coefficients(*degrees, seed=11, dtype=torch.float32)
    b = b.abs() if version == "N" else b
    generator = torch.Generator().manual_seed(5)
    x = torch.rand(1_000_003, generator=generator) * 5 - 2.5  # odd length: vector packs plus a tail
    x = x.abs() if version == "N" else x
    grad = torch.randn(x.shape, generator=generator)
    results = []
    for backend in ("cuda-kernel", "reference"):
        leaves = [t.cuda().requires_grad_() for t in (x, a, b)]
        y = pau(*leaves, version, backend=backend)
        results.append((y, *torch.autograd.grad(y, leaves, grad.cuda())))
    for value, expected in zip(*results):
        torch.testing.assert_close(value, expected, rtol=1e-5, atol=1e-5 * expected.abs().max().item())


@pytest.mark.parametrize("degrees", DEGREES, ids=str)
@pytest.mark.parametrize("version", VERSIONS)
def test_cuda_gradcheck(version: str, degrees: tuple[int, int]) -> None:
    a, b = random_coefficients(*degrees, seed=sum(degrees))
    x = sample_points(a, b, version, count=12, seed=7)
    inputs = tuple(t.cuda().requires_grad_() for t in (x, a, b))

    def function(x, a, b):
        return pau(x, a, b, version, backend="cuda-kernel")

    assert torch.autograd.gradcheck(function, inputs)
    assert torch.autograd.gradgradcheck(function, inputs)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_cuda_backward_bits_are_deterministic(dtype: torch.dtype) -> None:
    module = PAU().cuda()
    x = (torch.randn(3_000_001, device="cuda") * 3).to(dtype)
    grad = torch.randn_like(x)
    a, b = module.numerator.detach(), module.denominator.detach()
    first = torch.ops.pau.backward(grad, x, a, b, 0)
    second = torch.ops.pau.backward(grad, x, a, b, 0)
    for u, v in zip(first, second):
        assert torch.equal(u, v)
    assert first[0].dtype == dtype and first[1].dtype == torch.float32


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cuda_half_precision(dtype: torch.dtype) -> None:
    module = PAU().cuda()
    x = (torch.randn(100_000, device="cuda") * 2).to(dtype)
    expected = pau(x.float(), module.numerator, module.denominator, backend="reference").to(dtype)
    torch.testing.assert_close(module(x), expected)


def test_cuda_unaligned_and_non_contiguous_input() -> None:
    module = PAU().cuda()
    base = torch.randn(1001, device="cuda")
    for x in (base[1:], base.view(7, 143).t()):
        expected = pau(x.contiguous(), module.numerator, module.denominator, backend="reference")
        torch.testing.assert_close(pau(x, module.numerator, module.denominator, backend="cuda-kernel"), expected)


def test_cuda_torch_compile_reduce_overhead() -> None:
    torch._dynamo.reset()
    module = PAU().cuda()
    compiled = torch.compile(module, mode="reduce-overhead", fullgraph=True)
    x = torch.randn(4096, device="cuda")
    for _ in range(3):  # recorded into a CUDA graph after warm-up: the kernels must use the current stream
        torch.testing.assert_close(compiled(x), module(x))


def test_compute_sanitizer_memcheck_is_clean() -> None:
    sanitizer = shutil.which("compute-sanitizer") or shutil.which(
        str(Path(os.environ.get("CUDA_HOME", "/usr/local/cuda")) / "bin" / "compute-sanitizer")
    )
    if sanitizer is None:
        pytest.skip("compute-sanitizer not found")
    code = (
        "import torch; from pade_activation_unit import PAU\n"
        "for dtype in (torch.float32, torch.float64, torch.float16):\n"
        "    for degrees in ((5, 4), (3, 2)):\n"
        "        m = PAU(*degrees).cuda()\n"
        "        x = (torch.randn(100_003, device='cuda') * 2).to(dtype).requires_grad_()\n"
        "        m(x).float().sum().backward()\n"
        "torch.cuda.synchronize()\n"
    )
    result = subprocess.run(
        [sanitizer, "--tool", "memcheck", "--error-exitcode", "3", sys.executable, "-c", code],
        cwd=REPO, capture_output=True, text=True, check=False, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "ERROR SUMMARY: 0 errors" in result.stdout
