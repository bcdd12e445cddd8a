"""Atomic file writes and the library's error base class.

Every output of the library goes through these helpers, so an interrupted run never leaves a
half-written file under a final name: data goes to a temporary file in the same folder, is
fsync'ed, then renamed over the target with os.replace (atomic on POSIX). A failed write (disk
full, permission denied, ...) removes the temporary file, keeps the previous file and raises one
`WriteError` naming the target.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator


class OSSNetError(Exception):
    """A user-facing error: bad input, a missing file, a checkpoint of another configuration."""


class WriteError(OSSNetError, OSError):
    """An output file could not be written (disk full, permission denied, ...); the previous file is intact.

    Also an OSError (with the original `errno`), so code that handles OSErrors keeps working.
    """

    def __str__(self) -> str:  # the message as given, not OSError's "[Errno N] ..." form
        return str(self.args[0]) if self.args else ""


# What each common OSError means for a user, and what to do; "{path}" is the file or folder involved.
OS_ERROR_TEXT = {
    errno.ENOSPC: "no space left on device while writing {path} (free some space or write to another disk)",
    errno.EDQUOT: "disk quota exceeded while writing {path} (free some space or write to another disk)",
    errno.EACCES: "permission denied: {path} (check the folder's permissions)",
    errno.EPERM: "operation not permitted: {path} (check the file's owner and permissions)",
    errno.EROFS: "{path}: read-only file system (write to another folder)",
    errno.ENOTDIR: "{path}: a parent is a file, not a folder (choose another path)",
    errno.EISDIR: "{path}: is a folder, not a file (give a file name)",
    errno.ENOENT: "{path}: no such file or folder (check the path)",
    errno.EEXIST: "{path}: already exists",
    errno.ENAMETOOLONG: "{path}: file name too long (choose a shorter path)",
    errno.EMFILE: "too many open files while opening {path} (raise `ulimit -n`)",
    errno.EIO: "input/output error on {path} (the disk or network file system failed; check it)",
}


def describe_os_error(error: OSError, path: str | os.PathLike | None = None) -> str:
    """One line saying what went wrong with which file: `path`, else the file the error names."""
    named = path if path is not None else error.filename if error.filename is not None else "a file"
    text = OS_ERROR_TEXT.get(error.errno)  # type: ignore[arg-type]
    if text is not None:
        return text.format(path=named)
    return f"{named}: {error.strerror or error}"


def write_error(error: OSError, path: str | os.PathLike) -> WriteError:
    """A `WriteError` for an OSError raised while writing `path` (same errno, message in words)."""
    converted = WriteError(describe_os_error(error, path))
    converted.errno = error.errno
    converted.filename = str(path)
    return converted


def missing_folder_message(folder: str | os.PathLike) -> str:
    """Why `folder` is not a usable output folder: it does not exist, or it or a parent is a file."""
    folder = Path(folder)
    for candidate in (folder, *folder.parents):
        if candidate.exists() and not candidate.is_dir():
            where = "it" if candidate == folder else f"its parent {candidate}"
            return f"{folder}: output folder is not a folder, {where} is a file (choose another path)"
    return f"{folder}: output folder does not exist (create it first)"


def check_output_folder(folder: str | os.PathLike, role: str = "output folder") -> None:
    """Raise one WriteError unless `folder` exists writable, or could be created: writes nothing.

    Commands call this before any work, so a folder under a file, a read-only or a foreign folder fails
    at once, naming the folder, the cause and what to do; `role` names the folder's use.
    """
    folder = Path(folder)
    existing = next(p for p in (folder, *folder.parents) if p.exists() or p == p.parent)
    if existing.exists() and not existing.is_dir():
        raise WriteError(missing_folder_message(folder).replace("output folder", role))
    if not os.access(existing, os.W_OK | os.X_OK):
        message = unwritable_folder_message(existing, role if existing == folder else f"parent of the {role}")
        raise WriteError(message if existing == folder else f"{folder}: cannot create the {role}; {message}")


def prepare_output_folder(folder: str | os.PathLike, role: str = "output folder") -> Path:
    """`check_output_folder`, then create `folder` (and its parents) if needed; returns it."""
    check_output_folder(folder, role)
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise WriteError(f"cannot create the {role}: {describe_os_error(error, error.filename or folder)}") from error
    return Path(folder)


def unwritable_folder_message(folder: str | os.PathLike, role: str = "output folder") -> str:
    """"<folder>: <role> is not writable (<cause>; <what to do>)": a read-only file system or missing permission."""
    try:
        read_only = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        read_only = False
    cause = "read-only file system; write to another folder" if read_only else "permission denied; check its permissions"
    return f"{folder}: {role} is not writable ({cause})"


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
        raise WriteError(missing_folder_message(folder))
    if not os.access(folder, os.W_OK):
        raise WriteError(unwritable_folder_message(folder))
    try:
        descriptor, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    except OSError as error:
        raise write_error(error, target) from error
    try:
        os.chmod(temporary, 0o666 & ~_current_umask())  # mkstemp makes 0600; outputs get the usual permissions
        with os.fdopen(descriptor, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except BaseException as error:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        if isinstance(error, OSError) and not isinstance(error, OSSNetError):
            raise write_error(error, target) from error
        raise


def atomic_save_torch(obj: Any, path: str | os.PathLike) -> None:
    """torch.save through a temporary file.

    torch's zip writer reports a failed write (usually a full disk) as a RuntimeError such as
    "[enforce fail at inline_container.cc:672] unexpected pos ..."; it becomes a WriteError here.
    """
    import torch

    with atomic_write(path, "wb") as handle:
        try:
            torch.save(obj, handle)
        except RuntimeError as error:
            if isinstance(error.__context__, OSError):  # the write's own error, e.g. ENOSPC
                raise write_error(error.__context__, path) from error
            if "inline_container" not in str(error):
                raise
            raise WriteError(f"no space left on device (or write failed) while writing {path} "
                             f"(free some space or write to another disk)") from error


def atomic_save_json(obj: Any, path: str | os.PathLike, sort_keys: bool = True) -> None:
    """JSON (indented, sorted keys unless `sort_keys` is False: where the order means something, as the
    regions of a dataset.json) through a temporary file."""
    with atomic_write(path, "w") as handle:
        json.dump(obj, handle, indent=2, sort_keys=sort_keys, default=str)
        handle.write("\n")


def atomic_save_nifti(array: Any, affine: Any, path: str | os.PathLike, header: Any = None) -> None:
    """Write a NIfTI-1 image (.nii, or gzip-compressed .nii.gz by suffix) through a temporary file.

    Passing the input image's header keeps its qform/sform codes and units, also when `affine` is another grid's
    (the model grid's, or an output spacing's: nibabel alone would mark that qform "unknown"); the data type
    follows `array`.
    """
    import gzip

    import nibabel as nib
    import numpy as np

    data = np.asarray(array)
    matrix = np.asarray(affine, dtype=np.float64)
    if header is not None:
        header = header.copy()
        for code_key, setter in (("qform_code", header.set_qform), ("sform_code", header.set_sform)):
            if int(header[code_key]) > 0:
                setter(matrix, code=int(header[code_key]))
    image = nib.Nifti1Image(data, matrix, header=header)
    image.set_data_dtype(data.dtype)
    payload = image.to_bytes()
    if str(path).endswith(".gz"):
        payload = gzip.compress(payload, compresslevel=6, mtime=0)
    with atomic_write(path, "wb") as handle:
        handle.write(payload)


NIFTI_SUFFIXES = (".nii.gz", ".nii")


def nifti_stem(path: str | os.PathLike) -> str | None:
    """The file name without `.nii` / `.nii.gz` (any case), or None for a name that is not a NIfTI file's.

    The case id of nnU-Net-style files (`<case>.nii.gz`) and of the files `oss-net-predict` and
    `oss-net-evaluate` pair by name.
    """
    name = Path(path).name
    for suffix in NIFTI_SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return None
