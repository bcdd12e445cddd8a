"""Training checkpoints: atomic, self-describing, loadable with `torch.load(weights_only=True)`.

A checkpoint is `oss_net.models.checkpoint_payload(model)` (format_version, config, model) plus a
"training" entry with the optimiser, grad scaler, counters, the settings and every RNG state (the
learning rate is a pure function of the epoch, so there is no scheduler state; the "scheduler" entry of
checkpoints written by earlier versions is ignored, and they resume as before). numpy's and Python's
RNG states are converted to tensors and plain lists so the safe unpickler accepts them. Periodic checkpoints are `checkpoints/ckpt_<iteration>.pt`, the last K kept;
a file is only ever visible under its final name once fully written (oss_net.io.atomic_save_torch),
so a run killed mid-write leaves the previous checkpoint as the newest loadable one; `resume_checkpoint`
passes over a newest checkpoint that cannot be read (cut short by a full disk, say) to the newest intact one
and says so.

A run folder holds one run: training into a folder that holds anything needs `--resume` (continue its run)
or `--overwrite` (start a new one; the earlier run's files are moved into `replaced_<time>/`, nothing is
deleted), so a new run never mixes with, prunes or replaces an earlier one (`claim_run_folder`).
"""
from __future__ import annotations

import logging
import random
import re
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

from oss_net.io import OSSNetError, atomic_save_torch
from oss_net.models.checkpoint import CheckpointError, read_checkpoint_file, shown_names

CHECKPOINT_DIR = "checkpoints"
REPLACED_PREFIX = "replaced_"  # --overwrite moves an earlier run's files into replaced_<time>/ of its folder
_PERIODIC = re.compile(r"^ckpt_(\d+)\.pt$")
_log = logging.getLogger(__name__)


class ResumeError(OSSNetError):
    """A checkpoint that cannot be found, read or used to resume."""


def checkpoint_path(run_dir: Path, global_iteration: int) -> Path:
    return run_dir / CHECKPOINT_DIR / f"ckpt_{global_iteration:09d}.pt"


def periodic_checkpoints(run_dir: Path) -> list[Path]:
    """Complete periodic checkpoints of a run, oldest first (temporary files are never matched)."""
    folder = run_dir / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    found = [(int(match.group(1)), path) for path in folder.iterdir() if (match := _PERIODIC.match(path.name))]
    return [path for _, path in sorted(found)]


def find_checkpoint(location: str | Path) -> Path:
    """The checkpoint named by `--resume`: a file as is, a run folder's newest periodic checkpoint."""
    path = Path(location)
    if path.is_file():
        return path
    if path.is_dir():
        candidates = periodic_checkpoints(path)
        if not candidates:
            raise ResumeError(f"{path}: no checkpoint found (expected {CHECKPOINT_DIR}/ckpt_<iteration>.pt)")
        return candidates[-1]
    raise ResumeError(f"{path}: no such run folder or checkpoint file")


def resume_checkpoint(location: str | Path) -> tuple[Path, dict[str, Any]]:
    """The checkpoint `--resume` continues from, and its contents: a file as is; for a run folder the newest
    periodic checkpoint that reads, with a warning naming each newer one that does not (and why)."""
    path = Path(location)
    if path.is_file():
        try:
            return path, load_checkpoint(path)
        except ResumeError as error:
            intact, _ = _newest_intact([p for p in periodic_checkpoints(run_dir_of(path)) if p != path])
            hint = f"; the newest intact checkpoint of its run is {intact[0]}" if intact else ""
            raise ResumeError(f"{error}{hint}") from None
    find_checkpoint(path)  # the errors for a missing folder and for one without checkpoints
    found, failures = _newest_intact(periodic_checkpoints(path))
    if found is None:
        raise ResumeError(f"{path}: no intact checkpoint to resume from: {shown_names(failures, 2)}")
    if failures:
        _log.warning("%s; resuming from the newest intact checkpoint, %s", "; ".join(failures), found[0])
    return found


def _newest_intact(candidates: list[Path]) -> tuple[tuple[Path, dict[str, Any]] | None, list[str]]:
    """The newest of `candidates` that loads (and its contents), and why each newer one did not."""
    failures = []
    for candidate in reversed(candidates):
        try:
            return (candidate, load_checkpoint(candidate)), failures
        except ResumeError as error:
            failures.append(str(error))
    return None, failures


def run_dir_of(checkpoint: Path) -> Path:
    """The run folder a checkpoint belongs to (its parent's parent when inside checkpoints/)."""
    return checkpoint.parent.parent if checkpoint.parent.name == CHECKPOINT_DIR else checkpoint.parent


def prune_checkpoints(run_dir: Path, keep: int) -> None:
    """Delete all but the newest `keep` periodic checkpoints."""
    for stale in periodic_checkpoints(run_dir)[:-keep]:
        stale.unlink(missing_ok=True)


def remove_stale_temporaries(run_dir: Path) -> None:
    """Temporary files left by a run killed during a write (never valid checkpoints)."""
    folder = run_dir / CHECKPOINT_DIR
    if folder.is_dir():
        for leftover in folder.glob(".*.tmp"):
            leftover.unlink(missing_ok=True)


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_save_torch(state, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a training checkpoint with the safe unpickler; a clear error for anything else."""
    try:
        state = read_checkpoint_file(path)
    except CheckpointError as error:
        raise ResumeError(f"{path}: not a readable checkpoint ({error.reason})") from None
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise ResumeError(f"{path}: not an OSS-Net checkpoint (no model/config entries)")
    return state


def claim_run_folder(run_dir: Path, own_names: Iterable[str], overwrite: bool = False) -> None:
    """Refuse a run folder that holds anything, unless `overwrite`: then move the entries named `own_names` (what
    a run writes there) into `replaced_<time>/`, so the new run starts clean and nothing is deleted."""
    entries = sorted(p.name for p in run_dir.iterdir()) if run_dir.is_dir() else []
    if not entries:
        return
    if not overwrite:
        raise ResumeError(f"{run_dir}: run folder is not empty (holds {shown_names(entries)}); pass --resume {run_dir} "
                          f"to continue its run, or --overwrite to start a new run there (the earlier run's files move "
                          f"to {REPLACED_PREFIX}<time>/, nothing is deleted), or choose another path for --output_dir")
    earlier = [name for name in entries if name in set(own_names)]
    if not earlier:
        return
    aside = run_dir / f"{REPLACED_PREFIX}{datetime.now().strftime('%Y%m%d_%H%M%S_%f')}"
    aside.mkdir()
    for name in earlier:
        (run_dir / name).rename(aside / name)
    _log.warning("%s: --overwrite: the earlier run's %s moved to %s", run_dir, shown_names(earlier), aside.name)


def training_state(state: dict[str, Any], path: Path) -> dict[str, Any]:
    """The "training" entry of a checkpoint; a model-only file cannot be resumed."""
    if not isinstance(state.get("training"), dict):
        raise ResumeError(f"{path}: a model file without optimiser state cannot be resumed; use --load_model to start from its weights")
    return state["training"]


def capture_rng_state() -> dict[str, Any]:
    """Every global RNG state as tensors, ints and lists (weights_only-safe)."""
    kind, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    version, python_state, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "python": {"version": int(version), "state": [int(v) for v in python_state], "gauss_next": gauss_next},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of `capture_rng_state` (the CUDA part only when CUDA is in use here too)."""
    torch.set_rng_state(state["torch"])
    numpy_state = state["numpy"]
    np.random.set_state((
        numpy_state["kind"],
        numpy_state["keys"].numpy().astype(np.uint32),
        numpy_state["position"],
        numpy_state["has_gauss"],
        numpy_state["cached_gaussian"],
    ))
    python_state = state["python"]
    random.setstate((python_state["version"], tuple(python_state["state"]), python_state["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        for index in range(min(len(cuda_states), torch.cuda.device_count())):
            torch.cuda.set_rng_state(cuda_states[index], index)
