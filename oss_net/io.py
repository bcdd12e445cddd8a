"""Atomic file writes and the library's error base class.

Every output of the library goes through these helpers, so an interrupted run never leaves a
half-written file under a final name: data goes to a temporary file in the same folder, is
fsync'ed, then renamed over the target with os.replace (atomic on POSIX).
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator


class OSSNetError(Exception):
    """A user-facing error: bad input, a missing file, a checkpoint of another configuration."""


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Yield a file object on a temporary sibling of `path`; it replaces `path` only on success."""
    target = Path(path)
    folder = target.parent
    if not folder.is_dir():
        raise OSSNetError(f"{folder}: output folder does not exist")
    if not os.access(folder, os.W_OK):
        raise OSSNetError(f"{folder}: output folder is not writable")
    descriptor, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    os.chmod(temporary, 0o666 & ~_current_umask())  # mkstemp makes 0600; outputs get the usual permissions
    try:
        with os.fdopen(descriptor, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def atomic_save_torch(obj: Any, path: str | os.PathLike) -> None:
    """torch.save through a temporary file."""
    import torch

    with atomic_write(path, "wb") as handle:
        torch.save(obj, handle)


def atomic_save_json(obj: Any, path: str | os.PathLike) -> None:
    """JSON (indented, sorted keys) through a temporary file."""
    with atomic_write(path, "w") as handle:
        json.dump(obj, handle, indent=2, sort_keys=True, default=str)
        handle.write("\n")


def atomic_save_nifti(array: Any, affine: Any, path: str | os.PathLike, header: Any = None) -> None:
    """Write a NIfTI-1 image (.nii, or gzip-compressed .nii.gz by suffix) through a temporary file.

    Passing the input image's header keeps its qform/sform codes and units; the data type follows `array`.
    """
    import gzip

    import nibabel as nib
    import numpy as np

    data = np.asarray(array)
    image = nib.Nifti1Image(data, np.asarray(affine, dtype=np.float64), header=header)
    image.set_data_dtype(data.dtype)
    payload = image.to_bytes()
    if str(path).endswith(".gz"):
        payload = gzip.compress(payload, compresslevel=6, mtime=0)
    with atomic_write(path, "wb") as handle:
        handle.write(payload)
