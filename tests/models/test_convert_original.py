"""The converter of the original code's state dicts (docs/original_weights.md).

Facts copied into tests/models/data: the original's key names and shapes for its 24 configurations,
and the outputs the original model computed on synthetic weights and inputs. The synthetic weights are
rebuilt here from their recipe (one generator per key, seeded by the key's crc32), so no weight file is
stored. Our converted model must reproduce every golden output to 1e-8 relative in float64, in eval mode,
with raw coordinates and the pure-PyTorch PAU.

The recipe makes a tensor's value a function of its key and shape alone, so golden cases whose original
encoder keys agree (all plain-encoder BraTS cases; C and D) have identical encoder weights: they share one
encoder pass here (the float64 encoder with the pure-PyTorch PAU is the slow part).
"""
from __future__ import annotations

import gzip
import json
import math
import re
import zlib
from pathlib import Path

import pytest
import torch

from oss_net.data import gather_patches
from oss_net.io import OSSNetError
from oss_net.models import (
    CONFIG_NAMES,
    CheckpointError,
    ConfigError,
    Encoding,
    build_model,
    demo_config,
    get_config,
    load_model,
    save_model,
)
from oss_net.models.convert_original import (
    KEY_RULES,
    ConversionError,
    absent_in_original,
    convert_file,
    convert_state_dict,
    main,
    original_config,
    original_config_name,
    our_key,
)
from pade_activation_unit import PAU
from pade_activation_unit.init_tables import LEAKY_RELU_5_4

DATA = Path(__file__).parent / "data"
ORIGINAL_KEYS: dict[str, dict[str, list[int]]] = json.loads(gzip.decompress((DATA / "original_state_dict_keys.json.gz").read_bytes()))
GOLDEN: dict[str, dict] = json.loads((DATA / "original_golden_outputs.json").read_text())["cases"]
TOLERANCE = 1e-8  # relative, float64
SLOW_CASES = {"oss_net_A_lits"}  # a [1, 1, 256, 256, 256] float64 encoder input: minutes on 2 cores
E1_HEAD = "encoder.segmentation_head.conv.weight"


def split_original_name(original: str) -> tuple[str, str]:
    """"oss_net_full_bra_ts" -> ("full", "brats")."""
    name, suffix = re.fullmatch(r"(?:oss_net_)?(.+)_(bra_ts|lits)", original).groups()
    return name, "brats" if suffix == "bra_ts" else "lits"


def synthetic_weight(key: str, shape: list[int]) -> torch.Tensor:
    """The golden outputs' synthetic value of one original key: float64, seeded by crc32 of the key."""
    generator = torch.Generator().manual_seed(zlib.crc32(key.encode()))
    draw = {"generator": generator, "dtype": torch.float64}
    if key.endswith("num_batches_tracked"):
        return torch.tensor(0)
    if key.endswith("running_var"):
        return 1 + 0.5 * torch.rand(shape, **draw)
    if key.endswith("running_mean"):
        return 0.1 * torch.randn(shape, **draw)
    if key.endswith("weight_numerator"):
        return torch.tensor(LEAKY_RELU_5_4[0], dtype=torch.float64) + 0.02 * torch.randn(shape, **draw)
    if key.endswith("weight_denominator"):
        return torch.tensor(LEAKY_RELU_5_4[1], dtype=torch.float64) + 0.02 * torch.randn(shape, **draw)
    if key == "decoder.b":
        return 4.0 * torch.randn(shape, **draw)
    return torch.randn(shape, **draw) / math.sqrt(math.prod(shape[1:]))


def synthetic_state_dict(original: str) -> dict[str, torch.Tensor]:
    return {key: synthetic_weight(key, shape) for key, shape in ORIGINAL_KEYS[original].items()}


def golden_inputs(case: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(encoder input [1, C, *encoder grid], raw coordinates [1, N, 3], patches [1, N, C_p, 7, 7, 7] | None)."""
    generator = torch.Generator().manual_seed(1)
    volume = torch.randn(case["encoder_input_shape"], generator=generator, dtype=torch.float64)
    axes = [torch.randint(0, size, (1, case["points"]), generator=generator) for size in case["coordinate_grid"]]
    coords = torch.stack(axes, dim=-1).to(torch.float64)
    name, dataset = split_original_name(case["config"])
    if not get_config(name, dataset).patches:
        return volume, coords, None
    patches = torch.randn(1, case["points"], case["patch_channels"], 7, 7, 7, generator=generator, dtype=torch.float64)
    return volume, coords, patches


_ENCODINGS: dict[tuple, Encoding] = {}


def encode_once(model: torch.nn.Module, original: str, volume: torch.Tensor) -> Encoding:
    """model.encode_downscaled(volume), computed once per set of original encoder keys and shapes."""
    fingerprint = tuple(sorted((key, tuple(shape)) for key, shape in ORIGINAL_KEYS[original].items() if key.startswith("encoder.")))
    if fingerprint not in _ENCODINGS:
        with torch.no_grad():
            _ENCODINGS[fingerprint] = model.encode_downscaled(volume)
    return _ENCODINGS[fingerprint]


def max_relative_error(ours: torch.Tensor, golden: list[float]) -> float:
    expected = torch.tensor(golden, dtype=torch.float64)
    return ((ours.flatten() - expected).abs() / expected.abs()).max().item()


def test_the_data_covers_all_24_configurations_under_their_original_names() -> None:
    expected = {original_config_name(name, dataset) for name in CONFIG_NAMES for dataset in ("brats", "lits")}
    assert set(ORIGINAL_KEYS) == expected and len(expected) == 24
    assert original_config_name("C", "brats") == "oss_net_full_bra_ts"
    assert original_config_name("O-Net", "lits") == "vanilla_o_net_wide_lits"


@pytest.mark.parametrize("original", sorted(ORIGINAL_KEYS))
def test_keys_map_one_to_one_with_equal_shapes(original: str) -> None:
    config = original_config(*split_original_name(original))
    with torch.device("meta"):
        ours = {key: list(value.shape) for key, value in build_model(config).state_dict().items()}
    mapped = {our_key(key): shape for key, shape in ORIGINAL_KEYS[original].items()}
    assert len(mapped) == len(ORIGINAL_KEYS[original])  # no two original keys land on one of ours
    assert set(ours) - set(mapped) == set(absent_in_original(config))
    assert set(mapped) <= set(ours)
    assert all(ours[key] == shape for key, shape in mapped.items())
    assert (E1_HEAD in absent_in_original(config)) == (config.name in ("E1", "E2"))


def test_every_rule_is_used_by_some_configuration() -> None:
    keys = {key for state in ORIGINAL_KEYS.values() for key in state}
    unused = [pattern for pattern, _ in KEY_RULES if not any(re.fullmatch(pattern, key) for key in keys)]
    assert unused == []


def test_converted_configuration_is_the_originals_inference_setup() -> None:
    config = original_config("D", "lits")
    assert (config.name, config.raw_coordinates, config.large_patch_pooling) == ("full2", True, "max")
    assert get_config("D", "lits").large_patch_pooling == "avg"  # our default is unchanged
    with pytest.raises(ConfigError, match="large_patch_pooling must be one of"):
        get_config("B", "brats", large_patch_pooling="min")
    with pytest.raises(OSSNetError, match="'flare'"):  # ConversionError: the original trained on BraTS and LiTS only
        original_config("A", "flare")


@pytest.mark.parametrize("original", [pytest.param(name, marks=pytest.mark.slow) if name in SLOW_CASES else name for name in GOLDEN])
def test_converted_model_reproduces_the_originals_golden_outputs(original: str) -> None:
    case = GOLDEN[original]
    conversion = convert_state_dict(synthetic_state_dict(original), original_config(*split_original_name(original)))
    assert conversion.unfilled == ((E1_HEAD,) if original.startswith("oss_net_E") else ())  # reported, not hidden
    model = conversion.model.eval()
    for module in model.modules():
        if isinstance(module, PAU):
            module.backend = "reference"
    assert next(model.parameters()).dtype == torch.float64
    volume, coords, patches = golden_inputs(case)
    encoding = encode_once(model, original, volume)
    with torch.no_grad():
        occupancy = model.decode(coords, encoding, patches)  # [1, N, 1]
    assert max_relative_error(occupancy, case["occupancy"]) < TOLERANCE
    if case["segmentation_low_res_shape"] is not None:
        segmentation = encoding.segmentation
        assert list(segmentation.shape) == case["segmentation_low_res_shape"]
        assert max_relative_error(segmentation.sum(), [case["segmentation_low_res_sum"]]) < TOLERANCE
        assert max_relative_error(segmentation.flatten()[:8], case["segmentation_low_res_first8"]) < TOLERANCE


def test_the_converters_output_file_keeps_float64_and_reproduces_the_golden_outputs(tmp_path: Path) -> None:
    """Through the file, not only in memory: convert_file writes, load_model reads back in float64, bit for bit."""
    original = "oss_net_D1_bra_ts"
    weights, output = tmp_path / "d1.pt", tmp_path / "ours.pt"
    torch.save(synthetic_state_dict(original), weights)
    in_memory = convert_file(weights, *split_original_name(original), output).model
    model = load_model(output).eval()
    assert next(model.parameters()).dtype == torch.float64
    assert all(torch.equal(a, b) for a, b in zip(in_memory.state_dict().values(), model.state_dict().values()))
    for module in model.modules():
        if isinstance(module, PAU):
            module.backend = "reference"
    volume, coords, patches = golden_inputs(GOLDEN[original])
    with torch.no_grad():
        occupancy = model.decode(coords, encode_once(model, original, volume), patches)  # [1, N, 1]
    assert max_relative_error(occupancy, GOLDEN[original]["occupancy"]) < TOLERANCE


def test_data_parallel_prefix_is_accepted() -> None:
    state = {f"module.{key}": value for key, value in synthetic_state_dict("vanilla_o_net_lits").items()}
    model = convert_state_dict(state, original_config("vanilla_o_net", "lits")).model
    assert torch.equal(model.state_dict()["decoder.output.weight"], state["module.decoder.final_mapping.0.weight"])


def test_weights_of_another_configuration_name_the_mismatch() -> None:
    state = synthetic_state_dict("oss_net_A_bra_ts")
    with pytest.raises(ConversionError, match=r"x.pt: does not fit configuration B \(brats\): wrong shape: .*decoder.patch_mapping.conv1.weight \[2, 4, 7, 7, 7\] in the file != \[4, 8, 7, 7, 7\]"):
        convert_state_dict(state, original_config("B", "brats"), source="x.pt")
    with pytest.raises(ConversionError, match=r"does not fit configuration C1 \(brats\): missing: encoder.heads.0.1.weight"):
        convert_state_dict(state, original_config("C1", "brats"))
    with pytest.raises(ConversionError, match=r"does not fit configuration vanilla_o_net_wide \(brats\): not in configuration: decoder.patch_mapping"):
        convert_state_dict(state, original_config("O-Net", "brats"))
    with pytest.raises(ConversionError, match=r"y.pt: original key 'decoder.extra.weight': no rule maps it"):
        convert_state_dict({**state, "decoder.extra.weight": torch.zeros(1)}, original_config("A", "brats"), source="y.pt")


def test_command_line_converts_reports_and_loads(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    state = {key: value.float() if value.is_floating_point() else value for key, value in synthetic_state_dict("oss_net_E1_lits").items()}
    weights, output = tmp_path / "e1.pt", tmp_path / "ours.pt"
    torch.save(state, weights)
    assert main([str(weights), "--network_config", "E1", "--dataset", "lits", "--output", str(output)]) == 0
    printed = capsys.readouterr().out
    assert "E1 (lits), raw coordinates, max-pooled large patches" in printed
    assert f"not in the original, left at initial values: {E1_HEAD}" in printed
    payload = torch.load(output, weights_only=True)
    assert payload["unfilled_weights"] == [E1_HEAD] and payload["converted_from"] == "oss_net_E1_lits"
    model = load_model(output)
    assert model.config == original_config("E1", "lits")
    assert torch.equal(model.state_dict()["decoder.blocks.3.cbn2.gamma.weight"], state["decoder.blocks.3.cnb_2.linear_gamma.weight"])
    assert main([str(output), "--network_config", "E1", "--dataset", "lits", "--output", str(tmp_path / "again.pt")]) == 2
    assert "needs no conversion" in capsys.readouterr().err


def test_load_model_points_an_original_state_dict_to_the_converter(tmp_path: Path) -> None:
    path = tmp_path / "authors.pt"
    torch.save({"module.decoder.blocks.0.activation.weight_numerator": torch.zeros(6), "decoder.b": torch.zeros(1, 3, 16)}, path)
    with pytest.raises(CheckpointError, match=rf"{path}: this is a bare state dict saved by the original OSS-Net code.*python -m oss_net.models.convert_original {path} --network_config NAME"):
        load_model(path)
    ours = tmp_path / "ours.pt"
    save_model(ours, build_model(demo_config("A", decoder_width=16)))
    assert load_model(ours).config.decoder_width == 16  # our own checkpoints are not mistaken for the original's


@pytest.mark.parametrize("pooling", ["avg", "max"])
def test_large_patches_are_pooled_as_configured(pooling: str) -> None:
    generator = torch.Generator().manual_seed(3)
    volume = torch.randn(1, 2, 12, 10, 9, generator=generator, dtype=torch.float64)
    coords = torch.tensor([[[0, 0, 0], [5, 4, 8], [11, 9, 3]]], dtype=torch.float64)
    patches = gather_patches(volume, coords, large=True, pooling=pooling)  # [1, 3, 4, 7, 7, 7]
    padded = torch.nn.functional.pad(volume, [7] * 6)
    pool = torch.nn.functional.max_pool3d if pooling == "max" else torch.nn.functional.avg_pool3d
    for n, (i, j, k) in enumerate(coords[0].long().tolist()):
        block = padded[:, :, i:i + 14, j:j + 14, k:k + 14]  # c-7..c+6: zeros outside the grid count
        torch.testing.assert_close(patches[0, n, 2:], pool(block, 2)[0], rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="large-patch pooling must be one of"):
        gather_patches(volume, coords, large=True, pooling="median")
