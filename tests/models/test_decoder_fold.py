"""The folded eval-mode decoder (CBNs and latent 0 folded into the GEMMs) computes what the decoder module computes."""
from __future__ import annotations

import pytest
import torch

from oss_net.models import Encoding, build_model, demo_config
from tests.models.test_decoder_eval import randomise

# (configuration, overrides): skip encoder K = 6 (C), plain K = 1 (A), Fourier features with large patches (D2),
# no patches (O-Net), per-feature CBN with a three-way softmax, and a first block whose shortcut is the identity
CASES = [
    ("C", {}),
    ("A", {}),
    ("D2", {}),
    ("vanilla_o_net", {}),
    ("C", {"cbn_normalization": "per_feature", "number_of_classes": 3}),  # a softmax over three outputs
    ("A", {"decoder_width": 378}),  # 3 + 343 + 32 input features: the first shortcut is the identity
]


def model_and_inputs(name: str, overrides: dict, dtype: torch.dtype = torch.float32, points: int = 40):
    """A demo-size model in eval mode with non-trivial CBNs, and coords [2, N, 3], latents [2, K, L], patches | None."""
    generator = torch.Generator().manual_seed(3)
    model = build_model(demo_config(name, **overrides)).to(dtype).eval()
    randomise(model, generator)
    config = model.config
    coords = torch.rand(2, points, 3, generator=generator, dtype=dtype) * (torch.tensor(config.volume_shape) - 1)
    latents = torch.randn(2, config.number_of_latents, config.latent_size, generator=generator, dtype=dtype)
    patches = (
        torch.rand(2, points, config.patch_channels, 7, 7, 7, generator=generator, dtype=dtype) if config.patches else None
    )
    return model, coords, latents, patches


@pytest.mark.parametrize("name, overrides", CASES)
@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 1e-4), (torch.float64, 1e-10)])
def test_folded_decoder_equals_the_module(name, overrides, dtype, tolerance):
    model, coords, latents, patches = model_and_inputs(name, overrides, dtype)
    with torch.no_grad():
        reference = model.decode(coords, Encoding(latents, None), patches, logits=True)
        folded = model.decode(coords, Encoding(latents, None, model.decoder.fold(latents)), patches, logits=True)
        probabilities = model.decode(coords, Encoding(latents, None, model.decoder.fold(latents)), patches)
        expected_probabilities = model.decode(coords, Encoding(latents, None), patches)
    assert folded.dtype == dtype and folded.shape == reference.shape == (2, 40, model.config.number_of_classes)
    scale = reference.abs().max().clamp(min=1)
    torch.testing.assert_close(folded / scale, reference / scale, rtol=tolerance, atol=tolerance)
    torch.testing.assert_close(probabilities, expected_probabilities, rtol=tolerance, atol=tolerance)


def test_folded_decoder_splits_no_call():
    """The folded decoder runs all the points of a call in one pass (the refinement loop sizes the calls)."""
    model, coords, latents, patches = model_and_inputs("C", {}, points=50)
    passes = []
    with torch.no_grad():
        folded = model.decoder.fold(latents)
        folded.patch_acts[0].register_forward_hook(lambda module, inputs, output: passes.append(len(output)))
        whole = folded(coords / 10, patches)
        halves = torch.cat([folded(coords[:, :25] / 10, patches[:, :25]), folded(coords[:, 25:] / 10, patches[:, 25:])], 1)
    assert passes == [2 * 50, 2 * 25, 2 * 25]  # rows of the first PAU: 2 volumes x points per pass
    torch.testing.assert_close(halves, whole, rtol=1e-6, atol=1e-7)


def test_encode_never_folds_and_fold_is_asked_for():
    """Folding is the predictor's explicit step: encode gives latents only, in any mode, with or without autograd;
    `fold` attaches the decoder folded for those latents (eval mode only)."""
    model = build_model(demo_config("C"))
    volume = torch.randn(1, 4, *model.config.volume_shape)
    with torch.no_grad():
        assert model.train().encode(volume).decoder is None
        encoding = model.eval().encode(volume)
        assert encoding.decoder is None  # eval mode without autograd: still no fold
        folded = model.fold(encoding)
        assert folded.decoder is not None and folded.decoder.decoder is model.decoder
        assert torch.equal(folded.latents, encoding.latents)
    assert model.encode(volume).decoder is None  # autograd on
    with pytest.raises(RuntimeError, match="eval mode"):
        model.train().fold(encoding)


def test_decode_uses_the_weights_of_now_unless_folded():
    """A plain encoding decodes with the decoder's current weights; a folded one with the operands folded at `fold`."""
    model, coords, latents, patches = model_and_inputs("A", {})
    with torch.no_grad():
        plain, folded = Encoding(latents, None), model.fold(Encoding(latents, None))
        before = model.decode(coords, plain, patches)
        model.decoder.blocks[0].fc2.weight.mul_(-1.0)  # the weights change after encoding (as a training step would)
        after = model.decode(coords, plain, patches)
        torch.testing.assert_close(model.decode(coords, folded, patches), before, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(after, before)


def test_decode_with_autograd_uses_the_module_and_its_gradients():
    """A folded encoding decoded with autograd on (mesh refinement) still differentiates w.r.t. the points."""
    model, coords, latents, patches = model_and_inputs("A", {})
    with torch.no_grad():
        encoding = Encoding(latents, None, model.decoder.fold(latents))
    points = coords.clone().requires_grad_(True)
    out = model.decode(points, encoding, patches, logits=True)
    out.sum().backward()
    assert points.grad is not None and points.grad.abs().sum() > 0
    with torch.no_grad():
        torch.testing.assert_close(out.detach(), model.decode(coords, Encoding(latents, None), patches, logits=True))


def test_folded_decoder_under_bf16_autocast_matches_the_module():
    model, coords, latents, patches = model_and_inputs("C", {}, points=64)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        reference = model.decode(coords, Encoding(latents, None), patches)
        folded = model.decode(coords, Encoding(latents, None, model.decoder.fold(latents)), patches)
    assert folded.dtype == reference.dtype == torch.bfloat16
    torch.testing.assert_close(folded.float(), reference.float(), rtol=0, atol=0.05)


def test_fold_refuses_train_mode_and_other_batch_sizes():
    model, coords, latents, patches = model_and_inputs("A", {})
    folded = model.decoder.fold(latents)
    with pytest.raises(ValueError, match="2 volume"):
        folded(coords[:1], patches[:1])
    with pytest.raises(RuntimeError, match="eval mode"):
        model.train().decoder.fold(latents)


def test_an_encoding_decoded_by_another_model_does_not_use_the_first_models_fold():
    """Encodings may be shared between models of one encoder (the converter's tests do): each decodes with its own weights."""
    first, coords, latents, patches = model_and_inputs("A", {})
    second = build_model(demo_config("A")).eval()
    randomise(second, torch.Generator().manual_seed(9))
    with torch.no_grad():
        shared = Encoding(latents, None, first.decoder.fold(latents))
        expected = second.decode(coords, Encoding(latents, None), patches)
        torch.testing.assert_close(second.decode(coords, shared, patches), expected)
        torch.testing.assert_close(first.decode(coords, shared, patches), first.decode(coords, Encoding(latents, None), patches))
