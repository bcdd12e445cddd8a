"""Checkpoints: bitwise round trip, weights_only loading, one clear error for every bad file."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from oss_net.models import CheckpointError, build_model, checkpoint_payload, demo_config, load_model, model_from_payload, save_model


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, Path]:
    torch.manual_seed(4)
    model = build_model(demo_config("D2"))  # Fourier buffer + BN buffers + large patches
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.01)
    path = tmp_path_factory.mktemp("checkpoint") / "model.pt"
    save_model(path, model)
    return model, path


def test_save_load_round_trip_is_bitwise(saved: tuple[torch.nn.Module, Path]) -> None:
    model, path = saved
    loaded = load_model(path)
    assert loaded.config == model.config
    original, restored = model.state_dict(), loaded.state_dict()
    assert original.keys() == restored.keys() and "decoder.fourier.frequencies" in restored
    for key in original:
        assert torch.equal(original[key], restored[key]), key
    payload = torch.load(path, weights_only=True)
    assert payload["format_version"] == 1 and payload["kind"] == "oss_net"
    assert payload["config"] == model.config.to_dict()
    assert not list(path.parent.glob(".model.pt.*"))  # no temporary left behind


def test_model_from_payload_round_trip(saved: tuple[torch.nn.Module, Path]) -> None:
    model, _ = saved
    rebuilt = model_from_payload(checkpoint_payload(model), "memory")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), rebuilt.state_dict().values()))


def test_a_model_loads_in_the_dtype_it_was_saved_in_or_the_one_asked_for(saved: tuple[torch.nn.Module, Path],
                                                                         tmp_path: Path) -> None:
    model, _ = saved
    wide = build_model(model.config).double()
    with torch.no_grad():
        for parameter in wide.parameters():
            parameter.copy_(torch.randn_like(parameter))  # values that float32 cannot hold
    save_model(tmp_path / "double.pt", wide)
    loaded = load_model(tmp_path / "double.pt")
    assert all(torch.equal(a, b) and a.dtype == b.dtype for a, b in zip(wide.state_dict().values(), loaded.state_dict().values()))
    assert next(loaded.parameters()).dtype == torch.float64
    narrowed = load_model(tmp_path / "double.pt", dtype=torch.float32)  # asked for: rounded
    assert next(narrowed.parameters()).dtype == torch.float32
    assert torch.equal(narrowed.state_dict()["decoder.output.weight"], wide.state_dict()["decoder.output.weight"].float())
    assert next(load_model(saved[1]).parameters()).dtype == torch.float32
    payload = checkpoint_payload(model)
    payload["model"]["decoder.output.weight"] = payload["model"]["decoder.output.weight"].double()
    with pytest.raises(CheckpointError, match=r"mixed.pt: weights of several dtypes \(torch.float32, torch.float64\)"):
        model_from_payload(payload, "mixed.pt")
    assert model_from_payload(payload, "mixed.pt", dtype=torch.float32).state_dict()["decoder.output.weight"].dtype == torch.float32


def test_loading_into_another_configuration_names_file_and_fields(saved: tuple[torch.nn.Module, Path]) -> None:
    _, path = saved
    expected = demo_config("D1")
    with pytest.raises(CheckpointError, match=rf"{path}: checkpoint is D2 \(brats\), expected D1 \(brats\); differing fields: name: 'D2' in the file != 'D1' expected; large_patches: True in the file != False expected"):
        load_model(path, config=expected)


def test_weights_of_another_configuration_name_the_mismatch(saved: tuple[torch.nn.Module, Path], tmp_path: Path) -> None:
    model, _ = saved
    payload = checkpoint_payload(model)
    payload["config"] = demo_config("D2", decoder_width=64).to_dict()
    with pytest.raises(CheckpointError, match=r"other.pt: weights do not match configuration D2 \(brats\): wrong shape: decoder.blocks.0.cbn1.beta.bias \[128\] in the file != \[64\]"):
        model_from_payload(payload, tmp_path / "other.pt")
    payload = checkpoint_payload(model)
    del payload["model"]["decoder.output.weight"]
    with pytest.raises(CheckpointError, match=r"x.pt: weights do not match configuration D2 \(brats\): missing: decoder.output.weight"):
        model_from_payload(payload, "x.pt")


def test_garbage_and_foreign_files_give_one_clear_error(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointError, match=rf"{garbage}: not a model checkpoint \("):
        load_model(garbage)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(CheckpointError, match=rf"{foreign}: not a model checkpoint \(expected keys \['format_version', 'kind', 'config', 'model'\], found \['weights'\]\)"):
        load_model(foreign)
    future = tmp_path / "future.pt"
    torch.save({"format_version": 9, "kind": "oss_net", "config": {}, "model": {}}, future)
    with pytest.raises(CheckpointError, match=rf"{future}: checkpoint format version 9, this code reads 1"):
        load_model(future)
    with pytest.raises(CheckpointError, match=rf"{tmp_path / 'missing.pt'}: checkpoint file does not exist"):
        load_model(tmp_path / "missing.pt")
