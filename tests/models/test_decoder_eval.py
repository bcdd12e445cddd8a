"""The decoder's eval-mode fast path: conditional batch norm as one affine pass equals BN then gamma/beta."""
from __future__ import annotations

import pytest
import torch

from oss_net.models import Encoding, build_model, demo_config
from oss_net.models.decoder import ConditionalBatchNorm


def two_pass(cbn: ConditionalBatchNorm, h: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """CBN written out as batch norm with the running statistics, then gamma(z) * . + beta(z). [B, N, W]"""
    batch, points, width = h.shape
    flat = h.reshape(batch * points, 1, width) if cbn.scalar else h.reshape(batch * points, width)
    normalized = torch.nn.functional.batch_norm(flat, cbn.norm.running_mean, cbn.norm.running_var, eps=cbn.norm.eps)
    return cbn.gamma(z).unsqueeze(1) * normalized.view(batch, points, width) + cbn.beta(z).unsqueeze(1)


def randomise(module: torch.nn.Module, generator: torch.Generator) -> None:
    """Non-trivial running statistics and gamma/beta maps in every CBN of `module`."""
    for cbn in module.modules():
        if isinstance(cbn, ConditionalBatchNorm):
            cbn.norm.running_mean.normal_(generator=generator).mul_(2)
            cbn.norm.running_var.uniform_(0.2, 3.0, generator=generator)
            for linear in (cbn.gamma, cbn.beta):
                linear.weight.data.normal_(generator=generator).mul_(0.3)
                linear.bias.data.normal_(generator=generator)


@pytest.mark.parametrize("normalization", ["scalar", "per_feature"])
@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
def test_eval_cbn_equals_batch_norm_then_gamma_beta(normalization, dtype, tolerance):
    generator = torch.Generator().manual_seed(0)
    cbn = ConditionalBatchNorm(features=6, latent_size=5, normalization=normalization).to(dtype)
    randomise(cbn, generator)
    cbn.eval()
    h = (torch.randn(2, 7, 6, generator=generator) * 3 + 1).to(dtype)  # [B, N, W]
    z = torch.randn(2, 5, generator=generator).to(dtype)  # [B, L]
    out = cbn(h, z)
    assert out.dtype == dtype
    torch.testing.assert_close(out, two_pass(cbn, h, z), rtol=tolerance, atol=tolerance)


def test_eval_decoder_output_equals_the_two_pass_cbn(monkeypatch):
    """A whole decoder (demo C, batch of two volumes) in eval mode gives what BN-then-affine gives."""
    generator = torch.Generator().manual_seed(1)
    model = build_model(demo_config("C")).eval()
    randomise(model, generator)
    config = model.config
    coords = torch.rand(2, 50, 3, generator=generator) * (torch.tensor(config.volume_shape) - 1)  # [B, N, 3]
    latents = torch.randn(2, config.number_of_latents, config.latent_size, generator=generator)
    patches = torch.rand(2, 50, config.patch_channels, 7, 7, 7, generator=generator)
    with torch.no_grad():
        fast = model.decode(coords, Encoding(latents, None), patches, logits=True)
        monkeypatch.setattr(ConditionalBatchNorm, "forward", two_pass)
        reference = model.decode(coords, Encoding(latents, None), patches, logits=True)
    assert fast.shape == (2, 50, 1)
    torch.testing.assert_close(fast, reference, rtol=1e-4, atol=1e-4)


def test_train_mode_still_normalises_with_the_batch_statistics():
    cbn = ConditionalBatchNorm(features=4, latent_size=3).train()
    cbn.norm.running_mean.fill_(100.0)  # would dominate the output if the running statistics were used
    h = torch.randn(2, 9, 4)
    out = cbn(h, torch.zeros(2, 3))
    torch.testing.assert_close(out, (h - h.mean()) / torch.sqrt(h.var(unbiased=False) + 1e-5))
