"""A hand-built model for the inference tests: fast, deterministic, and it really segments.

`IntensityModel` thresholds the z-scored FLAIR (channel 0) at the centre of each query's patch,
which segments the synthetic tumours almost perfectly (Dice ≈ 1), and its "segmentation head" is
the same threshold max-pooled to the encoder output grid. It speaks the OSSNet interface (config,
encode, fold, decode, checkpoints through the model registry), so the real Predictor, patch gathering,
checkpoint loading and output writing are exercised without training anything.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from oss_net.models import Encoding, OSSNetConfig, demo_config, register_model, save_model

KIND = "test_intensity"
FLAIR_THRESHOLD = 2.0  # z-scored FLAIR: tumour > 2.2, brain < 1.8 in the synthetic cases


class IntensityModel(nn.Module):
    kind = KIND

    def __init__(self, config: OSSNetConfig) -> None:
        super().__init__()
        self.config = config
        self.threshold = nn.Parameter(torch.tensor(FLAIR_THRESHOLD))
        self.sharpness = 4.0
        self.decoded_points = 0

    def encode(self, volume: torch.Tensor) -> Encoding:  # [B, C, *volume_shape]
        inside = torch.sigmoid(self.sharpness * (volume[:, :1] - self.threshold))  # [B, 1, D, H, W]
        segmentation = F.adaptive_max_pool3d(inside, self.config.encoder_output_shape)
        latents = volume.new_zeros(volume.shape[0], self.config.number_of_latents, self.config.latent_size)
        return Encoding(latents, segmentation if self.config.segmentation_head else None)

    def fold(self, encoding: Encoding) -> Encoding:  # nothing to fold
        return encoding

    def decode(self, coords, encoding, patches=None, logits=False):  # [B, N, 3] -> [B, N, 1]
        self.decoded_points += coords.shape[0] * coords.shape[1]
        centre = patches[:, :, 0, 3, 3, 3]  # FLAIR at the query voxel [B, N]
        return torch.sigmoid(self.sharpness * (centre - self.threshold))[..., None]


register_model(KIND, OSSNetConfig, IntensityModel)


def intensity_model(name: str = "C", dataset: str = "brats", **overrides) -> IntensityModel:
    return IntensityModel(demo_config(name, dataset, **overrides))


@pytest.fixture
def brats_checkpoint(tmp_path) -> Path:
    """Checkpoint of the intensity model with configuration C (segmentation head) on the 64×64×40 grid."""
    path = tmp_path / "model_C.pt"
    save_model(path, intensity_model("C"))
    return path


@pytest.fixture
def lits_checkpoint(tmp_path) -> Path:
    """Checkpoint for LiTS (1 channel, resampled to a 32³ grid)."""
    path = tmp_path / "model_lits.pt"
    save_model(path, intensity_model("C", "lits", volume_shape=(32, 32, 32)))
    return path


@pytest.fixture(scope="module")
def brats_case(synthetic_brats_root):
    """The first validation case of the synthetic BraTS set, loaded on the demo grid."""
    from oss_net.data import discover, load_case

    files = discover("brats", synthetic_brats_root, "val")[0]
    return load_case(files, intensity_model("C").config, with_border=False)
