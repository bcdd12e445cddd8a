"""Padé Activation Unit: a learnable rational activation with C++/CUDA kernels and a pure-PyTorch reference.

    from pade_activation_unit import PAU, pau, pau_reference, active_backend

The public names load lazily (PEP 562), so `python -m pade_activation_unit.build` runs without importing
torch. Nothing is loaded at import: the first PAU call (or `active_backend()`) loads the compiled kernels
(`loader.load_libraries`), picks the backend and logs it in one line (`backend`).
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "PAU": "module",
    "pau": "functional",
    "pau_reference": "reference",
    "active_backend": "backend",
    "backend_for": "backend",
    "backend_state": "backend",
    "PAUError": "reference",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
