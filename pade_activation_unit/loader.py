"""Load the compiled PAU libraries into this process: explicitly, once, and never compiling.

Why explicit rather than at import: importing `pade_activation_unit` must stay cheap and free of side
effects (`python -m pade_activation_unit.build` runs before any library exists, and a missing or stale
build must not break `import`), while loading a library registers the `pau::` ops for the whole process,
which may happen exactly once. So `load_libraries()` is the one place that loads: the backend choice
(`backend.backend_state`) calls it the first time PAU runs. It loads the build whose key matches these
sources and this torch (`_extension.build_key`), or reports why there is none, and then attaches the
Python-side registrations of the ops (`ops.register`: fake kernels and autograd) once.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from . import _extension as ext
from . import ops


@dataclass(frozen=True)
class LoadedLibraries:
    cpu_kernel: bool  # libpau_cpu.so loaded: the op schemas exist, with CPU kernels
    cuda_kernel: bool  # libpau_cuda.so loaded: CUDA kernels registered too
    why_not: str  # why a library is missing ("" when both are loaded)
    folder: str | None  # the build folder the libraries came from


def _ops_defined() -> bool:
    try:
        torch.ops.pau.forward.default
    except (AttributeError, RuntimeError):
        return False
    return True


def _load(folder, library: str) -> str:
    """Load one library; "" on success, else why it failed."""
    try:
        torch.ops.load_library(str(folder / library))
    except (OSError, RuntimeError) as error:
        return f"loading {folder / library} failed: {error}"
    return ""


@functools.cache
def load_libraries() -> LoadedLibraries:
    """Load the built libraries matching this checkout (once per process) and register the ops' Python side."""
    try:
        key = ext.build_key()
    except (ModuleNotFoundError, OSError) as error:
        return LoadedLibraries(False, False, f"extension sources unreadable: {error}", None)
    manifest = ext.read_manifest(key)
    if manifest is None:
        return LoadedLibraries(False, False, "extension not built: run make build", None)
    folder = ext.build_dir(key)
    failure = "" if _ops_defined() else _load(folder, manifest["cpu_library"])
    if failure:
        return LoadedLibraries(False, False, failure, str(folder))
    ops.register()
    cuda_library = manifest.get("cuda_library")
    if not cuda_library:
        return LoadedLibraries(True, False, f"CUDA kernel not built: {manifest.get('cuda_skipped')}", str(folder))
    if not torch._C._dispatch_has_kernel_for_dispatch_key("pau::forward", "CUDA"):
        failure = _load(folder, cuda_library)
    return LoadedLibraries(True, not failure, failure, str(folder))
