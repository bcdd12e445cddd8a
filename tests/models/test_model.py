"""OSSNet on the CPU at demo size: CBN at init, gradients, chunking, inputs, coordinates, classes."""
from __future__ import annotations

import math

import pytest
import torch

from oss_net.models import Encoding, ModelInputError, OSSNet, OSSNetConfig, build_model, demo_config
from oss_net.models.decoder import ConditionalBatchNorm, FourierFeatures

POINTS = 12


def _tiny(name: str, **overrides: object) -> OSSNetConfig:
    """demo_config shrunk further for CPU-heavy tests: 32^3 grid, latent 2x2x2, decoder width 32."""
    return demo_config(name, **{"volume_shape": (32, 32, 32), "decoder_width": 32, **overrides})


def _batch(model: OSSNet, batch: int = 2, points: int = POINTS, seed: int = 0) -> dict[str, torch.Tensor | None]:
    config = model.config
    generator = torch.Generator().manual_seed(seed)
    extent = torch.tensor(config.volume_shape) - 1
    return {
        "volume": torch.randn(batch, config.in_channels, *config.volume_shape, generator=generator),
        "coords": (torch.rand(batch, points, 3, generator=generator) * extent).round(),
        "patches": torch.randn(batch, points, config.patch_channels, 7, 7, 7, generator=generator) if config.patches else None,
    }


@pytest.mark.parametrize("normalization", ["scalar", "per_feature"])
def test_cbn_is_the_plain_normalisation_at_init(normalization: str) -> None:
    cbn = ConditionalBatchNorm(features=6, latent_size=5, normalization=normalization).train()
    h = torch.randn(3, 4, 6) * 3 + 1  # [B, N, W]
    z = torch.randn(3, 5)
    if normalization == "scalar":
        expected = (h - h.mean()) / torch.sqrt(h.var(unbiased=False) + 1e-5)
    else:
        flat = h.reshape(-1, 6)
        expected = ((flat - flat.mean(0)) / torch.sqrt(flat.var(0, unbiased=False) + 1e-5)).view(3, 4, 6)
    torch.testing.assert_close(cbn(h, z), expected)
    assert torch.equal(cbn.gamma.weight, torch.zeros(6, 5)) and torch.equal(cbn.gamma.bias, torch.ones(6))
    assert torch.equal(cbn.beta.weight, torch.zeros(6, 5)) and torch.equal(cbn.beta.bias, torch.zeros(6))
    assert tuple(cbn.norm.running_mean.shape) == ((1,) if normalization == "scalar" else (6,))


@pytest.mark.parametrize("name, size", [("C", "demo"), ("D2", "tiny"), ("E1", "tiny"), ("O-Net", "tiny")])
def test_forward_backward_gives_finite_gradients_for_every_parameter(name: str, size: str) -> None:
    torch.manual_seed(0)
    model = build_model(demo_config(name) if size == "demo" else _tiny(name)).train()
    data = _batch(model)
    occupancy, segmentation = model(data["volume"], data["coords"], data["patches"])
    assert occupancy.shape == (2, POINTS, 1) and bool(((occupancy > 0) & (occupancy < 1)).all())
    if model.config.segmentation_head:
        assert segmentation.shape == (2, 1, *model.config.encoder_output_shape)
    else:
        assert segmentation is None
    loss = torch.nn.functional.binary_cross_entropy(occupancy, torch.ones_like(occupancy))
    if segmentation is not None:
        loss = loss + 0.1 * segmentation.mean()
    loss.backward()
    for parameter_name, parameter in model.named_parameters():
        assert parameter.grad is not None, parameter_name
        assert torch.isfinite(parameter.grad).all(), parameter_name
    # Every parameter, the segmentation head included, reaches the loss, except the final mapping's
    # conv bias: BatchNorm right after it removes any constant shift, so its gradient is 0 analytically.
    for parameter_name, parameter in model.named_parameters():
        if parameter_name == "encoder.final.0.bias":
            assert float(parameter.grad.abs().max()) < 1e-5
        else:
            assert float(parameter.grad.abs().sum()) > 0, parameter_name


def test_forward_equals_encode_then_decode() -> None:
    torch.manual_seed(2)
    model = build_model(_tiny("A")).eval()
    data = _batch(model)
    with torch.no_grad():
        occupancy, _ = model(data["volume"], data["coords"], data["patches"])
        encoding = model.encode(data["volume"])
        assert torch.equal(occupancy, model.decode(data["coords"], encoding, data["patches"]))
        logits = model.decode(data["coords"], encoding, data["patches"], logits=True)
    torch.testing.assert_close(torch.sigmoid(logits), occupancy)


def test_coordinates_are_normalised_to_minus_one_one() -> None:
    model = build_model(demo_config("A"))
    corners = torch.tensor([[[0.0, 0.0, 0.0], [63.0, 63.0, 39.0], [31.5, 0.0, 19.5]]])
    expected = torch.tensor([[[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0], [0.0, -1.0, 0.0]]])
    torch.testing.assert_close(model.normalize_coordinates(corners), expected)
    raw = build_model(demo_config("A", raw_coordinates=True))
    assert torch.equal(raw.normalize_coordinates(corners), corners)


def test_fourier_features_layout() -> None:
    torch.manual_seed(3)
    fourier = FourierFeatures()
    assert tuple(fourier.frequencies.shape) == (1, 3, 16) and "frequencies" in fourier.state_dict()
    assert not any(True for _ in fourier.parameters())
    points = torch.rand(2, 4, 3) * 2 - 1
    features = fourier(points)  # [2, 4, 35]
    projected = 2 * math.pi * points @ fourier.frequencies[0]
    torch.testing.assert_close(features[..., :16], torch.cos(projected))
    torch.testing.assert_close(features[..., 16:32], torch.sin(projected))
    assert torch.equal(features[..., 32:], points)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = fourier(points)
    assert mixed.dtype == torch.float32
    torch.testing.assert_close(mixed, features)


def test_multi_class_output_is_a_softmax() -> None:
    model = build_model(_tiny("O-Net", number_of_classes=3)).eval()
    data = _batch(model, batch=1)
    with torch.no_grad():
        probabilities, _ = model(data["volume"], data["coords"])
    assert probabilities.shape == (1, POINTS, 3)
    torch.testing.assert_close(probabilities.sum(-1), torch.ones(1, POINTS))


def test_wrong_inputs_raise_clear_errors() -> None:
    model = build_model(demo_config("C"))
    data = _batch(model, batch=1)
    with pytest.raises(ModelInputError, match=r"full \(brats\) expects a volume \[B, 4, 64, 64, 40\] on the model grid, got \[1, 4, 32, 32, 20\]"):
        model.encode(torch.zeros(1, 4, 32, 32, 20))
    latents = Encoding(torch.zeros(1, 6, 32), None)
    with pytest.raises(ModelInputError, match=r"full \(brats\) needs patches \[1, 12, 4, 7, 7, 7\], got none"):
        model.decode(data["coords"], latents)
    with pytest.raises(ModelInputError, match=r"latents must be \[1, 6, 32\] for coords \[1, 12, 3\], got \[1, 1, 32\]"):
        model.decode(data["coords"], Encoding(torch.zeros(1, 1, 32), None), data["patches"])
    with pytest.raises(ModelInputError, match=r"coords must be \[B, N, 3\], got \[12, 3\]"):
        model.decode(data["coords"][0], latents, data["patches"])
    onet = build_model(demo_config("O-Net"))
    with pytest.raises(ModelInputError, match="uses no patches, but patches were given"):
        onet.decode(data["coords"], Encoding(torch.zeros(1, 1, 32), None), data["patches"])


def test_patch_mapping_gemm_equals_conv3d_reference():
    """The Toeplitz GEMM must be the same function as the two 7^3 Conv3d layers it replaces."""
    from oss_net.models.decoder import PatchMapping

    torch.manual_seed(0)
    mapping = PatchMapping(patch_channels=8).double()
    patches = torch.randn(2, 5, 8, 7, 7, 7, dtype=torch.float64)
    x = patches.reshape(10, 8, 7, 7, 7)
    expected = mapping.act2(mapping.conv2(mapping.act1(mapping.conv1(x)))).reshape(2, 5, 343)
    torch.testing.assert_close(mapping(patches), expected, rtol=1e-10, atol=1e-10)
