"""Predictor: modes, the prior seed, chunking, and the errors a user can trigger."""
from __future__ import annotations

import json
import logging

import pytest
import torch

from oss_net.inference import InferenceError, PredictOptions, Predictor, seed_from_segmentation
from oss_net.inference.defaults import CHUNK_SIZE, CPU_CHUNK_SIZE
from oss_net.inference.predictor import default_chunk_size
from oss_net.metrics import dice

from .conftest import intensity_model


def test_both_modes_agree_and_prior_decodes_fewer_points(brats_case, caplog):
    model = intensity_model("C")
    with caplog.at_level(logging.INFO, logger="oss_net.inference"):
        prediction = Predictor(model, PredictOptions(mode="both")).predict_case(brats_case)
    standard, prior = prediction.runs["standard"], prediction.runs["prior"]
    assert prediction.mode == "prior" and prediction.disagreement == 0
    assert prior["points_evaluated"] < standard["points_evaluated"]
    assert model.decoded_points == standard["points_evaluated"] + prior["points_evaluated"]
    # the stats count decoder queries, and the first prior stage only the seeded lattice points
    assert standard["stages"][0]["points_evaluated"] == standard["stages"][0]["lattice_points"]
    assert prior["stages"][0]["points_evaluated"] < prior["stages"][0]["lattice_points"]
    assert dice(prediction.mask_model_grid, brats_case.label > 0) > 0.99
    # a shell, not the volume: far fewer than 5% of the voxels are decoded at full resolution
    assert prediction.points_evaluated < 0.05 * prediction.occupancy.numel()
    assert "disagree in 0 voxels" in caplog.text and "prior inference" in caplog.text


def test_chunk_size_and_stages_do_not_change_the_mask(brats_case):
    reference = Predictor(intensity_model("C"), PredictOptions(mode="prior")).predict_case(brats_case)
    small_chunks = Predictor(intensity_model("C"), PredictOptions(mode="prior", chunk_size=333, stages=(8, 4, 2, 1))).predict_case(brats_case)
    assert torch.equal(reference.mask_model_grid, small_chunks.mask_model_grid)
    assert reference.occupancy.shape == brats_case.image.shape[1:] and reference.occupancy.dtype == torch.float32


@pytest.mark.parametrize("compat, align_corners, last_index", [("ours", False, True), ("paper", True, False)])
def test_the_prior_seed_and_the_lattices_are_as_the_compat_mode_says(brats_case, compat, align_corners, last_index):
    model = intensity_model("C", compat=compat)
    prediction = Predictor(model, PredictOptions(mode="both", refinement="ours")).predict_case(brats_case)
    with torch.no_grad():
        segmentation = model.encode(torch.as_tensor(brats_case.image, dtype=torch.float32)[None]).segmentation[0]
    seeds = {(corners, last): seed_from_segmentation(segmentation, model.config.volume_shape, 4, align_corners=corners,
                                                     last_index=last) for corners in (False, True) for last in (False, True)}
    assert len({int(seed.sum()) for seed in seeds.values()}) == 4
    assert prediction.runs["prior"]["stages"][0]["points_evaluated"] == int(seeds[align_corners, last_index].sum())
    lattice = prediction.runs["standard"]["stages"][0]  # the demo grid 64 x 64 x 40: the original's 16 x 16 x 10
    assert (lattice["lattice_points"], lattice["points_evaluated"]) == ((16 * 16 * 10,) * 2 if compat == "paper" else (17 * 17 * 11,) * 2)


def test_the_default_chunk_follows_the_device():
    assert Predictor(intensity_model("C")).chunk_size == CPU_CHUNK_SIZE == 2**10
    assert Predictor(intensity_model("C"), PredictOptions(chunk_size=333)).chunk_size == 333
    assert default_chunk_size(torch.device("cuda")) == CHUNK_SIZE == 2**14


def test_prior_without_segmentation_head_is_an_error_and_auto_falls_back(caplog):
    model = intensity_model("A")  # plain encoder, no segmentation head
    for mode in ("prior", "both"):
        with pytest.raises(InferenceError, match=f"mode '{mode}' needs the encoder's segmentation head.*'A'"):
            Predictor(model, PredictOptions(mode=mode))
    with caplog.at_level(logging.INFO, logger="oss_net.inference"):
        predictor = Predictor(model, PredictOptions(mode="auto"))
    assert predictor.mode == "standard"
    assert "no segmentation head: mode auto falls back to standard" in caplog.text
    assert Predictor(intensity_model("C"), PredictOptions(mode="auto")).mode == "prior"


@pytest.mark.parametrize(
    "options, message",
    [({"mode": "fast"}, "mode 'fast' is not one of auto, standard, prior, both"), ({"amp": "fp8"}, "amp 'fp8' is not one of"),
     ({"chunk_size": 0}, "chunk_size must be >= 1"), ({"stages": (4, 3)}, "dividing the previous")],
)
def test_bad_options(options, message):
    with pytest.raises(InferenceError, match=message):
        Predictor(intensity_model("C"), PredictOptions(**options))


def test_point_decoder_is_differentiable(brats_case):
    decode = Predictor(intensity_model("C")).point_decoder(brats_case.image)
    points = torch.tensor([[32.0, 30.0, 20.0], [5.0, 5.0, 5.0]], requires_grad=True)
    probabilities = decode(points)
    assert probabilities.shape == (2,)
    assert probabilities.requires_grad


@pytest.mark.parametrize("name", ["C", "D"])  # small patches; large patches (with the skip encoder)
def test_patches_from_the_case_source_equal_gathering_per_chunk(name):
    """The predictor pads (and pools) the volume once per case; the grid is bit for bit the one of
    re-gathering every chunk's patches from the volume, as inference did before."""
    from oss_net.data import gather_patches
    from oss_net.inference.lattice import OccupancyLattice, refine_lattice
    from oss_net.models import build_model, demo_config

    torch.manual_seed(0)
    config = demo_config(name, "brats", volume_shape=(20, 18, 16), encoder_channels=((4, 8),), decoder_width=16)
    model = build_model(config).eval()
    volume = torch.randn(1, config.in_channels, *config.volume_shape)
    prediction = Predictor(model, PredictOptions(mode="standard", chunk_size=500)).predict(volume[0])

    with torch.inference_mode():
        encoding = model.fold(model.encode(volume))  # as the predictor does

        def decode(coords):  # [N, 3] -> [N, 1], patches re-gathered from the whole volume for this chunk
            patches = gather_patches(volume, coords[None], large=config.large_patches)
            return model.decode(coords[None], encoding, patches)[0]

        lattice = OccupancyLattice(config.volume_shape)
        stats = refine_lattice(lattice, decode, chunk_size=500)
    assert config.large_patches == (name == "D")
    assert prediction.points_evaluated == stats.points_evaluated
    assert torch.equal(prediction.occupancy, lattice.to_dense()[0])


def test_refinement_follows_the_configuration_mode_unless_given():
    """Paper mode reproduces the original's refinement rule; ours stays the default elsewhere."""
    assert Predictor(intensity_model("C")).refinement == "ours"
    assert Predictor(intensity_model("C", compat="paper")).refinement == "original"
    assert Predictor(intensity_model("C", compat="paper"), PredictOptions(refinement="ours")).refinement == "ours"
    assert Predictor(intensity_model("C"), PredictOptions(refinement="original")).refinement == "original"


@pytest.mark.parametrize(
    "options, message",
    [({"refinement": "mise"}, "refinement 'mise' is not one of ours, original"),
     ({"refinement": "original", "recheck_boundary": True}, "recheck_boundary widens the window of refinement 'ours'")],
)
def test_bad_refinement_options(options, message):
    with pytest.raises(InferenceError, match=message):
        Predictor(intensity_model("C"), PredictOptions(**options))


def test_original_refinement_segments_the_case_and_counts_every_query(brats_case, caplog):
    ours = Predictor(intensity_model("C"), PredictOptions(mode="prior")).predict_case(brats_case)
    model = intensity_model("C")
    with caplog.at_level(logging.INFO, logger="oss_net.inference"):
        original = Predictor(model, PredictOptions(mode="both", refinement="original")).predict_case(brats_case)
    assert "prior inference (original refinement)" in caplog.text
    assert model.decoded_points == sum(run["points_evaluated"] for run in original.runs.values())
    assert original.runs["standard"]["points_evaluated"] > original.runs["prior"]["points_evaluated"]
    assert dice(original.mask_model_grid, brats_case.label > 0) > 0.99
    assert dice(original.mask_model_grid, ours.mask_model_grid) > 0.99


def test_cli_refinement_defaults_to_the_checkpoint_mode(synthetic_brats_root, tmp_path):
    from oss_net.inference import InferenceSettings
    from oss_net.inference.cli import build_parser, main, settings_from_args
    from oss_net.models import save_model

    checkpoint = tmp_path / "paper.pt"
    save_model(checkpoint, intensity_model("C", compat="paper"))
    required = ["--load_model", str(checkpoint), "--dataset_path", str(synthetic_brats_root)]
    out = tmp_path / "out"
    assert main([*required, "--output_dir", str(out), "--no_mesh", "--no_overlay"]) == 0
    saved = json.loads((out / "inference_settings.json").read_text())
    assert saved["refinement"] is None and saved["resolved_refinement"] == "original"
    assert saved["chunk_size"] is None and saved["resolved_chunk_size"] == CPU_CHUNK_SIZE  # the CPU's default
    assert settings_from_args(build_parser().parse_args([*required, "--refinement", "ours"])).refinement == "ours"
    with pytest.raises(InferenceError, match="refinement 'mise' is not one of ours, original"):
        InferenceSettings(load_model=str(checkpoint), dataset_path=str(synthetic_brats_root), refinement="mise")


def test_the_folded_decoder_predicts_what_the_decoder_module_predicts(monkeypatch):
    """Predictor.predict decodes through the per-case FoldedDecoder it asks the model for (`OSSNet.fold`); the grid
    equals the one the unfolded module gives (float rounding apart), on a small real OSSNet with non-trivial batch norms."""
    from oss_net.models import build_model, demo_config
    from oss_net.models.decoder import OccupancyDecoder
    from tests.models.test_decoder_eval import randomise

    model = build_model(demo_config("C", volume_shape=(16, 16, 12), encoder_channels=((4, 8),), decoder_width=32))
    randomise(model, torch.Generator().manual_seed(5))
    volume = torch.randn(4, 16, 16, 12, generator=torch.Generator().manual_seed(6))
    folds = []
    monkeypatch.setattr(OccupancyDecoder, "fold", lambda self, latents, fold=OccupancyDecoder.fold: folds.append(1) or fold(self, latents))
    folded = Predictor(model, PredictOptions(mode="standard", stages=(1,), chunk_size=500)).predict(volume)
    assert len(folds) == 1  # once per case, used by all the case's chunks
    monkeypatch.setattr(OccupancyDecoder, "fold", lambda self, latents: None)  # nothing folded: the module decodes
    module = Predictor(model, PredictOptions(mode="standard", stages=(1,), chunk_size=500)).predict(volume)
    assert folded.points_evaluated == module.points_evaluated == 16 * 16 * 12
    torch.testing.assert_close(folded.occupancy, module.occupancy, rtol=1e-5, atol=1e-5)


def test_cpu_chunks_decode_bit_for_bit_as_the_folded_decoders_former_blocks():
    """On the CPU the predictor decodes chunks of CPU_CHUNK_SIZE = 1024 points, each one folded-decoder pass; the
    grid is bit for bit the one of the former scheme: chunks of 2^12 points that the folded decoder split into
    blocks of 1024 (the block boundaries are the same)."""
    from oss_net.data import gather_patches
    from oss_net.inference.lattice import OccupancyLattice, refine_lattice
    from oss_net.models import build_model, demo_config
    from tests.models.test_decoder_eval import randomise

    model = build_model(demo_config("C", volume_shape=(20, 18, 16), encoder_channels=((4, 8),), decoder_width=32))
    randomise(model, torch.Generator().manual_seed(5))
    volume = torch.randn(1, 4, 20, 18, 16, generator=torch.Generator().manual_seed(6))
    prediction = Predictor(model, PredictOptions(mode="standard", stages=(1,))).predict(volume[0])  # 5760 points

    with torch.inference_mode():
        encoding = model.fold(model.encode(volume))

        def former_decode(coords):  # [N <= 2^12, 3] -> [N, 1] in blocks of 1024 points, as FoldedDecoder split them
            return torch.cat([model.decode(block[None], encoding, gather_patches(volume, block[None]))[0]
                              for block in coords.split(1024)])

        lattice = OccupancyLattice(model.config.volume_shape, (1,))
        stats = refine_lattice(lattice, former_decode, chunk_size=2**12)
    assert stats.stages[-1].points_evaluated > 2**12  # several former chunks, each of several blocks
    assert prediction.points_evaluated == stats.points_evaluated
    assert torch.equal(prediction.occupancy, lattice.to_dense()[0])
