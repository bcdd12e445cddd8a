"""Shape flow of docs/reference.md §2.4 at the paper's sizes, on the meta device (shapes only, nothing computed)."""
from __future__ import annotations

import pytest
import torch

from oss_net.models import Encoding, build_model, get_config

BLOCKS = {
    "brats": [(16, 64, 64, 40), (32, 32, 32, 20), (64, 16, 16, 10), (128, 8, 8, 5)],
    "lits": [(8, 128, 128, 128), (16, 64, 64, 64), (32, 32, 32, 32), (64, 16, 16, 16), (128, 8, 8, 8)],
}
OUTPUT = {"brats": (8, 8, 5), "lits": (8, 8, 8)}
HEAD_CHANNELS = {"brats": [8, 16, 32, 64], "lits": [4, 8, 16, 32, 64]}


@pytest.mark.parametrize("dataset", ["brats", "lits"])
@pytest.mark.parametrize("name", ["A", "full"])
def test_encoder_shape_flow(name: str, dataset: str) -> None:
    config = get_config(name, dataset)
    with torch.device("meta"):
        model = build_model(config)
    shapes: dict[str, list[tuple[int, ...]]] = {"input": [], "blocks": [], "heads": []}
    model.encoder.register_forward_pre_hook(lambda m, args: shapes["input"].append(tuple(args[0].shape)))
    for block in model.encoder.blocks:
        block.register_forward_hook(lambda m, args, out: shapes["blocks"].append(tuple(out.shape[1:])))
    for head in getattr(model.encoder, "heads", []):
        head.register_forward_hook(lambda m, args, out: shapes["heads"].append(tuple(out.shape[1:])))
    volume = torch.empty(2, config.in_channels, *config.volume_shape, device="meta")
    encoding = model.encode(volume)
    assert isinstance(encoding, Encoding)
    assert shapes["input"] == [(2, config.in_channels, *config.encoder_input_shape)]
    assert shapes["blocks"] == BLOCKS[dataset]
    latent_size = 320 if dataset == "brats" else 512
    if config.encoder == "skip":
        assert shapes["heads"] == [(c, *OUTPUT[dataset]) for c in HEAD_CHANNELS[dataset]]
        assert model.encoder.final[0].in_channels == sum(HEAD_CHANNELS[dataset])  # 120 / 124
        assert tuple(encoding.latents.shape) == (2, 6, latent_size)
        assert tuple(encoding.segmentation.shape) == (2, 1, *OUTPUT[dataset])
    else:
        assert tuple(encoding.latents.shape) == (2, 1, latent_size)
        assert encoding.segmentation is None


@pytest.mark.parametrize("name, width", [("O-Net", 323), ("B", 666), ("D2", 698), ("C", 666)])
def test_decoder_input_width_and_output_shape(name: str, width: int) -> None:
    config = get_config(name, "brats")
    with torch.device("meta"):
        model = build_model(config)
    first = model.decoder.blocks[0]
    assert first.fc1.in_features == first.shortcut.in_features == width
    assert all(block.fc1.in_features == config.decoder_width for block in model.decoder.blocks[1:])
    coords = torch.empty(2, 5, 3, device="meta")
    latents = torch.empty(2, config.number_of_latents, config.latent_size, device="meta")
    patches = torch.empty(2, 5, config.patch_channels, 7, 7, 7, device="meta") if config.patches else None
    assert tuple(model.decode(coords, Encoding(latents, None), patches).shape) == (2, 5, 1)
