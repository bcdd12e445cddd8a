"""Lookahead(k, α): the original's synchronisation schedule and a bit-exact state_dict round trip."""
from __future__ import annotations

import io

import pytest
import torch

from oss_net.training.lookahead import Lookahead, build_optimizer


def test_schedule_matches_hand_computed_sgd():
    """SGD lr 1 on loss = w (gradient 1): fast moves −1 per step; sync after steps 1, 6, 11."""
    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer = Lookahead(torch.optim.SGD([weight], lr=1.0), k=5, alpha=0.8)
    values = []
    for _ in range(11):
        optimizer.zero_grad()
        weight.sum().backward()
        optimizer.step()
        values.append(weight.item())
    # step 1: slow ← −1. steps 2–6 go to −6, then fast ← 0.8·(−6) + 0.2·(−1) = −5 = slow.
    # steps 7–11 go to −10, then fast ← 0.8·(−10) + 0.2·(−5) = −9.
    assert values == pytest.approx([-1, -2, -3, -4, -5, -5, -6, -7, -8, -9, -9])


def _train(optimizer: Lookahead, model: torch.nn.Module, steps: int, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(8, 4, generator=generator)
        optimizer.zero_grad()
        model(x).square().mean().backward()
        optimizer.step()


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))


def test_state_dict_round_trip_is_bit_exact_and_weights_only_safe():
    reference_model = _model()
    reference = build_optimizer([{"params": reference_model.parameters(), "lr": 1e-2}])
    _train(reference, reference_model, 7, seed=1)
    buffer = io.BytesIO()
    torch.save({"model": reference_model.state_dict(), "optimizer": reference.state_dict()}, buffer)
    _train(reference, reference_model, 6, seed=2)  # crosses the sync at step 11

    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    resumed_model = _model()
    resumed_model.load_state_dict(saved["model"])
    resumed = build_optimizer([{"params": resumed_model.parameters(), "lr": 1e-2}])
    resumed.load_state_dict(saved["optimizer"])
    assert resumed.step_count == 7 and len([s for s in saved["optimizer"]["slow"] if s is not None]) == 4
    _train(resumed, resumed_model, 6, seed=2)
    for a, b in zip(reference_model.parameters(), resumed_model.parameters()):
        assert torch.equal(a, b)
    for a, b in zip(reference_model.parameters(), resumed_model.parameters()):
        assert torch.equal(reference.state[a]["slow"], resumed.state[b]["slow"])


def test_a_learning_rate_set_after_loading_reaches_the_inner_optimizer():
    """The loop sets each group's lr before every step; after a resume that must still reach RAdam."""
    model = _model()
    optimizer = build_optimizer([{"params": model.parameters(), "lr": 1.0}])
    optimizer.load_state_dict(optimizer.state_dict())
    for group in optimizer.param_groups:
        group["lr"] = 0.1
    assert optimizer.optimizer.param_groups[0]["lr"] == pytest.approx(0.1)


def test_bad_arguments():
    with pytest.raises(ValueError, match="k must be at least 1"):
        Lookahead(torch.optim.SGD(_model().parameters(), lr=1.0), k=0)
    with pytest.raises(ValueError, match="alpha must lie in"):
        Lookahead(torch.optim.SGD(_model().parameters(), lr=1.0), alpha=1.5)
