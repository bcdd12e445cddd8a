"""Which PAU implementation runs: load the compiled libraries once, pick the backend once, log it once.

Backends: "cuda-kernel" and "cpu-kernel" (the `pau::forward` / `pau::backward` ops of the libraries built
by `python -m pade_activation_unit.build`) and "reference" (pure PyTorch). Importing this module never
compiles: it loads the build whose key matches the sources and torch (`_extension.build_key`), or none.

Per call, without a forced backend, a CUDA tensor runs the CUDA kernel when it is loaded, a CPU tensor
the CPU kernel when it is loaded, anything else the reference. `PAU_BACKEND=reference|cpu-kernel|cuda-kernel`
forces one backend for the process, the `backend` argument of `pau`/`PAU` for one call or module; forcing a
kernel that is not loaded, or that does not match the tensor's device, raises PAUError.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from . import _extension as ext
from .reference import PAUError

BACKENDS = ("cuda-kernel", "cpu-kernel", "reference")
ENVIRONMENT_VARIABLE = "PAU_BACKEND"
logger = logging.getLogger("pade_activation_unit")


@dataclass(frozen=True)
class BackendState:
    cpu_kernel: bool  # libpau_cpu.so loaded: the ops exist with CPU kernels
    cuda_kernel: bool  # libpau_cuda.so loaded: CUDA kernels registered
    forced: str | None  # PAU_BACKEND, validated
    active: str  # what active_backend() reports
    reason: str  # the parenthesis of the log line
    library_dir: str | None


def _ops_registered() -> bool:
    try:
        torch.ops.pau.forward.default
    except (AttributeError, RuntimeError):
        return False
    return True


def _load_libraries() -> tuple[bool, bool, str, str | None]:
    """(cpu loaded, cuda loaded, why not, folder) for the build matching this checkout."""
    try:
        key = ext.build_key()
    except (ModuleNotFoundError, OSError) as error:
        return False, False, f"extension sources unreadable: {error}", None
    manifest = ext.read_manifest(key)
    if manifest is None:
        return False, False, "extension not built: run make build", None
    folder = ext.build_dir(key)
    if not _ops_registered():
        try:
            torch.ops.load_library(str(folder / manifest["cpu_library"]))
        except (OSError, RuntimeError) as error:
            return False, False, f"loading {folder / manifest['cpu_library']} failed: {error}", str(folder)
    cuda_library = manifest.get("cuda_library")
    if not cuda_library:
        return True, False, f"CUDA kernel not built: {manifest.get('cuda_skipped')}", str(folder)
    if torch._C._dispatch_has_kernel_for_dispatch_key("pau::forward", "CUDA"):
        return True, True, "", str(folder)
    try:
        torch.ops.load_library(str(folder / cuda_library))
    except (OSError, RuntimeError) as error:
        return True, False, f"loading {folder / cuda_library} failed: {error}", str(folder)
    return True, True, "", str(folder)


def select_backend(environ: Mapping[str, str] = os.environ) -> BackendState:
    """Load the libraries (once) and decide the process-wide backend from them, the GPU and PAU_BACKEND."""
    cpu_kernel, cuda_kernel, why_not, folder = _load_libraries()
    if cpu_kernel:
        from .ops import register

        register()
    forced = environ.get(ENVIRONMENT_VARIABLE) or None
    if forced is not None and forced not in BACKENDS:
        raise PAUError(f"{ENVIRONMENT_VARIABLE}={forced!r} is not one of {BACKENDS}")
    gpu = torch.cuda.is_available()
    if forced is not None:
        available = {"reference": True, "cpu-kernel": cpu_kernel, "cuda-kernel": cuda_kernel and gpu}[forced]
        reason = f"forced by {ENVIRONMENT_VARIABLE}" + ("" if available else f"; NOT AVAILABLE: {why_not or 'no CUDA device'}")
        return BackendState(cpu_kernel, cuda_kernel, forced, forced, reason, folder)
    if cuda_kernel and gpu:
        active = "cuda-kernel"
        # No device query here: it would create a CUDA context on GPU 0 in every importing process.
        reason = "CUDA device available; CPU tensors use the CPU kernel"
    elif cpu_kernel:
        active = "cpu-kernel"
        reason = "no CUDA device" if not gpu else f"CUDA tensors use the reference: {why_not}"
    else:
        active, reason = "reference", why_not
    if cpu_kernel:
        reason += f"; CPU kernels: {torch.ops.pau.cpu_capability()}"
    return BackendState(cpu_kernel, cuda_kernel, None, active, reason, folder)


def log_line(state: BackendState) -> str:
    return f"PAU backend: {state.active} ({state.reason})"


_STATE = select_backend()
logger.log(logging.WARNING if "NOT AVAILABLE" in _STATE.reason else logging.INFO, log_line(_STATE))


def active_backend() -> str:
    """The process-wide backend: "cuda-kernel", "cpu-kernel" or "reference"."""
    return _STATE.active


def backend_state() -> BackendState:
    return _STATE


def backend_for(x: torch.Tensor, backend: str | None = None) -> str:
    """The backend that runs PAU on `x`; `backend` (or PAU_BACKEND) forces one, None picks by device."""
    requested = backend or _STATE.forced
    if requested is None:
        if x.device.type == "cuda" and _STATE.cuda_kernel:
            return "cuda-kernel"
        if x.device.type == "cpu" and _STATE.cpu_kernel:
            return "cpu-kernel"
        return "reference"
    if requested not in BACKENDS:
        raise PAUError(f"PAU backend must be one of {BACKENDS}, got {requested!r}")
    if requested == "reference":
        return requested
    loaded = _STATE.cuda_kernel if requested == "cuda-kernel" else _STATE.cpu_kernel
    if not loaded:
        raise PAUError(f"PAU backend {requested!r} is not available ({_STATE.reason}): run make build")
    if x.device.type != requested.split("-")[0]:
        raise PAUError(f"PAU backend {requested!r} cannot run a tensor on {x.device}")
    return requested
