"""One checkpoint format for every model: {format_version, kind, config, model}.

The configuration travels with the weights, so `load_model(path)` rebuilds the right architecture, and
the file holds only plain types and tensors, so it loads with torch.load(weights_only=True). A model loads
in the dtype its weights were saved in (a float64 conversion of the original's weights stays float64), or
in the dtype the caller asks for; it is never rounded silently. Training
embeds `checkpoint_payload(model)` in its own checkpoint and rebuilds with `model_from_payload`.
"""
from __future__ import annotations

import dataclasses
import os
import zipfile
from typing import Any, Iterable

import torch
from torch import nn

from oss_net.io import OSSNetError, atomic_save_torch

from .config import ConfigError
from .registry import model_kind

FORMAT_VERSION = 1
PAYLOAD_KEYS = ("format_version", "kind", "config", "model")
GIVE_A_CHECKPOINT = "give a model file or training checkpoint written by oss_net (e.g. a run's best_model.pt)"
SHOWN_KEYS = 5  # an error lists at most this many names (weights, keys), then how many there are in all


class CheckpointError(OSSNetError):
    """A file that is not a model checkpoint, of an unknown version, or of another configuration."""


def is_original_state_dict(payload: Any) -> bool:
    """True for a bare state dict of the original code: its PAU coefficients are named `*.weight_numerator`."""
    return (
        isinstance(payload, dict)
        and all(isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in payload.items())
        and any(key.endswith(".weight_numerator") for key in payload)
    )


def checkpoint_payload(model: nn.Module, split: dict[str, list[str]] | None = None) -> dict[str, Any]:
    """{format_version, kind, config (plain dict), model (state dict)} of a registered model.

    split: the case ids of each split the model was trained and validated on ({"train": [...], "val": [...]}),
    stored as "split" so inference's `--split` scores exactly those cases (`stored_split`).
    """
    payload = {
        "format_version": FORMAT_VERSION,
        "kind": model.kind,
        "config": model.config.to_dict(),
        "model": model.state_dict(),
    }
    if split is not None:
        payload["split"] = {name: [str(case_id) for case_id in ids] for name, ids in split.items()}
    return payload


def save_model(path: str | os.PathLike, model: nn.Module, split: dict[str, list[str]] | None = None) -> None:
    """Write the model's checkpoint payload (with the training `split` when given) to `path` atomically."""
    atomic_save_torch(checkpoint_payload(model, split), path)


def stored_split(path: str | os.PathLike) -> dict[str, list[str]] | None:
    """The case ids per split stored in a checkpoint by training, or None (files written before it was stored)."""
    payload = read_checkpoint_file(path)
    split = payload.get("split") if isinstance(payload, dict) else None
    if split is None:
        return None
    if not isinstance(split, dict) or not all(isinstance(ids, list) for ids in split.values()):
        raise CheckpointError(f"{path}: the stored split is not a mapping of case-id lists")
    return {str(name): [str(case_id) for case_id in ids] for name, ids in split.items()}


def load_model(path: str | os.PathLike, map_location: str | torch.device = "cpu", config: Any = None,
               dtype: torch.dtype | None = None) -> nn.Module:
    """The model stored at `path`, built from the configuration in the file, on `map_location`.

    config: the configuration the caller expects; a checkpoint of any other one raises CheckpointError.
    dtype: the floating dtype of the model; None: the one its weights were saved in (`saved_dtype`).
    """
    payload = read_checkpoint_file(path, map_location)
    return model_from_payload(payload, path, config, dtype).to(map_location)


def read_checkpoint_file(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Any:
    """What `path` holds, read with torch's safe unpickler (tensors and plain values only).

    Every failure is one CheckpointError in our words, naming the file: a missing file, a folder, a permission
    problem, or why it is no checkpoint (`unloadable_reason`). torch's own advice to retry with
    `weights_only=False` is never passed on: for a file of unknown origin that would run its code.
    """
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        message, reason = f"{path}: checkpoint file does not exist (check the path)", "it does not exist"
    except IsADirectoryError:
        message, reason = f"{path}: a folder, not a checkpoint file; {GIVE_A_CHECKPOINT}", "a folder"
    except PermissionError:
        reason = "permission denied; check the permissions of the file and its folders"
        message = f"permission denied reading {path} (check the permissions of the file and its folders)"
    except Exception as error:  # the unpickler fails in many ways on a foreign file; all mean "not a checkpoint"
        reason = unloadable_reason(path, error)
        message = f"{path}: not a model checkpoint ({reason}); {GIVE_A_CHECKPOINT}"
    raised = CheckpointError(message)
    raised.reason = reason  # the cause alone, for callers that phrase their own line
    raise raised


def unloadable_reason(path: str | os.PathLike, error: BaseException) -> str:
    """Why torch's safe loader refused `path`, in our words (torch's message suggests the unsafe loader)."""
    try:
        archive = zipfile.is_zipfile(path)
        with open(path, "rb") as handle:
            start = handle.read(2)
    except OSError:
        archive, start = False, b""
    if archive and ("weights_only" in str(error).lower() or "Unsupported" in str(error)):
        return ("it holds Python objects besides tensors and plain values, which no checkpoint of this package "
                "does; it is not unpickled, since that could run code from the file")
    if archive:
        return f"a damaged PyTorch archive ({type(error).__name__})"
    if start[:1] == b"\x80":
        return "a Python pickle, not a checkpoint archive of this package; it is not unpickled"
    return "not a PyTorch file, or one cut short"


def shown_names(names: Iterable[Any], limit: int = SHOWN_KEYS) -> str:
    """At most `limit` names, then how many there are: "a, b, c, d, e, ... (312 in all)"."""
    names = [str(name) for name in names]
    return ", ".join(names[:limit]) + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def model_from_payload(payload: Any, source: str | os.PathLike, config: Any = None,
                       dtype: torch.dtype | None = None) -> nn.Module:
    """Rebuild the model of a checkpoint payload, in `dtype` or else the dtype it was saved in; `source` names
    the file in every error."""
    if is_original_state_dict(payload):
        raise CheckpointError(
            f"{source}: this is a bare state dict saved by the original OSS-Net code, not a checkpoint of this "
            f"package; convert it first: python -m oss_net.models.convert_original {source} --network_config NAME "
            "--dataset brats|lits --output OUT.pt"
        )
    if not isinstance(payload, dict) or any(key not in payload for key in PAYLOAD_KEYS):
        found = f"[{shown_names(repr(key) for key in sorted(map(str, payload)))}]" if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(f"{source}: not a model checkpoint (expected keys {list(PAYLOAD_KEYS)}, found {found}); "
                              f"{GIVE_A_CHECKPOINT}")
    if payload["format_version"] != FORMAT_VERSION:
        raise CheckpointError(f"{source}: checkpoint format version {payload['format_version']!r}, this code reads {FORMAT_VERSION}")
    try:
        kind = model_kind(payload["kind"])
    except (KeyError, TypeError):
        raise CheckpointError(f"{source}: unknown model kind {payload['kind']!r}") from None
    try:
        stored = kind.config_type.from_dict(payload["config"])
    except (ConfigError, TypeError) as error:
        raise CheckpointError(f"{source}: invalid configuration in checkpoint: {error}") from None
    if config is not None and config != stored:
        raise CheckpointError(f"{source}: checkpoint is {_describe(stored)}, expected {_describe(config)}; {_config_difference(stored, config)}")
    model = kind.builder(stored)
    _check_state_dict(model, payload["model"], source, stored)
    model = model.to(dtype if dtype is not None else saved_dtype(payload["model"], source))
    bad = non_finite_tensors(payload["model"])
    if bad:  # such a model predicts nothing (NaN occupancy) without any other sign
        raise CheckpointError(f"{source}: checkpoint holds NaN or Inf weights in {shown_names(bad)} "
                              "(the training diverged; use an earlier checkpoint)")
    model.load_state_dict(payload["model"])
    return model


def saved_dtype(state: dict[str, Any], source: str | os.PathLike) -> torch.dtype:
    """The one floating dtype of a state dict's tensors (float32 when it has none); CheckpointError when it
    mixes several, so that no weight is rounded without the caller asking (`load_model(..., dtype=...)`)."""
    dtypes = {value.dtype for value in state.values() if isinstance(value, torch.Tensor) and value.is_floating_point()}
    if len(dtypes) > 1:
        raise CheckpointError(f"{source}: weights of several dtypes ({', '.join(sorted(map(str, dtypes)))}); "
                              "load them with an explicit dtype")
    return dtypes.pop() if dtypes else torch.float32


def non_finite_tensors(state: dict[str, Any]) -> list[str]:
    """Names of the floating-point tensors of a state dict holding NaN or Inf, in state-dict order."""
    return [key for key, value in state.items()
            if isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all())]


def _describe(config: Any) -> str:
    return f"{getattr(config, 'name', '?')} ({getattr(config, 'dataset', '?')})"


def _config_difference(stored: Any, expected: Any) -> str:
    """'field: file value != expected value' for every differing field."""
    if type(stored) is not type(expected):
        return f"model type {type(stored).__name__} in the file, {type(expected).__name__} expected"
    differences = [
        f"{f.name}: {getattr(stored, f.name)!r} in the file != {getattr(expected, f.name)!r} expected"
        for f in dataclasses.fields(stored)
        if getattr(stored, f.name) != getattr(expected, f.name)
    ]
    return "differing fields: " + "; ".join(differences)


def _check_state_dict(model: nn.Module, state: Any, source: str | os.PathLike, config: Any) -> None:
    """One CheckpointError listing missing, unexpected and wrongly shaped weights."""
    if not isinstance(state, dict):
        raise CheckpointError(f"{source}: checkpoint weights are a {type(state).__name__}, not a state dict")
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = [
        f"{key} {list(state[key].shape)} in the file != {list(own[key].shape)}"
        for key in sorted(set(own) & set(state))
        if not isinstance(state[key], torch.Tensor) or state[key].shape != own[key].shape
    ]
    problems = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", mismatched)):
        if items:
            problems.append(f"{label}: {shown_names(items)}")
    if problems:
        raise CheckpointError(f"{source}: weights do not match configuration {_describe(config)}: " + "; ".join(problems))
