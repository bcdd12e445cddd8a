"""Lookahead(RAdam): ours, and for paper mode the one the original really ran (torch-optimizer 0.1.0).

`Lookahead` (Zhang et al. 2019) wraps any torch optimiser. It follows the original's torch-optimizer
0.1.0 schedule (docs/reference.md §5): the slow weights are taken right after the first step and
synchronised after steps 1 + k·n,

    fast ← α·fast + (1 − α)·slow,   slow ← fast.

It subclasses `torch.optim.Optimizer` (LR schedulers require one) and shares the inner optimiser's
param_groups, so changing a group's lr reaches the inner optimiser. `state_dict()` holds the inner
state, the slow weights and the step counter, and loads back bit-exactly.

`OriginalRAdam` is torch-optimizer 0.1.0's RAdam, re-implemented (docs/reference.md §5.1): every group
that does not bring betas of its own shares ONE step-size cache, so at each step the first parameter
updated computes the step size from its group's lr and every other parameter reuses it. With our two
groups (the ordinary parameters first, then the PAU coefficients) the PAUs therefore move at the
ordinary, scheduled lr, whatever their own group says, as they did in the original. The update is
computed in float32 whatever the parameters' dtype, as the package's `.float()` does.

`build_optimizer(groups, compat=...)` builds either: torch's RAdam with per-group step sizes ("ours"),
or `OriginalRAdam` under a Lookahead that also mixes at its first synchronisation ("paper"), so a user
can build the original's optimiser for a model of their own.
"""
from __future__ import annotations

import copy
import math
from typing import Any, Callable, Iterable

import torch

from oss_net.compat import DEFAULT_COMPAT, behaviour

STEP_SIZE_CACHE_SLOTS = 10  # torch-optimizer 0.1.0 keys its cache by step % 10


class Lookahead(torch.optim.Optimizer):
    """Wrap `optimizer`: every `k` steps pull the fast weights towards the slow ones by `alpha`.

    Args:
        optimizer: the inner ("fast") optimiser, e.g. `torch.optim.RAdam`.
        k: steps between synchronisations. Defaults to 5.
        alpha: step size of the slow weights towards the fast ones. Defaults to 0.8.
        mix_first: also mix at the first synchronisation, where the slow weights were just copied from the
            fast ones (a no-op up to rounding), as torch-optimizer 0.1.0 does; off: only copy.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, k: int = 5, alpha: float = 0.8, mix_first: bool = False) -> None:
        if k < 1:
            raise ValueError(f"Lookahead k must be at least 1 (got {k})")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"Lookahead alpha must lie in [0, 1] (got {alpha})")
        self.optimizer = optimizer
        self.k = k
        self.alpha = alpha
        self.mix_first = mix_first
        self.step_count = 0
        super().__init__(optimizer.param_groups, optimizer.defaults)
        self.param_groups = optimizer.param_groups  # shared, not copied: lr changes reach the inner optimiser

    def _synchronise(self) -> None:
        for group in self.param_groups:
            for fast in group["params"]:
                slow = self.state[fast].get("slow")
                if slow is None:
                    slow = self.state[fast]["slow"] = fast.detach().clone()
                    if not self.mix_first:
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


def _empty_cache() -> list[list[Any]]:
    """STEP_SIZE_CACHE_SLOTS slots of [step, N_sma, step size], all unknown."""
    return [[None, None, None] for _ in range(STEP_SIZE_CACHE_SLOTS)]


class OriginalRAdam(torch.optim.Optimizer):
    """torch-optimizer 0.1.0's RAdam, step-size cache included (docs/reference.md §5.1).

    Groups passed with betas other than the defaults get a cache of their own (group key "step_size_cache",
    an index into `step_size_caches`); all others, and groups added later, share cache 0.
    """

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0) -> None:
        if lr <= 0.0 or eps < 0.0 or weight_decay < 0 or not all(0.0 <= beta < 1.0 for beta in betas):
            raise ValueError(f"invalid RAdam settings: lr {lr}, betas {betas}, eps {eps}, weight_decay {weight_decay}")
        params = list(params)
        self.step_size_caches = [_empty_cache()]
        if params and isinstance(params[0], dict):
            params = [dict(group) for group in params]  # the caller's dicts stay as they are
            for group in params:
                if "betas" in group and tuple(group["betas"]) != tuple(betas):
                    group["step_size_cache"] = len(self.step_size_caches)
                    self.step_size_caches.append(_empty_cache())
        defaults = {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay, "step_size_cache": 0}
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            cache = self.step_size_caches[group["step_size_cache"]]
            for parameter in group["params"]:
                if parameter.grad is not None:
                    self._update(parameter, group, cache)
        return loss

    def _update(self, parameter: torch.Tensor, group: dict[str, Any], cache: list[list[Any]]) -> None:
        """One parameter's update, in the package's order of operations (float32 maths)."""
        grad = parameter.grad.float()
        if grad.is_sparse:
            raise RuntimeError("RAdam does not support sparse gradients")
        lr, weight_decay, eps = group["lr"], group["weight_decay"], group["eps"]
        beta1, beta2 = group["betas"]
        data = parameter.data.float()  # the parameter itself when it is float32
        state = self.state[parameter]
        if not state:
            state.update(step=0, exp_avg=torch.zeros_like(data), exp_avg_sq=torch.zeros_like(data))
        else:  # load_state_dict casts the moments to the parameter's dtype; the package casts them back
            state["exp_avg"], state["exp_avg_sq"] = state["exp_avg"].type_as(data), state["exp_avg_sq"].type_as(data)
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
        state["step"] += 1
        step = state["step"]
        slot = cache[step % STEP_SIZE_CACHE_SLOTS]
        if slot[0] == step:  # another parameter computed this step's size already, maybe with another lr
            n_sma, step_size = slot[1], slot[2]
        else:
            beta2_t = beta2**step
            n_sma_max = 2 / (1 - beta2) - 1
            n_sma = n_sma_max - 2 * step * beta2_t / (1 - beta2_t)
            if n_sma >= 5:
                step_size = lr * math.sqrt((1 - beta2_t) * (n_sma - 4) / (n_sma_max - 4) * (n_sma - 2) / n_sma
                                           * n_sma_max / (n_sma_max - 2)) / (1 - beta1**step)
            else:
                step_size = lr / (1 - beta1**step)
            slot[:] = [step, n_sma, step_size]
        if weight_decay != 0:
            data.add_(data, alpha=-weight_decay * lr)
        if n_sma >= 5:
            data.addcdiv_(exp_avg, exp_avg_sq.sqrt().add_(eps), value=-step_size)
        else:
            data.add_(exp_avg, alpha=-step_size)
        parameter.data.copy_(data)

    def state_dict(self) -> dict[str, Any]:  # type: ignore[override]
        return {**super().state_dict(), "step_size_caches": copy.deepcopy(self.step_size_caches)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:  # type: ignore[override]
        if "step_size_caches" not in state_dict:
            raise ValueError("optimizer state without the step-size cache of torch-optimizer 0.1.0's RAdam: "
                             "it was written by another optimizer (a paper-mode run of an earlier version?)")
        state = dict(state_dict)
        caches = state.pop("step_size_caches")
        super().load_state_dict(state)
        self.step_size_caches = [[list(slot) for slot in cache] for cache in caches]


def build_optimizer(groups: list[dict[str, Any]], k: int = 5, alpha: float = 0.8, compat: str = DEFAULT_COMPAT) -> Lookahead:
    """Lookahead(RAdam) with the original's betas (0.9, 0.999), eps 1e-8, no weight decay by default.

    compat "ours": torch's RAdam, each group at its own lr. "paper": torch-optimizer 0.1.0's, as the original
    ran it (`OriginalRAdam`: the first group's lr moves every parameter; list the ordinary parameters first).
    """
    if behaviour(compat).optimizer == "original":
        return Lookahead(OriginalRAdam(groups, betas=(0.9, 0.999), eps=1e-8), k=k, alpha=alpha, mix_first=True)
    return Lookahead(torch.optim.RAdam(groups, betas=(0.9, 0.999), eps=1e-8), k=k, alpha=alpha)
