"""Case folders written so that a case folder exists only when it is complete and consistent.

One inference run at a time writes into an output folder: `output_folder_lock` holds an exclusive
`fcntl.flock` on `<output_dir>/.oss_net.lock` (the holder's pid written in it) for the run's lifetime;
a second run waits for it or is refused, naming the folder and the holder. The parts of a sharded run
(`sharding`) each hold their part's lock and share the folder, taking turns at its shared files
(`oss_net.io.outputs_lock`). Everything of one case
is written (each file atomically) into a staging folder private to the run, `.<case>.<run_id>.partial/`,
then `manifest.json` (the run id, the settings hash and every file's size and SHA-256) is written last
and the folder is renamed to `<case>/`. A crash, a bad input or Ctrl-C therefore never leaves a
half-finished case behind; what dead runs left (staging folders, temporary files) is removed when the
next run takes the lock, and `--continue` reuses a case only when its manifest matches the run's
settings and its files.

The files of a case are the `CaseWriter`'s (`oss_net.inference.writers`, with their table); with `--flat`,
`<output_dir>/<id><ext>` is a copy of the mask, nnU-Net's naming (`write_flat_mask`).
"""
from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import logging
import math
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Any, Iterator, Sequence

from oss_net.data.formats import save_image
from oss_net.data.nifti import open_image, read_voxels
from oss_net.io import (
    OSSNetError, atomic_save_json, atomic_write, held_lock, record_outputs, refuse_foreign_outputs,
    refuse_output_in_inputs,
)


logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
PROBABILITIES_FOLDER = "probabilities"  # oss-net-predict's probabilities, beside the label maps
DETACHED_SUFFIXES = (".mhd", ".nhdr")  # a header whose voxels are in a data file beside it
MANIFEST_FILE = "manifest.json"
LOCK_FILE = ".oss_net.lock"
STAGING_SUFFIX = ".partial"
RETIRED_MARK = ".old-"  # `.<case>.old-<hex>`: a replaced result between two renames
TEMPORARY_SUFFIX = ".tmp"  # oss_net.io's atomic writes: `.<name>.<random>.tmp` until renamed


class OutputFolderBusy(OSSNetError):
    """Another run holds the output folder's lock."""


def new_run_id() -> str:
    """Unique per run: the process id plus random hex (two runs of one process differ too)."""
    return f"{os.getpid()}-{uuid.uuid4().hex[:8]}"


def case_folder(output_dir: Path, case_id: str) -> Path:
    return output_dir / case_id


@contextlib.contextmanager
def output_folder_lock(output_dir: Path, wait: bool = False, shard: str | None = None) -> Iterator[str]:
    """Hold the output folder for one run; yields the run's id.

    The lock is an exclusive `flock` on `<output_dir>/.oss_net.lock` (`oss_net.io.held_lock`: released by the
    kernel when the process dies, removed when let go). A part of a sharded run holds its part's lock instead,
    `.oss_net.<shard>.lock` (`sharding.Part.label`), so the parts run side by side, each part once at a time.
    """
    name = LOCK_FILE if shard is None else f".oss_net.{shard}.lock"
    what = "another inference run" if shard is None else f"another inference run of {shard}"

    def busy(holder: str) -> None:
        if not wait:
            raise OutputFolderBusy(
                f"{output_dir}: output folder is in use by {what} (pid {holder}) "
                f"(wait for it to finish, pass --wait to queue behind it, or choose another --output_dir)")
        logger.warning("%s: output folder is in use by %s (pid %s); waiting (--wait)", output_dir, what, holder)

    with held_lock(output_dir / name, busy):
        yield new_run_id()


def remove_leftovers(output_dir: Path, case_ids: Sequence[str] | None = None) -> list[Path]:
    """Remove what dead runs left: staging and retired folders, temporary files of interrupted atomic writes.

    Call with the lock held: no other run is writing then, so every such entry is stale. A sharded run passes its
    part's `case_ids`: only their staging and retired folders go (the other parts may be writing theirs), and the
    temporary files are left to `oss_net.io.remove_stale_temporaries`.
    """
    if case_ids is not None:
        return remove_case_leftovers(output_dir, case_ids)
    removed = []
    for entry in output_dir.iterdir():
        name = entry.name
        if not name.startswith(".") or name == LOCK_FILE:
            continue
        if entry.is_dir() and (name.endswith(STAGING_SUFFIX) or RETIRED_MARK in name):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
        elif entry.is_file() and name.endswith(TEMPORARY_SUFFIX):
            entry.unlink(missing_ok=True)
            removed.append(entry)
    if removed:
        logger.info("%s: removed %d leftover(s) of earlier runs", output_dir, len(removed))
    return removed


def remove_case_leftovers(output_dir: Path, case_ids: Sequence[str]) -> list[Path]:
    """The staging (`.<case>.<run_id>.partial`) and retired (`.<case>.old-<hex>`) folders of `case_ids`, removed."""
    removed = []
    for case_id in case_ids:
        pattern = re.compile(rf"\.{re.escape(case_id)}\.([0-9]+-[0-9a-f]+{re.escape(STAGING_SUFFIX)}|old-[0-9a-f]+)")
        for entry in output_dir.glob(f".{glob.escape(case_id)}.*"):
            if entry.is_dir() and pattern.fullmatch(entry.name):
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry)
    return removed


def staging_folder(output_dir: Path, case_id: str, run_id: str) -> Path:
    """A fresh, empty staging folder for one case, private to the run `run_id`."""
    staging = output_dir / f".{case_id}.{run_id}{STAGING_SUFFIX}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    return staging


def publish(staging: Path, output_dir: Path, case_id: str) -> Path:
    """Rename the complete staging folder to `<output_dir>/<case_id>`, replacing an older result."""
    final = case_folder(output_dir, case_id)
    if final.exists():
        retired = output_dir / f".{case_id}{RETIRED_MARK}{uuid.uuid4().hex[:8]}"
        os.replace(final, retired)
        os.replace(staging, final)
        shutil.rmtree(retired)
    else:
        os.replace(staging, final)
    record_outputs(output_dir, [case_id])
    return final


def discard(staging: Path) -> None:
    """Remove a staging folder after a failure (nothing of the case stays on disk)."""
    shutil.rmtree(staging, ignore_errors=True)


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes, hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(folder: Path, run_id: str, settings_hash: str) -> None:
    """`manifest.json`, the last file of a case: who wrote it, with which settings, and every file's size and SHA-256."""
    files = {entry.name: {"bytes": entry.stat().st_size, "sha256": file_digest(entry)}
             for entry in sorted(folder.iterdir()) if entry.is_file() and entry.name != MANIFEST_FILE}
    atomic_save_json({"run_id": run_id, "settings_hash": settings_hash, "files": files}, folder / MANIFEST_FILE)


def unfinished_reason(output_dir: Path, case_id: str, settings_hash: str) -> str | None:
    """None when `<case>/` is a finished case of these settings whose files are exactly those of its manifest; else why not."""
    folder = case_folder(output_dir, case_id)
    try:
        manifest = json.loads((folder / MANIFEST_FILE).read_text())
        listed = manifest["files"]
    except FileNotFoundError:
        return "no finished output" if not folder.exists() else "no manifest (written by an older or unfinished run)"
    except (OSError, ValueError, KeyError, TypeError) as error:
        return f"unreadable manifest ({type(error).__name__})"
    if manifest.get("settings_hash") != settings_hash:
        return "written with other settings or another checkpoint"
    present = {entry.name for entry in folder.iterdir() if entry.is_file() and entry.name != MANIFEST_FILE}
    if present != set(listed) or METRICS_FILE not in present:
        return "its files differ from its manifest's list"
    for name, expected in listed.items():
        path = folder / name
        if path.stat().st_size != expected.get("bytes") or file_digest(path) != expected.get("sha256"):
            return f"{name} differs from its manifest"
    return None


def is_finished(output_dir: Path, case_id: str, settings_hash: str) -> bool:
    """True when `--continue` may keep the case as it is (see `unfinished_reason`)."""
    return unfinished_reason(output_dir, case_id, settings_hash) is None


def flat_mask_path(output_dir: Path, case_id: str, suffix: str = ".nii.gz") -> Path:
    """`<case><suffix>`, nnU-Net's flat naming: `--flat`'s copy of the mask, and oss-net-predict's label map."""
    return output_dir / f"{case_id}{suffix}"


def write_flat_mask(output_dir: Path, case_id: str, suffix: str = ".nii.gz") -> Path:
    """`<case>/<case>_mask<suffix>` as `<output_dir>/<case><suffix>` (atomically), nnU-Net's flat naming: a copy of
    the file, or for a header with a detached data file (.mhd, .nhdr) the image written again under the new name."""
    target = flat_mask_path(output_dir, case_id, suffix)
    source = case_folder(output_dir, case_id) / f"{case_id}_mask{suffix}"
    if suffix in DETACHED_SUFFIXES:
        array, affine, header = read_voxels(open_image(source))
        written = save_image(array, affine, target, header)
    else:
        with atomic_write(target, "wb") as handle:
            handle.write(source.read_bytes())
        written = [target]
    record_outputs(output_dir, written)
    return target


def claim_output_folder(output_dir: Path, inputs: Sequence[Path], names: Sequence[str], overwrite: bool = False,
                        legacy: Sequence[str] = ()) -> None:
    """Before any work: `output_dir` is none of the folders `inputs` (nor inside one), and none of `names` (its
    entries the run writes) exists there unless this package wrote it: recorded in the folder's manifest
    (`oss_net.io.record_outputs`), a case folder with its own manifest (`is_case_folder`), or one of the run files
    `legacy` of a folder whose first of them is a run record of this package (written before the manifest was);
    else `overwrite`."""
    refuse_output_in_inputs(output_dir, inputs, "--output_dir")
    earlier_run = bool(legacy) and is_run_record(output_dir / legacy[0])
    refuse_foreign_outputs(output_dir, names, overwrite,
                           ours=lambda path: is_case_folder(path) or (earlier_run and path.name in legacy))


def is_run_record(path: Path) -> bool:
    """`inference_settings.json` of an inference run: a JSON object with its run id and settings hash."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(record, dict) and {"run_id", "settings_hash"} <= set(record)


def is_case_folder(path: Path) -> bool:
    """A case folder this package published: it holds a readable `manifest.json` with a run id and settings hash."""
    try:
        manifest = json.loads((path / MANIFEST_FILE).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and {"run_id", "settings_hash", "files"} <= set(manifest)


def json_ready(record: dict[str, Any]) -> dict[str, Any]:
    """NaN and infinities as null, so the JSON is standard."""
    return {key: (None if isinstance(value, float) and not math.isfinite(value) else value) for key, value in record.items()}


def save_metrics(record: dict[str, Any], folder: Path) -> None:
    atomic_save_json(json_ready(record), folder / METRICS_FILE)
