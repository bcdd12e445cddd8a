"""oss_net.precision: the autocast modes and the one context manager training and inference share."""
from __future__ import annotations

import pytest
import torch

from oss_net.precision import AMP_MODES, autocast, autocast_dtype


def test_modes_and_their_dtypes():
    assert AMP_MODES == ("off", "bf16", "fp16")
    assert [autocast_dtype(mode) for mode in AMP_MODES] == [None, torch.bfloat16, torch.float16]
    with pytest.raises(ValueError, match="unknown amp mode 'fp8'; expected one of off, bf16, fp16"):
        autocast_dtype("fp8")


@pytest.mark.parametrize(("mode", "dtype"), [("off", torch.float32), ("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_autocast_sets_the_matmul_dtype_on_the_cpu(mode, dtype):
    a, b = torch.ones(4, 4), torch.ones(4, 4)
    with autocast(mode, "cpu"):
        product = a @ b
    assert product.dtype == dtype and torch.equal(product.float(), torch.full((4, 4), 4.0))
    assert (a @ b).dtype == torch.float32  # the context ends with the block
