"""Any resolution (issue 28): the decoder queried between voxel centres, with the patches interpolated there."""
from __future__ import annotations

import torch

from oss_net.data import PatchSource
from oss_net.models import build_model, demo_config


def _decoder_of(config, volume):
    """(model in eval mode, its encoding of `volume [1, C, *S]` with the decoder folded as the predictor folds it,
    the case's patch source)."""
    model = build_model(config).eval()
    with torch.no_grad():
        encoding = model.fold(model.encode(volume))
    return model, encoding, PatchSource(volume, large=config.large_patches)


def test_integer_queries_decode_byte_identically_as_float_or_int_alone_or_among_fractional_ones():
    torch.manual_seed(0)
    config = demo_config("D", "brats", volume_shape=(16, 16, 12), encoder_channels=((4, 8),), decoder_width=16)
    volume = torch.randn(1, config.in_channels, *config.volume_shape)
    model, encoding, source = _decoder_of(config, volume)
    lattice = torch.stack(torch.meshgrid(*[torch.arange(0, n, 3) for n in config.volume_shape], indexing="ij"), -1)
    integer = lattice.reshape(1, -1, 3)  # [1, N, 3] int64: today's lattice queries
    mixed = torch.cat([integer.float(), integer.float() + 0.37], dim=1)  # the same points, then fractional ones
    with torch.no_grad():
        today = model.decode(integer, encoding, source.gather(integer))
        as_float = model.decode(integer.float(), encoding, source.gather(integer.float()))
        among = torch.cat([model.decode(part, encoding, source.gather(part))  # two calls, as two refinement chunks
                           for part in mixed.split(integer.shape[1], dim=1)], dim=1)
    assert torch.equal(today, as_float) and torch.equal(today, among[:, :integer.shape[1]])
    assert not torch.equal(among[:, integer.shape[1]:], today)


def test_a_query_moving_across_a_voxel_boundary_changes_continuously():
    """Nearest-voxel patches would jump where the query passes half-way between voxel centres; interpolated ones do not."""
    torch.manual_seed(1)
    config = demo_config("C", "brats", volume_shape=(16, 16, 12), encoder_channels=((4, 8),), decoder_width=16)
    volume = torch.randn(1, config.in_channels, *config.volume_shape, dtype=torch.float64)
    model = build_model(config).double().eval()
    source = PatchSource(volume, large=config.large_patches)
    steps = torch.linspace(0, 1, 201, dtype=torch.float64)[:, None] * torch.tensor([1.0, 0.5, 0.25], dtype=torch.float64)
    path = (torch.tensor([7.0, 8.0, 5.0], dtype=torch.float64) + steps)[None]  # [1, 201, 3]: crosses 7.5 and 8.5
    with torch.no_grad():
        encoding = model.encode(volume)
        values = model.decode(path, encoding, source.gather(path))[0, :, 0]  # [201]
        nearest = model.decode(path, encoding, source.gather(path.round()))[0, :, 0]
    change = values.diff().abs()
    assert change.max() < 10 * change.median() and float(values.max() - values.min()) > 0
    jumps = nearest.diff().abs()
    assert jumps.max() > 10 * jumps.median()  # what the test tells apart
