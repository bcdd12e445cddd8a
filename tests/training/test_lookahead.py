"""Lookahead(k, α): the original's synchronisation schedule, a bit-exact state_dict round trip, and paper mode's
torch-optimizer 0.1.0 RAdam checked against the package itself (a test-only dependency, requirements.txt)."""
from __future__ import annotations

import io

import pytest
import torch

from oss_net.models import parameter_groups
from oss_net.training.lookahead import Lookahead, build_optimizer
from pade_activation_unit import PAU


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



# ------------------------------------------------------------------ paper mode: torch-optimizer 0.1.0 exactly

PAPER_STEPS, STEPS_PER_EPOCH, MILESTONE, RESUME_AT = 48, 8, 3, 22  # the lr drops ×0.1 after step 24


def _pau_model() -> torch.nn.Module:
    """Linear → PAU → Linear in float64; `parameter_groups` gives two groups, the ordinary parameters first."""
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), PAU(), torch.nn.Linear(8, 1)).double()


def _groups(model: torch.nn.Module) -> list[dict]:
    return parameter_groups(model, lr=3e-4, pau_lr=1e-2)


def _paper_batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(5)
    return [(torch.randn(16, 4, generator=generator, dtype=torch.float64),
             torch.randn(16, 1, generator=generator, dtype=torch.float64)) for _ in range(PAPER_STEPS)]


def _train_epochs(model, optimizer, scheduler, batches, first_step: int) -> None:
    """Steps first_step + 1, ... over `batches`; MultiStepLR steps once per epoch of STEPS_PER_EPOCH steps."""
    for step, (x, y) in enumerate(batches, start=first_step + 1):
        optimizer.zero_grad()
        (model(x) - y).square().mean().backward()
        optimizer.step()
        if step % STEPS_PER_EPOCH == 0:
            scheduler.step()


def _scheduler(optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.MultiStepLR:
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[MILESTONE], gamma=0.1)


def _package_run(batches) -> torch.nn.Module:
    """The original's optimiser itself: torch-optimizer 0.1.0's Lookahead(RAdam(groups), k=5, alpha=0.8)."""
    torch_optimizer = pytest.importorskip("torch_optimizer")
    model = _pau_model()
    groups = [{"params": group["params"], "lr": group["lr"]} for group in _groups(model)]
    optimizer = torch_optimizer.Lookahead(torch_optimizer.RAdam(groups), k=5, alpha=0.8)
    _train_epochs(model, optimizer, _scheduler(optimizer), batches, 0)
    return model


def _max_difference(a: torch.nn.Module, b: torch.nn.Module) -> float:
    return max((p - q).abs().max().item() for p, q in zip(a.parameters(), b.parameters()))


def test_paper_optimizer_is_torch_optimizer_0_1_0_across_a_milestone_and_a_resume():
    batches = _paper_batches()
    reference = _package_run(batches)

    model = _pau_model()
    optimizer = build_optimizer(_groups(model), compat="paper")
    scheduler = _scheduler(optimizer)
    _train_epochs(model, optimizer, scheduler, batches[:RESUME_AT], 0)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, buffer)
    _train_epochs(model, optimizer, scheduler, batches[RESUME_AT:], RESUME_AT)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(3e-5)  # the milestone was crossed
    assert _max_difference(model, reference) <= 1e-6

    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    resumed = _pau_model()
    resumed.load_state_dict(saved["model"])
    resumed_optimizer = build_optimizer(_groups(resumed), compat="paper")
    resumed_optimizer.load_state_dict(saved["optimizer"])
    resumed_scheduler = _scheduler(resumed_optimizer)
    resumed_scheduler.load_state_dict(saved["scheduler"])
    _train_epochs(resumed, resumed_optimizer, resumed_scheduler, batches[RESUME_AT:], RESUME_AT)
    assert _max_difference(resumed, reference) <= 1e-6
    assert _max_difference(resumed, model) == 0.0


def test_paper_pau_coefficients_move_at_the_ordinary_lr_and_ours_at_their_own():
    """The shared step-size cache: under paper mode the PAU group's lr (1e-2) is never used; ours uses it."""
    batches = _paper_batches()[:12]
    moved = {}
    for compat, pau_lr in (("paper", 1e-2), ("paper", 3e-4), ("ours", 1e-2), ("ours", 3e-4)):
        model = _pau_model()
        optimizer = build_optimizer(parameter_groups(model, lr=3e-4, pau_lr=pau_lr), compat=compat)
        start = model[1].numerator.detach().clone()
        _train_epochs(model, optimizer, _scheduler(optimizer), batches, 0)
        moved[compat, pau_lr] = (model[1].numerator - start).norm().item()
    assert moved["paper", 1e-2] == moved["paper", 3e-4]  # the PAU group's own lr does not matter
    assert moved["ours", 3e-4] == pytest.approx(moved["paper", 3e-4], rel=1e-3)
    assert moved["ours", 1e-2] > 10 * moved["ours", 3e-4]


def test_paper_optimizer_refuses_the_state_of_another_optimizer():
    model = _pau_model()
    ours = build_optimizer(_groups(model)).state_dict()
    with pytest.raises(ValueError, match="without the step-size cache of torch-optimizer 0.1.0"):
        build_optimizer(_groups(model), compat="paper").load_state_dict(ours)
