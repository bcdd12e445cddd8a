"""Which PAU implementation runs: pick the backend once per process, log it in one line.

Backends: "cuda-kernel" and "cpu-kernel" (the `pau::forward` / `pau::backward` ops of the libraries built
by `python -m pade_activation_unit.build`, loaded by `loader.load_libraries`) and "reference" (pure PyTorch).
The choice is made, and the libraries loaded, the first time `backend_state()` is called (by the first PAU
call, `active_backend()` or `backend_for()`), never at import.

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

from .loader import load_libraries
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


def select_backend(environ: Mapping[str, str] = os.environ) -> BackendState:
    """Load the libraries (once) and decide the process-wide backend from them, the GPU and PAU_BACKEND."""
    libraries = load_libraries()
    cpu_kernel, cuda_kernel, why_not = libraries.cpu_kernel, libraries.cuda_kernel, libraries.why_not
    forced = environ.get(ENVIRONMENT_VARIABLE) or None
    if forced is not None and forced not in BACKENDS:
        raise PAUError(f"{ENVIRONMENT_VARIABLE}={forced!r} is not one of {BACKENDS}")
    gpu = torch.cuda.is_available()
    if forced is not None:
        available = {"reference": True, "cpu-kernel": cpu_kernel, "cuda-kernel": cuda_kernel and gpu}[forced]
        reason = f"forced by {ENVIRONMENT_VARIABLE}" + ("" if available else f"; NOT AVAILABLE: {why_not or 'no CUDA device'}")
        return BackendState(cpu_kernel, cuda_kernel, forced, forced, reason, libraries.folder)
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
    return BackendState(cpu_kernel, cuda_kernel, None, active, reason, libraries.folder)


def log_line(state: BackendState) -> str:
    return f"PAU backend: {state.active} ({state.reason})"


_state: BackendState | None = None


def backend_state() -> BackendState:
    """The process-wide choice; the first call loads the libraries, decides and logs the one backend line."""
    global _state
    if _state is None:
        _state = select_backend()
        logger.log(logging.WARNING if "NOT AVAILABLE" in _state.reason else logging.INFO, log_line(_state))
    return _state


def active_backend() -> str:
    """The process-wide backend: "cuda-kernel", "cpu-kernel" or "reference"."""
    return backend_state().active


def backend_for(x: torch.Tensor, backend: str | None = None) -> str:
    """The backend that runs PAU on `x`; `backend` (or PAU_BACKEND) forces one, None picks by device."""
    state = backend_state()
    requested = backend or state.forced
    if requested is None:
        if x.device.type == "cuda" and state.cuda_kernel:
            return "cuda-kernel"
        if x.device.type == "cpu" and state.cpu_kernel:
            return "cpu-kernel"
        return "reference"
    if requested not in BACKENDS:
        raise PAUError(f"PAU backend must be one of {BACKENDS}, got {requested!r}")
    if requested == "reference":
        return requested
    loaded = state.cuda_kernel if requested == "cuda-kernel" else state.cpu_kernel
    if not loaded:
        raise PAUError(f"PAU backend {requested!r} is not available ({state.reason}): run make build")
    if x.device.type != requested.split("-")[0]:
        raise PAUError(f"PAU backend {requested!r} cannot run a tensor on {x.device}")
    return requested
