"""Lookahead (Zhang et al. 2019) around any torch optimiser, as the original used around RAdam.

No maintained Lookahead package is installed, so this is a small one. It follows the original's
torch_optimizer 0.1.0 schedule (docs/reference.md §5): the slow weights are synchronised right after the
first step and then every k steps,

    fast ← α·fast + (1 − α)·slow,   slow ← fast.

It subclasses `torch.optim.Optimizer` (LR schedulers require one) and shares the inner optimiser's
param_groups, so changing a group's lr reaches the inner optimiser. `state_dict()` holds the inner
state, the slow weights and the step counter, and loads back bit-exactly.
"""
from __future__ import annotations

from typing import Any, Callable

import torch


class Lookahead(torch.optim.Optimizer):
    """Wrap `optimizer`: every `k` steps pull the fast weights towards the slow ones by `alpha`.

    Args:
        optimizer: the inner ("fast") optimiser, e.g. `torch.optim.RAdam`.
        k: steps between synchronisations. Defaults to 5.
        alpha: step size of the slow weights towards the fast ones. Defaults to 0.8.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, k: int = 5, alpha: float = 0.8) -> None:
        if k < 1:
            raise ValueError(f"Lookahead k must be at least 1 (got {k})")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"Lookahead alpha must lie in [0, 1] (got {alpha})")
        self.optimizer = optimizer
        self.k = k
        self.alpha = alpha
        self.step_count = 0
        super().__init__(optimizer.param_groups, optimizer.defaults)
        self.param_groups = optimizer.param_groups  # shared, not copied: lr changes reach the inner optimiser

    def _synchronise(self) -> None:
        for group in self.param_groups:
            for fast in group["params"]:
                slow = self.state[fast].get("slow")
                if slow is None:
                    self.state[fast]["slow"] = fast.detach().clone()
                    continue
                fast.data.mul_(self.alpha).add_(slow, alpha=1.0 - self.alpha)
                slow.copy_(fast.detach())

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        with torch.enable_grad():
            loss = self.optimizer.step(closure)
        if self.step_count % self.k == 0:
            self._synchronise()
        self.step_count += 1
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def _parameters(self) -> list[torch.Tensor]:
        return [p for group in self.param_groups for p in group["params"]]

    def state_dict(self) -> dict[str, Any]:  # type: ignore[override]
        slow = [self.state[p]["slow"] if "slow" in self.state[p] else None for p in self._parameters()]
        return {"inner": self.optimizer.state_dict(), "slow": slow, "step_count": self.step_count, "k": self.k, "alpha": self.alpha}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:  # type: ignore[override]
        parameters = self._parameters()
        if len(state_dict["slow"]) != len(parameters):
            raise ValueError(f"Lookahead state holds {len(state_dict['slow'])} slow tensors for {len(parameters)} parameters")
        self.optimizer.load_state_dict(state_dict["inner"])
        self.param_groups = self.optimizer.param_groups  # load_state_dict rebuilt the group dicts
        self.k = int(state_dict["k"])
        self.alpha = float(state_dict["alpha"])
        self.step_count = int(state_dict["step_count"])
        self.state.clear()
        for parameter, slow in zip(parameters, state_dict["slow"]):
            if slow is not None:
                self.state[parameter]["slow"] = slow.to(device=parameter.device, dtype=parameter.dtype).clone()


def build_optimizer(groups: list[dict[str, Any]], k: int = 5, alpha: float = 0.8) -> Lookahead:
    """Lookahead(RAdam) with the original's betas (0.9, 0.999), eps 1e-8, no weight decay by default."""
    return Lookahead(torch.optim.RAdam(groups, betas=(0.9, 0.999), eps=1e-8), k=k, alpha=alpha)
