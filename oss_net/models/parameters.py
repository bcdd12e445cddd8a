"""Questions a model answers about its parameters: counts, PAU modules, optimizer groups."""
from __future__ import annotations

from typing import Any

from torch import nn

from pade_activation_unit import PAU


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameter values (buffers such as BN running statistics are not counted)."""
    return sum(p.numel() for p in module.parameters())


def count_pau_modules(module: nn.Module) -> int:
    """Number of PAU activation sites (each has its own 10 coefficients)."""
    return sum(isinstance(m, PAU) for m in module.modules())


def parameter_groups(model: nn.Module, lr: float, pau_lr: float = 1e-2, weight_decay: float = 0.0) -> list[dict[str, Any]]:
    """Two optimizer groups: PAU coefficients (pau_lr, no weight decay, as the original) and the rest.

    PAU parameters are found by module type, not by name. Empty groups are left out.
    """
    pau_ids = {id(p) for m in model.modules() if isinstance(m, PAU) for p in m.parameters()}
    pau = [p for p in model.parameters() if id(p) in pau_ids]
    other = [p for p in model.parameters() if id(p) not in pau_ids]
    groups = [
        {"name": "default", "params": other, "lr": lr, "weight_decay": weight_decay},
        {"name": "pau", "params": pau, "lr": pau_lr, "weight_decay": 0.0},
    ]
    return [group for group in groups if group["params"]]
