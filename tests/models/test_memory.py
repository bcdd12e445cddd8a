"""saved_tensor_bytes counts what autograd keeps for backward."""
from __future__ import annotations

import torch
from torch import nn

from oss_net.models.memory import saved_tensor_bytes
from pade_activation_unit import PAU


def test_linear_saves_its_input_and_weight() -> None:
    linear = nn.Linear(8, 4)
    x = torch.randn(5, 8, requires_grad=True)
    # addmm keeps the input (5*8 floats) and the weight (4*8 floats) for its backward; the bias is not needed.
    assert saved_tensor_bytes(lambda: linear(x)) == (5 * 8 + 4 * 8) * 4
    assert saved_tensor_bytes(lambda: linear(x), exclude=linear.parameters()) == 5 * 8 * 4


def test_saved_bytes_of_a_linear_layer_on_a_constant_input_is_that_input() -> None:
    """Linear(5, 7) on x [3, 5] without grad keeps x for the weight gradient: 3 * 5 * 4 bytes (weights excluded)."""
    layer = nn.Linear(5, 7)
    x = torch.randn(3, 5)
    assert saved_tensor_bytes(lambda: layer(x).sum(), exclude=list(layer.parameters())) == 3 * 5 * 4


def test_shared_storage_is_counted_once() -> None:
    x = torch.randn(16, requires_grad=True)
    # x * x saves x twice (one storage); exp saves its output.
    assert saved_tensor_bytes(lambda: (x * x).exp()) == 2 * 16 * 4


def test_no_grad_saves_nothing_and_opaque_modules_count_only_their_input() -> None:
    pau = PAU(backend="reference")
    x = torch.randn(10, 3, requires_grad=True)
    with torch.no_grad():
        assert saved_tensor_bytes(lambda: pau(x)) == 0
    inner = saved_tensor_bytes(lambda: pau(x), exclude=pau.parameters())
    assert inner > 30 * 4  # the pure-PyTorch PAU keeps several intermediates of x's size
    assert saved_tensor_bytes(lambda: pau(x), exclude=pau.parameters(), opaque_modules=[pau]) == 30 * 4
