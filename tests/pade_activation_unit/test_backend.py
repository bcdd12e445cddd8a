"""Backend choice: one log line per process, the PAU_BACKEND override, per-call selection and its errors."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pade_activation_unit import PAUError, _backend, active_backend, pau
from tests.pade_activation_unit.helpers import requires_cpu_kernel

REPO = Path(__file__).resolve().parents[2]


def test_import_logs_exactly_one_backend_line() -> None:
    code = (
        "import logging; logging.basicConfig(level=logging.INFO, format='%(message)s')\n"
        "import torch; from pade_activation_unit import PAU, active_backend\n"
        "PAU()(torch.ones(3)); print(active_backend())\n"
    )
    environment = {k: v for k, v in os.environ.items() if k != "PAU_BACKEND"}
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=environment, capture_output=True, text=True, check=True)
    lines = [line for line in result.stderr.splitlines() if line.startswith("PAU backend:")]
    assert len(lines) == 1, result.stderr
    assert lines[0] == _backend.log_line(_backend.backend_state())
    assert result.stdout.strip() == active_backend()
    if _backend.backend_state().cpu_kernel and not torch.cuda.is_available():
        assert lines[0].startswith("PAU backend: cpu-kernel (no CUDA device; CPU kernels: ")
    if not _backend.backend_state().cpu_kernel:
        assert lines[0] == "PAU backend: reference (extension not built: run make build)"


def test_environment_forces_the_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    state = _backend.select_backend({"PAU_BACKEND": "reference"})
    assert state.active == "reference" and state.reason == "forced by PAU_BACKEND"
    monkeypatch.setattr(_backend, "_STATE", state)
    module_output = pau(torch.randn(4, requires_grad=True), torch.randn(6), torch.randn(4))
    assert type(module_output.grad_fn).__name__ == "DivBackward0"  # the reference's last op, not the kernel


def test_invalid_environment_value_is_rejected() -> None:
    with pytest.raises(PAUError, match=r"PAU_BACKEND='fast' is not one of \('cuda-kernel', 'cpu-kernel', 'reference'\)"):
        _backend.select_backend({"PAU_BACKEND": "fast"})


@requires_cpu_kernel
def test_per_call_selection_by_device() -> None:
    assert _backend.backend_for(torch.empty(2)) == "cpu-kernel"
    assert _backend.backend_for(torch.empty(2, device="meta")) == "reference"
    output = pau(torch.randn(4, requires_grad=True), torch.randn(6), torch.randn(4))
    assert type(output.grad_fn).__name__ == "GeneratedBackwardFor_pau_forward_defaultBackward"


def test_forcing_a_kernel_that_cannot_run_is_an_error() -> None:
    x = torch.randn(3)
    if not _backend.backend_state().cuda_kernel:
        with pytest.raises(PAUError, match="PAU backend 'cuda-kernel' is not available"):
            pau(x, torch.randn(6), torch.randn(4), backend="cuda-kernel")
    else:
        with pytest.raises(PAUError, match="PAU backend 'cuda-kernel' cannot run a tensor on cpu"):
            pau(x, torch.randn(6), torch.randn(4), backend="cuda-kernel")


def test_benchmark_smoke(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import benchmarks.common
    from benchmarks import bench_pau

    monkeypatch.setattr(benchmarks.common, "RESULTS_DIR", tmp_path)
    result = bench_pau.run(smoke=True)
    assert (tmp_path / "pau.json").is_file()
    assert {row["implementation"] for row in result["rows"]} >= {"eager reference"}
    if _backend.backend_state().cpu_kernel:
        assert result["cpu"]["kernel_vs_eager"] > 0
