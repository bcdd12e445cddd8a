"""Atomic file writes and the library's error base class.

Every output of the library goes through these helpers, so an interrupted run never leaves a
half-written file under a final name: data goes to a temporary file in the same folder, is
fsync'ed, then renamed over the target with os.replace (atomic on POSIX). A failed write (disk
full, permission denied, ...) removes the temporary file, keeps the previous file and raises one
`WriteError` naming the target.

No command replaces a file it did not write: an output folder holds a small manifest (`OUTPUT_MANIFEST`)
of the entries this package wrote there (`record_outputs`); before any work a command refuses an existing
entry with an output's name that is not in it (`refuse_foreign_outputs`, unless `--overwrite`), and an
output folder that is, or lies inside, an input folder (`refuse_output_in_inputs`).
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Iterator


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
    """Write a NIfTI-1 image (.nii, or gzip-compressed .nii.gz by suffix) through a temporary file (`nifti_image`)."""
    import gzip

    payload = nifti_image(array, affine, header).to_bytes()
    if str(path).endswith(".gz"):
        payload = gzip.compress(payload, compresslevel=6, mtime=0)
    with atomic_write(path, "wb") as handle:
        handle.write(payload)


def nifti_image(array: Any, affine: Any, header: Any = None) -> Any:
    """A nibabel NIfTI-1 image of `array` on the grid of `affine`.

    Passing the input image's header keeps its qform/sform codes and units, also when `affine` is another grid's
    (the model grid's, or an output spacing's: nibabel alone would mark that qform "unknown"); a form that already
    gives `affine` stays as it is, bit for bit (so any reader, SimpleITK included, finds the input's geometry), and
    one that gives another grid (a qform that `--prefer sform` overrode) is set to `affine`; the data type follows
    `array`.
    """
    import nibabel as nib
    import numpy as np

    data = np.asarray(array)
    matrix = np.asarray(affine, dtype=np.float64)
    if header is not None:  # the header of `data` with `matrix`: its voxel sizes, and the given qform/sform codes
        header = header.copy()
        header.set_data_shape(data.shape)
        zooms = list(header.get_zooms())
        voxel_sizes = np.linalg.norm(matrix[:3, :3], axis=0)
        if not np.allclose(zooms[:3], voxel_sizes, rtol=0, atol=1e-5):  # another grid's (an output spacing's)
            zooms[:3] = voxel_sizes
            header.set_zooms(zooms)
        for code_key, getter, setter in (("qform_code", header.get_qform, header.set_qform),
                                         ("sform_code", header.get_sform, header.set_sform)):
            # a form that already gives this grid (to its float32 storage) stays as it is, bit for bit
            if int(header[code_key]) > 0 and not np.allclose(getter(), matrix, rtol=0, atol=1e-4):
                setter(matrix, code=int(header[code_key]))
    image = nib.Nifti1Image(data, matrix, header=header)
    image.set_data_dtype(data.dtype)
    return image


NIFTI_SUFFIXES = (".nii.gz", ".nii")
# Every image file suffix the commands read and write: NIfTI through nibabel; NRRD (.nrrd, or .nhdr with a
# detached data file) and MetaImage (.mha, or .mhd with a detached data file) through SimpleITK
# (`oss_net.data.formats`). A DICOM series is a folder, not a suffix.
IMAGE_SUFFIXES = NIFTI_SUFFIXES + (".nrrd", ".nhdr", ".mha", ".mhd")


def image_suffix(path: str | os.PathLike) -> str | None:
    """The image suffix of a file name (`IMAGE_SUFFIXES`, lower case: ".nii.gz", ".nrrd", ...), or None."""
    name = Path(path).name.lower()
    return next((suffix for suffix in IMAGE_SUFFIXES if name.endswith(suffix) and len(name) > len(suffix)), None)


def image_stem(path: str | os.PathLike) -> str | None:
    """The file name without its image suffix (any case), or None for a name that is not an image file's.

    The case id of nnU-Net-style files (`<case>.nii.gz`, `<case>.nrrd`, ...) and of the files
    `oss-net-predict` and `oss-net-evaluate` pair by name.
    """
    suffix = image_suffix(path)
    return None if suffix is None else Path(path).name[: -len(suffix)]


# ------------------------------------------------------------------ what a command wrote in an output folder

OUTPUT_MANIFEST = ".oss_net_outputs.json"  # per output folder: every entry this package wrote there
OUTPUTS_LOCK = ".oss_net_outputs.lock"  # exists while a process changes the folder's shared files (`outputs_lock`)
HELD_OUTPUT_LOCKS: dict[str, int] = {}  # output folder → how deeply this process holds its `outputs_lock`


def acquire_lock(path: str | os.PathLike, on_busy: Callable[[str], None] | None = None) -> int:
    """A descriptor of `path` (created if needed) holding its exclusive `fcntl.flock`, which the kernel releases when
    the process dies (so a killed process never leaves a stale lock). When another process holds it, `on_busy(its
    pid)` is called once (it may raise to give up), then this waits. The holder removes the file before it lets go
    (`held_lock`); a waiter that then finds another file (or none) under the name locks again, so two processes
    never both believe they hold it."""
    path = Path(path)
    announced = False
    while True:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                if on_busy is not None and not announced:
                    announced = True
                    on_busy(lock_holder(descriptor))
                fcntl.flock(descriptor, fcntl.LOCK_EX)
            except BaseException:
                os.close(descriptor)
                raise
        try:
            current, held = os.stat(path), os.fstat(descriptor)
            if (current.st_dev, current.st_ino) == (held.st_dev, held.st_ino):
                return descriptor
        except FileNotFoundError:
            pass
        os.close(descriptor)  # the previous holder removed the file we locked: lock the new one


def lock_holder(descriptor: int) -> str:
    """The pid written in a lock file, or "unknown" while its holder has not written it yet."""
    text = os.pread(descriptor, 32, 0).decode(errors="replace").strip()
    return text if text.isdigit() else "unknown"


@contextlib.contextmanager
def held_lock(path: str | os.PathLike, on_busy: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold the lock file `path` (`acquire_lock`, this pid written in it); removed when let go."""
    descriptor = acquire_lock(path, on_busy)
    try:
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(descriptor)


@contextlib.contextmanager
def outputs_lock(folder: str | os.PathLike) -> Iterator[None]:
    """Hold the output folder's short lock while its shared files change: the manifest, a record of every case, a
    summary. Several processes writing into one folder (sharded prediction, `oss_net.inference.sharding`) take
    turns at these read-modify-writes, so none loses another's entries. Re-entrant within a process; a folder that
    does not exist yet holds nothing to protect."""
    key = str(Path(folder).resolve())
    if key in HELD_OUTPUT_LOCKS or not os.path.isdir(key):
        HELD_OUTPUT_LOCKS[key] = HELD_OUTPUT_LOCKS.get(key, 0) + 1
        try:
            yield
        finally:
            HELD_OUTPUT_LOCKS[key] -= 1
            if not HELD_OUTPUT_LOCKS[key]:
                del HELD_OUTPUT_LOCKS[key]
        return
    with held_lock(Path(key) / OUTPUTS_LOCK):
        HELD_OUTPUT_LOCKS[key] = 1
        try:
            yield
        finally:
            del HELD_OUTPUT_LOCKS[key]


def recorded_outputs(folder: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """The output folder's manifest: entry name → {"size", "mtime_ns"} (a file) or {"folder": True}; {} when none."""
    try:
        record = json.loads((Path(folder) / OUTPUT_MANIFEST).read_text())
    except (OSError, ValueError):
        return {}
    entries = record.get("entries") if isinstance(record, dict) else None
    return entries if isinstance(entries, dict) else {}


def foreign_outputs(folder: str | os.PathLike, names: Iterable[str],
                    ours: Callable[[Path], bool] | None = None) -> list[Path]:
    """The entries among `names` (relative to `folder`) that exist but that this package did not write there: not
    in the manifest, or a file changed since (another size or modification time). `ours`: what else marks an
    entry as written by this package (an inference case folder holds its own manifest)."""
    folder = Path(folder)
    recorded = recorded_outputs(folder)
    foreign = []
    for name in dict.fromkeys(names):
        path = folder / name
        if not os.path.lexists(path) or (ours is not None and ours(path)):
            continue
        entry = recorded.get(str(name))
        if entry is None or (not entry.get("folder") and not _same_file(path, entry)):
            foreign.append(path)
    return foreign


def refuse_foreign_outputs(folder: str | os.PathLike, names: Iterable[str], overwrite: bool = False,
                           flag: str = "--overwrite", ours: Callable[[Path], bool] | None = None) -> None:
    """Before any work: raise WriteError naming the first entry among `names` that exists in `folder` but was not
    written by this package (`foreign_outputs`), unless `overwrite`. A command never replaces what the user had."""
    if overwrite:
        return
    foreign = foreign_outputs(folder, names, ours)
    if foreign:
        more = f" (and {len(foreign) - 1} more)" if len(foreign) > 1 else ""
        raise WriteError(f"{foreign[0]}: already exists and was not written by this tool{more}; it is never "
                         f"replaced: choose another output folder, or pass {flag} to replace it")


def record_outputs(folder: str | os.PathLike, paths: Iterable[str | os.PathLike]) -> None:
    """Add `paths` (entries of `folder` this package just wrote) to the folder's manifest, atomically, under the
    folder's `outputs_lock`."""
    folder = Path(folder)
    with outputs_lock(folder):  # other processes sharing the folder record theirs too
        entries = recorded_outputs(folder)
        for path in paths:
            path = Path(path)
            name = str(path.relative_to(folder)) if path.is_absolute() else str(path)
            target = folder / name
            if target.is_dir():
                entries[name] = {"folder": True}
            elif target.is_file():
                stat = target.stat()
                entries[name] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        atomic_save_json({"written_by": "oss_net", "entries": entries}, folder / OUTPUT_MANIFEST)


def _same_file(path: Path, entry: dict[str, Any]) -> bool:
    try:
        stat = path.stat()
    except OSError:
        return False
    return path.is_file() and stat.st_size == entry.get("size") and stat.st_mtime_ns == entry.get("mtime_ns")


def refuse_output_in_inputs(output: str | os.PathLike, inputs: Iterable[str | os.PathLike], option: str = "-o") -> None:
    """Raise WriteError when the output folder is one of the input folders or lies inside one: its outputs would mix
    with (or replace) the inputs, and the next read of the inputs would find them."""
    resolved = Path(output).resolve()
    for folder in dict.fromkeys(Path(p).resolve() for p in inputs):
        if resolved == folder or folder in resolved.parents:
            where = "is the input folder" if resolved == folder else f"lies inside the input folder {folder}"
            raise WriteError(f"{output}: the output folder {where}; outputs would mix with the inputs "
                             f"(choose a folder outside the inputs for {option})")


def remove_stale_temporaries(folder: str | os.PathLike, names: Iterable[str]) -> list[Path]:
    """Remove the temporary files interrupted atomic writes of `names` left in `folder` (`.<name>.<random>.tmp`,
    never valid files, beside each name: a name may lie in a subfolder, `probabilities/<case>.nii.gz`); returns
    them. A temporary folder of that name (SimpleITK's writes, `oss_net.data.formats`) goes too. Only this
    package's own temporaries of these outputs are touched."""
    folder = Path(folder)
    removed = []
    for name in dict.fromkeys(names):
        place = folder / Path(name).parent
        for leftover in place.glob(f".{glob.escape(Path(name).name)}.*.tmp") if place.is_dir() else ():
            if leftover.is_file():
                leftover.unlink(missing_ok=True)
                removed.append(leftover)
            elif leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
                removed.append(leftover)
    return removed
