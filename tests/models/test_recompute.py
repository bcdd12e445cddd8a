"""Activation recomputation: the same gradients and batch-norm statistics as a plain step, at less memory.

Tolerance: gradients within rtol 1e-6 / atol 1e-7 of the plain step's, in float32 and under bf16 autocast (on
this CPU they are bitwise equal: the recomputation runs the same kernels on the same inputs). The bf16 test
turns oneDNN off: its bf16 convolution backward is not deterministic on the CPU (two identical plain steps
differ by up to 3e-2 relative, now and then by inf), so no tolerance would tell recomputation from that noise.
"""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from oss_net.models import build_model, demo_config, get_unet_config, recomputed_blocks, set_activation_recomputation
from oss_net.models.encoder import HalvingAveragePool, ResidualBlock3d
from oss_net.models.memory import largest_saved_bytes_within, saved_tensor_bytes
from oss_net.models.recompute import RecomputedBlock
from oss_net.training.step import step_losses
from pade_activation_unit import PAU, backend_state

TOLERANCE = {"rtol": 1e-6, "atol": 1e-7}


def _configs():
    return [demo_config("C", "brats", volume_shape=(32, 32, 20)),
            get_unet_config("unet3d", "brats", volume_shape=(16, 16, 16), channels=(4, 8, 16), strides=(2, 2))]


def _batch(config, points: int = 64) -> dict:
    generator = torch.Generator().manual_seed(0)
    label = (torch.rand(1, *config.volume_shape, generator=generator) > 0.7).to(torch.uint8)
    coords = torch.randint(0, min(config.volume_shape), (1, points, 3), generator=generator).float()
    return {"volume": torch.randn(1, config.in_channels, *config.volume_shape, generator=generator), "label": label,
            "coords": coords, "labels": torch.rand(1, points, 1, generator=generator).round()}


def _count_forwards(model: nn.Module) -> list[int]:
    """A counter of the forward calls of `model`'s blocks (module hooks do not run in a recomputation)."""
    calls = [0]
    for block in recomputed_blocks(model):
        def counted(*inputs, forward=block.forward):
            calls[0] += 1
            return forward(*inputs)

        block.forward = counted
    return calls


def _plain_and_recomputed(config, amp: str):
    """Gradients and buffers after one forward + backward of the same model and batch, plain and recomputed;
    and how often the blocks of the recomputed model ran."""
    torch.manual_seed(0)
    plain = build_model(config).train()
    recomputed = copy.deepcopy(plain)
    assert set_activation_recomputation(recomputed, True) == len(recomputed_blocks(recomputed)) > 0
    calls = _count_forwards(recomputed)
    batch = _batch(config)
    for model in (plain, recomputed):
        step_losses(model, batch, amp=amp).total.backward()
    return plain, recomputed, calls[0]


@pytest.mark.parametrize("config", _configs(), ids=["C", "unet3d"])
def test_float32_gradients_and_batch_norm_statistics_equal_the_plain_step(config):
    plain, recomputed, calls = _plain_and_recomputed(config, "off")
    assert calls == 2 * len(recomputed_blocks(recomputed))  # every block ran twice: forward, then recomputed
    for (name, a), b in zip(plain.named_parameters(), recomputed.parameters()):
        torch.testing.assert_close(b.grad, a.grad, **TOLERANCE, msg=name)
    for (name, a), b in zip(plain.named_buffers(), recomputed.buffers()):  # the recomputation updated no running statistic
        assert torch.equal(a, b), name


@pytest.mark.parametrize("config", _configs(), ids=["C", "unet3d"])
def test_bf16_autocast_gradients_equal_the_plain_step(config):
    with torch.backends.mkldnn.flags(enabled=False):
        plain, recomputed, calls = _plain_and_recomputed(config, "bf16")
    assert calls == 2 * len(recomputed_blocks(recomputed))
    for (name, a), b in zip(plain.named_parameters(), recomputed.parameters()):
        torch.testing.assert_close(b.grad, a.grad, **TOLERANCE, msg=name)


def test_eval_mode_and_no_grad_run_the_blocks_once():
    config = _configs()[0]
    model = build_model(config)
    set_activation_recomputation(model, True)
    calls = _count_forwards(model)
    with torch.no_grad():
        step_losses(model.train(), _batch(config))
    step_losses(model.eval(), _batch(config)).total.backward()
    assert calls[0] == 2 * len(recomputed_blocks(model))


def test_the_blocks_are_the_encoder_and_decoder_blocks_or_every_u_net_block():
    oss, unet = (build_model(config) for config in _configs())
    assert len(recomputed_blocks(oss)) == len(oss.encoder.blocks) + len(oss.decoder.blocks) == 3 + 5
    assert len(recomputed_blocks(unet)) == 1 + 2 + 2  # stem, two down, two merge
    assert set_activation_recomputation(oss, False) == 8 and not any(block.recompute for block in recomputed_blocks(oss))


class _LinearPau(RecomputedBlock):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.linear = nn.Linear(width, width)
        self.act = PAU(backend="reference")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.linear(x))


def test_a_recomputed_block_keeps_its_input_and_holds_one_block_while_recomputing():
    """Two blocks Linear(8) -> PAU on x [10, 8]; a PAU counts as the kernel (saves its input). Plain: each
    block keeps its input and the Linear's output (4 tensors of 80 floats). Recomputed: only the two block
    inputs, and the recomputation of one block holds its Linear's output (80 floats) on top."""
    model = nn.Sequential(_LinearPau(8), _LinearPau(8))
    x = torch.randn(10, 8, requires_grad=True)
    weights, paus = list(model.parameters()), [m for m in model.modules() if isinstance(m, PAU)]
    tensor = 10 * 8 * 4
    assert saved_tensor_bytes(lambda: model(x), exclude=weights, opaque_modules=paus) == 4 * tensor
    set_activation_recomputation(model, True)
    blocks = recomputed_blocks(model)
    assert saved_tensor_bytes(lambda: model(x), exclude=weights, opaque_modules=paus, recomputed_modules=blocks) == 2 * tensor
    set_activation_recomputation(model, False)
    assert largest_saved_bytes_within(lambda: model(x), blocks, exclude=weights, opaque_modules=paus) == tensor


def test_the_pau_kernel_keeps_its_input_once():
    """Linear -> PAU (the compiled kernel) -> Linear on x [10, 8]: autograd keeps x, the PAU's input (the first
    Linear's output, one storage) and the PAU's output (the second Linear's input): 3 tensors, no copy."""
    if not backend_state().cpu_kernel:
        pytest.skip(f"the CPU kernel is not built ({backend_state().reason})")
    pau = PAU(backend="cpu-kernel")
    first, second = nn.Linear(8, 8), nn.Linear(8, 8)
    x = torch.randn(10, 8, requires_grad=True)
    weights = [*first.parameters(), *second.parameters(), *pau.parameters()]
    assert saved_tensor_bytes(lambda: second(pau(first(x))), exclude=weights) == 3 * 10 * 8 * 4


def test_the_encoder_block_keeps_no_full_resolution_tensor_for_its_pools():
    """ResidualBlock3d(2 -> 4) on x [1, 2, 8, 8, 8] keeps x, conv1's output, BN1's output (the PAU's input), the
    pooled conv2 input, conv2's output, the pooled x (the shortcut's input) and the final sum (the PAU's
    input), plus BN's per-channel mean and inverse std: no full-resolution PAU output for the pool (aten's
    avg_pool3d would keep it) and no full-resolution shortcut output (the shortcut pools first)."""
    block = ResidualBlock3d(2, 4).train()
    x = torch.randn(1, 2, 8, 8, 8, requires_grad=True)
    paus = [block.act1, block.act2]
    full, half, statistics = 4 * 8**3 * 4, 4 * 4**3 * 4, 2 * 2 * 4 * 4
    counted = saved_tensor_bytes(lambda: block(x), exclude=[*block.parameters(), *block.buffers()], opaque_modules=paus)
    assert counted == 2 * 8**3 * 4 + 2 * full + 3 * half + 2 * 4**3 * 4 + statistics


def test_pooling_the_shortcut_first_equals_pooling_its_output():
    block = ResidualBlock3d(2, 4).double()
    x = torch.randn(1, 2, 9, 8, 7, dtype=torch.float64)
    torch.testing.assert_close(block.shortcut(HalvingAveragePool.apply(x)), F.avg_pool3d(block.shortcut(x), 2),
                               rtol=0, atol=1e-14)


def test_the_halving_pool_equals_avg_pool3d_forward_and_backward():
    x = torch.randn(2, 3, 9, 8, 7, dtype=torch.float64, requires_grad=True)
    grad = torch.randn(2, 3, 4, 4, 3, dtype=torch.float64)
    ours = HalvingAveragePool.apply(x)
    (ours_grad,) = torch.autograd.grad(ours, x, grad)
    reference = F.avg_pool3d(x, 2)
    (reference_grad,) = torch.autograd.grad(reference, x, grad)
    assert torch.equal(ours, reference) and torch.equal(ours_grad, reference_grad)
