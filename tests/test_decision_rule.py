"""One decision rule per label mode (`oss_net.labels.DecisionRule`), used by the lattice, the label map and the
meshes, and the prior seed that keeps every class."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from oss_net.inference import PredictOptions, Predictor
from oss_net.inference.lattice import lattice_indices, lattice_shape, seed_from_segmentation
from oss_net.labels import DecisionRule, LabelScheme, config_with_label_mode
from oss_net.meshing import extract_mesh
from oss_net.models import Encoding, OSSNetConfig, demo_config

ORGANS = {"liver": 1, "kidney": 2, "spleen": 3, "pancreas": 4}
# (centre, radius) on the 64×64×40 demo grid: a large liver, a spleen, a kidney and a small pancreas
BALLS = (((22.0, 24.0, 20.0), 13.3), ((46.0, 44.0, 14.0), 7.2), ((46.0, 20.0, 22.0), 8.6), ((30.0, 47.0, 26.0), 5.6))
MAX_LOGIT = 1.2  # softmax over 5 outputs: the winner's probability stays below e^1.2 / (e^1.2 + 4) = 0.45


class FieldOracle(nn.Module):
    """A K-class model whose decoder reads a fixed dense field [outputs, *volume_shape] and whose segmentation head
    says where each class wins (or is given outright)."""

    kind = "test_field_oracle"

    def __init__(self, config: OSSNetConfig, field: torch.Tensor, segmentation: torch.Tensor | None = None) -> None:
        super().__init__()
        self.config = config
        self.field = field
        self.anchor = nn.Parameter(torch.zeros(()))  # the predictor reads the device from the parameters
        if segmentation is None:
            winner = field.argmax(dim=0)  # [*S]
            wins = torch.stack([winner == k for k in range(1, len(field))]).float()  # [K, *S]
            segmentation = F.adaptive_max_pool3d(wins[None], config.encoder_output_shape)
        self.segmentation = segmentation  # [1, K, *encoder_output_shape]
        self.decoded = 0

    def encode(self, volume: torch.Tensor) -> Encoding:
        latents = volume.new_zeros(1, self.config.number_of_latents, self.config.latent_size)
        return Encoding(latents, self.segmentation)

    def fold(self, encoding: Encoding) -> Encoding:  # nothing to fold
        return encoding

    def decode(self, coords, encoding, patches=None, logits=False):  # [1, N, 3] -> [1, N, outputs]
        index = coords[0].round().long()
        self.decoded += len(index)
        return self.field[:, index[:, 0], index[:, 1], index[:, 2]].t()[None]


def organ_config() -> OSSNetConfig:
    return config_with_label_mode(demo_config("C"), "exclusive", ORGANS)


def unsure_organs(shape) -> torch.Tensor:
    """[5, *shape] a softmax over background + 4 organs in which no probability reaches 0.5."""
    grid = torch.stack(torch.meshgrid(*[torch.arange(s, dtype=torch.float32) for s in shape], indexing="ij"), dim=-1)
    inside = torch.stack([torch.sigmoid(2.0 * (radius - (grid - torch.tensor(centre)).norm(dim=-1)))
                          for centre, radius in BALLS])  # [4, *S]
    logits = torch.cat([1.0 - inside.amax(dim=0, keepdim=True), inside]) * MAX_LOGIT
    return torch.softmax(logits, dim=0)


def argmax_masks(field: torch.Tensor) -> np.ndarray:
    """bool [K, *S]: where each class (not the background) is the argmax of field [K + 1, *S]."""
    winner = field.argmax(dim=0)
    return torch.stack([winner == k for k in range(1, len(field))]).numpy()


@pytest.mark.parametrize("mode", ["standard", "prior"])
def test_classes_that_never_reach_one_half_are_refined_labelled_and_meshed_by_the_argmax(mode):
    config = organ_config()
    field = unsure_organs(config.volume_shape)
    assert field[1:].max() < 0.5  # the old rule (each class above 0.5) finds nothing here
    model = FieldOracle(config, field)
    prediction = Predictor(model, PredictOptions(mode=mode)).predict(torch.zeros(1, *config.volume_shape))
    scheme = LabelScheme("exclusive", config.class_labels)
    occupancy = prediction.occupancy.numpy()  # [5, *S]
    truth = argmax_masks(field)
    assert all(mask.any() for mask in truth)
    label_map = scheme.label_map(occupancy, 0.5)
    assert np.array_equal(scheme.label_map_masks(label_map), truth)  # voxel for voxel the dense argmax
    assert model.decoded < 0.5 * field[0].numel()  # refined: a shell around every organ, not the whole grid
    fields, level = scheme.rule(0.5).surface(scheme.class_probabilities(occupancy))
    for index, name in enumerate(ORGANS):
        assert np.array_equal(fields[index] > level, truth[index]), name
        mesh = extract_mesh(fields[index], None, level=level, min_component_voxels=0, edge_mm=None)
        assert len(mesh.faces) > 0 and mesh.is_watertight, name


def test_per_class_meshes_are_watertight_and_hold_their_class_volume():
    config = organ_config()
    field = unsure_organs(config.volume_shape)
    rule = LabelScheme("exclusive", config.class_labels).rule(0.5)
    fields, level = rule.surface(field[1:].numpy())
    spacing = np.diag([0.8, 0.8, 2.5, 1.0])  # anisotropic mm, as a CT
    for index, name in enumerate(ORGANS):
        voxels = int(argmax_masks(field)[index].sum())
        mesh = extract_mesh(fields[index], spacing, level=level, min_component_voxels=0)
        assert mesh.is_watertight, name
        assert mesh.volume == pytest.approx(voxels * 0.8 * 0.8 * 2.5, rel=0.05), name


def test_the_exclusive_surface_sits_where_a_class_ties_the_best_other_one():
    probabilities = np.array([[0.4, 0.375, 0.2, 0.3], [0.3, 0.375, 0.2, 0.1]], dtype=np.float32)  # [K=2, 4 voxels]
    rule = DecisionRule(exclusive=True)
    # backgrounds 0.3, 0.25, 0.6, 0.6: class 1 wins voxel 0, class 1 ties class 2 at voxel 1 (the lower one wins)
    assert rule.winners(probabilities).tolist() == [1, 1, 0, 0]
    fields, level = rule.surface(probabilities)
    assert fields[0, 0] == pytest.approx(0.55) and fields[1, 2] == pytest.approx((1 + 0.2 - 0.6) / 2)
    assert np.array_equal(fields > level, rule.decide(probabilities))  # the tie goes where the argmax went
    thresholds = DecisionRule(threshold=0.25)
    assert thresholds.decide(probabilities).tolist() == [[True, True, False, True], [True, True, False, False]]
    assert thresholds.winners(probabilities).tolist() == [2, 2, 0, 1]  # nested regions: the last one above paints
    assert thresholds.surface(probabilities)[1] == 0.25


def test_the_prior_seed_keeps_a_class_that_covers_a_single_coarse_cell():
    config = organ_config()  # encoder cells of 16 × 16 × 20 voxels
    shape, cells = config.volume_shape, config.encoder_output_shape
    segmentation = torch.zeros(1, 4, *cells)
    segmentation[0, 0, :2, :2, :] = 0.9  # the liver: a block of cells
    segmentation[0, 3, 2, 2, 1] = 0.52  # the pancreas: in one cell only (voxels [32, 48) × [32, 48) × [20, 40)), unsure
    paper = seed_from_segmentation(segmentation[0], shape, 4)
    kept = seed_from_segmentation(segmentation[0], shape, 4, keep_classes=True)
    assert kept.shape == lattice_shape(shape, 4)
    axes = [lattice_indices(n, 4) for n in shape]
    in_cell = [(a >= lo) & (a < hi) for a, (lo, hi) in zip(axes, ((32, 48), (32, 48), (20, 40)))]
    cell = in_cell[0][:, None, None] & in_cell[1][None, :, None] & in_cell[2][None, None, :]
    assert not paper[cell].any()  # interpolation dilutes the single cell below the threshold everywhere
    assert kept[cell].all() and torch.equal(kept | paper, kept)  # the paper's seed, and more
    field = torch.zeros(5, *shape)
    field[0] = 1.0
    field[0, 37:43, 36:42, 26:32], field[4, 37:43, 36:42, 26:32] = 0.3, 0.7  # a small pancreas inside that cell
    prediction = Predictor(FieldOracle(config, field, segmentation), PredictOptions(mode="prior")).predict(torch.zeros(1, *shape))
    pancreas = prediction.occupancy.numpy().argmax(axis=0) == 4
    assert pancreas.sum() == 216 and np.array_equal(pancreas, (field.argmax(dim=0) == 4).numpy())


def test_a_cell_narrower_than_the_stride_seeds_its_nearest_lattice_point():
    segmentation = torch.zeros(1, 16, 16, 16)
    segmentation[0, 5, 5, 5] = 0.8  # cells of 2 voxels, lattice stride 4: voxels 10-11 hold no lattice point
    assert not seed_from_segmentation(segmentation, (32, 32, 32), 4).any()
    seed = seed_from_segmentation(segmentation, (32, 32, 32), 4, keep_classes=True)
    assert seed.sum() == 27 and seed[2:5, 2:5, 2:5].all()  # index 12 (3), nearest to the cell's centre 10.5, ± one
