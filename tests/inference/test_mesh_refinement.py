"""Mesh refinement through a real OSS-Net decoder (docs/reference.md §8.3): needs double backward through the PAU."""
from __future__ import annotations

import numpy as np
import torch
import trimesh

from oss_net.inference import PredictOptions, Predictor
from oss_net.meshing import refine_vertices
from oss_net.models import build_model, demo_config


def test_refinement_through_the_decoder_moves_vertices_and_stays_finite(brats_case):
    torch.manual_seed(0)
    model = build_model(demo_config("C", "brats"))
    decode = Predictor(model, PredictOptions(mode="standard")).point_decoder(brats_case.image)
    sphere = trimesh.creation.icosphere(subdivisions=1, radius=6.0)
    sphere.apply_translation([32.0, 32.0, 20.0])  # model-grid voxel coordinates, inside the 64×64×40 grid

    refined = refine_vertices(sphere, decode, steps=2)

    assert refined.vertices.shape == sphere.vertices.shape
    assert np.isfinite(refined.vertices).all()
    assert np.abs(refined.vertices - sphere.vertices).max() > 0
    np.testing.assert_array_equal(refined.faces, sphere.faces)


def test_decoder_has_a_second_derivative_in_the_points(brats_case):
    """The normal term differentiates -grad(occupancy); with create_graph it must reach the decoder weights."""
    torch.manual_seed(0)
    model = build_model(demo_config("C", "brats"))
    decode = Predictor(model, PredictOptions(mode="standard")).point_decoder(brats_case.image)
    points = torch.tensor([[30.5, 31.2, 19.7], [34.1, 28.3, 22.4]], requires_grad=True)
    (gradient,) = torch.autograd.grad(decode(points).sum(), points, create_graph=True)
    weight = model.decoder.output.weight
    (second,) = torch.autograd.grad(gradient.square().sum(), weight)
    assert torch.isfinite(second).all() and second.abs().sum() > 0
