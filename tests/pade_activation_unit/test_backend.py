"""Backend choice: one log line per process, the PAU_BACKEND override, per-call selection and its errors."""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pade_activation_unit import PAUError, active_backend, backend, pau
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
    assert lines[0] == backend.log_line(backend.backend_state())
    assert result.stdout.strip() == active_backend()
    if backend.backend_state().cpu_kernel and not torch.cuda.is_available():
        assert lines[0].startswith("PAU backend: cpu-kernel (no CUDA device; CPU kernels: ")
    if not backend.backend_state().cpu_kernel:
        assert lines[0] == "PAU backend: reference (extension not built: run make build)"


def test_environment_forces_the_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    state = backend.select_backend({"PAU_BACKEND": "reference"})
    assert state.active == "reference" and state.reason == "forced by PAU_BACKEND"
    monkeypatch.setattr(backend, "_state", state)
    module_output = pau(torch.randn(4, requires_grad=True), torch.randn(6), torch.randn(4))
    assert type(module_output.grad_fn).__name__ == "DivBackward0"  # the reference's last op, not the kernel


def test_invalid_environment_value_is_rejected() -> None:
    with pytest.raises(PAUError, match=r"PAU_BACKEND='fast' is not one of \('cuda-kernel', 'cpu-kernel', 'reference'\)"):
        backend.select_backend({"PAU_BACKEND": "fast"})


@requires_cpu_kernel
def test_per_call_selection_by_device() -> None:
    assert backend.backend_for(torch.empty(2)) == "cpu-kernel"
    assert backend.backend_for(torch.empty(2, device="meta")) == "reference"
    output = pau(torch.randn(4, requires_grad=True), torch.randn(6), torch.randn(4))
    assert type(output.grad_fn).__name__ == "GeneratedBackwardFor_pau_forward_defaultBackward"


def test_forcing_a_kernel_that_cannot_run_is_an_error() -> None:
    x = torch.randn(3)
    if not backend.backend_state().cuda_kernel:
        with pytest.raises(PAUError, match="PAU backend 'cuda-kernel' is not available"):
            pau(x, torch.randn(6), torch.randn(4), backend="cuda-kernel")
    else:
        with pytest.raises(PAUError, match="PAU backend 'cuda-kernel' cannot run a tensor on cpu"):
            pau(x, torch.randn(6), torch.randn(4), backend="cuda-kernel")


def test_package_imports_nothing_from_oss_net_and_loads_nothing_at_import() -> None:
    """Importing every module loads no library and logs nothing; the first call does both, once."""
    code = (
        "import logging, sys; logging.basicConfig(level=logging.INFO, format='%(message)s')\n"
        "import torch\n"
        "from pade_activation_unit import backend, build, functional, init_tables, loader, module, ops, reference\n"
        "print(hasattr(torch.ops.pau, 'forward'), file=sys.stderr)\n"
        "from pade_activation_unit import PAU\n"
        "PAU()(torch.ones(3)); PAU()(torch.ones(3))\n"
        "assert loader.load_libraries() is loader.load_libraries()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'oss_net'), file=sys.stderr)\n"
    )
    environment = {k: v for k, v in os.environ.items() if k != "PAU_BACKEND"}
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=environment, capture_output=True, text=True, check=True)
    lines = [line for line in result.stderr.splitlines() if not line.startswith("W")]  # torch's own warnings
    assert lines[0] == "False"
    assert lines[1].startswith("PAU backend: ") and lines[2:] == ["[]"]


def test_package_modules_import_each_other_without_a_cycle() -> None:
    """The intra-package import graph (from the source, `from .x import` and `from . import x`) is acyclic."""
    package = REPO / "pade_activation_unit"
    graph = {}
    for path in package.glob("*.py"):
        tree = ast.parse(path.read_text())
        targets = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                targets |= {node.module} if node.module else {alias.name for alias in node.names}
        graph[path.stem] = targets - {"__init__"}
    assert graph["reference"] == set() and graph["ops"] == {"reference"}
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, f"import cycle: {' -> '.join((*path, name))}"
        if name not in done:
            for target in graph.get(name, ()):
                visit(target, (*path, name))
            done.add(name)

    for name in graph:
        visit(name, ())
