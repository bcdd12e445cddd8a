"""The bad-input matrix (issue 16): every kind of bad input against every command, through the real CLIs.

Each cell breaks a copy of the small synthetic BraTS set (or the checkpoint, or the output folder), runs
one command's `main(argv)` in-process (the same edge as the console script), and asserts the exit code,
ONE error line naming the file, the problem and what to do (one of REMEDIES), and that no file anywhere
changed (dataset, output folder, predictions). `python -m oss_net.data.check` reports bad cases as a
table with exit status 1 instead of one line. The fault tests run real processes: two inference runs on
one folder, a full disk (a small tmpfs in a private mount namespace), and SIGKILL during each kind of
write, then --continue / --resume. Run with `-s` to print the matrix as a table (kind × command → handled / xfail / FAILED / n/a)
and every cell's message.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import nibabel as nib
import numpy as np
import pytest
import torch

from oss_net.data.layouts.brats import BRATS_TRAINING
from oss_net.io import OUTPUT_MANIFEST

REPOSITORY = Path(__file__).resolve().parents[1]
COMMANDS = ("check", "borders", "train", "infer", "predict", "evaluate")
TRAIN = ["--train", "--demo", "--cpu", "--uniform_sampling", "--batch_size", "1", "--training_samples", "64",
         "--max_iterations", "1", "--epochs", "1"]
RESULTS: dict[tuple[str, str], str] = {}  # (kind, command) → outcome, printed as the table at the end
MESSAGES: dict[tuple[str, str], str] = {}  # (kind, command) → the error line (or the check's first FAIL row), printed too


# --------------------------------------------------------------------------------------------- the world


@dataclass
class World:
    """One cell's files: a dataset copy, an output folder holding an earlier file, predictions and labels."""

    base: Path
    root: Path  # BraTS root
    out: Path
    preds: Path  # <case>.nii.gz predictions (for evaluate)
    labels: Path  # <case>.nii.gz labels (for evaluate)
    model: Path
    patch: pytest.MonkeyPatch  # for kinds that inject what the OS would say (root reads and writes everything)
    evaluate_flags: tuple[str, ...] = ()  # what a kind adds to evaluate's command line
    train_flags: tuple[str, ...] = ()  # what a kind adds to train's command line
    borders_output: bool = True  # borders writes into `out` (else next to each case, its default)
    predict_inputs: list[Path] | None = None  # predict's -i (default: the first case folder)

    def __post_init__(self) -> None:
        self.healthy_model = self.model  # train passes --load_model only when a kind replaced it

    @property
    def cases(self) -> list[Path]:
        return sorted(p for p in (self.root / BRATS_TRAINING).iterdir() if p.is_dir())

    def files(self, pattern: str) -> list[Path]:
        return sorted(self.root.rglob(pattern))


def _save_like(path: Path, array: np.ndarray, affine: np.ndarray | None = None) -> None:
    image = nib.load(str(path))
    nib.save(nib.Nifti1Image(array, image.affine if affine is None else affine), str(path))


def _voxels(path: Path) -> np.ndarray:
    return np.asarray(nib.load(str(path)).dataobj)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """A random-weight BraTS demo model, the same with one NaN weight, and a file that is no checkpoint."""
    from oss_net.models import build_model, demo_config, save_model

    folder = tmp_path_factory.mktemp("checkpoints")
    model = build_model(demo_config("C", "brats"))
    save_model(folder / "model.pt", model)
    name, parameter = next(iter(model.named_parameters()))
    with torch.no_grad():
        parameter.view(-1)[0] = float("nan")
    save_model(folder / "nan.pt", model)
    (folder / "corrupt.pt").write_bytes(b"PK\x03\x04 not a checkpoint at all")
    return {"model": folder / "model.pt", "nan": folder / "nan.pt", "corrupt": folder / "corrupt.pt", "nan_name": name}


@pytest.fixture
def world(synthetic_brats_root, checkpoints, tmp_path, monkeypatch) -> World:
    root = shutil.copytree(synthetic_brats_root, tmp_path / "data")
    out = tmp_path / "out"
    out.mkdir()
    (out / "earlier_result.txt").write_text("from an earlier run")
    preds, labels = tmp_path / "preds", tmp_path / "labels"
    preds.mkdir()
    labels.mkdir()
    for seg in sorted(root.rglob("*_seg.nii.gz")):
        case_id = seg.parent.name
        shutil.copy(seg, labels / f"{case_id}.nii.gz")
        shutil.copy(seg, preds / f"{case_id}.nii.gz")
    return World(tmp_path, root, out, preds, labels, checkpoints["model"], monkeypatch)


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every entry under `folder`: relative path → (size, mtime in ns) for a file, (-1, -1) for a folder.

    A folder's own mtime is left out: a lock file created and removed again changes it, not its contents.
    """
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) if p.is_file() else (-1, -1)
            for p in sorted(folder.rglob("*"))}


# ------------------------------------------------------------------------------------------------ kinds


@dataclass(frozen=True)
class Expect:
    """What the error line must hold: every one of `parts` (the file and the problem); `code` the exit status."""

    parts: tuple[str, ...]
    code: int = 2
    absent: tuple[str, ...] = ()  # what the line must not hold (a healthy sibling's name, unsafe advice)
    max_length: int | None = None  # a line a person reads, not a dump (e.g. of every key of a state dict)


@dataclass(frozen=True)
class Kind:
    description: str
    commands: tuple[str, ...]
    apply: Callable[[World, str], Expect]  # breaks the world for one command


def _missing_modality(world: World, command: str) -> Expect:
    for path in world.files("*_t1ce.nii.gz"):
        path.unlink()
    return Expect((world.cases[0].name, "missing t1ce file(s)"), 1 if command == "check" else 2)


def _label_value(value: float, problem: str) -> Callable[[World, str], Expect]:
    def apply(world: World, command: str) -> Expect:
        targets = sorted(world.labels.iterdir()) if command == "evaluate" else world.files("*_seg.nii.gz")
        if command == "evaluate" and value % 1 == 0:  # evaluate knows a label set with --regions only (see NOTES)
            world.evaluate_flags = ("--regions", "WT", "TC", "ET")
        for path in targets:
            array = _voxels(path).astype(np.float32 if value % 1 else np.uint8)
            array[1, 1, 1] = value
            _save_like(path, array)
        return Expect((f"{targets[0].name if command in ('check', 'borders') else '.nii.gz'}", problem),
                      1 if command == "check" else 2)
    return apply


def _zero_size(world: World, command: str) -> Expect:
    targets = world.files("*.nii.gz") + sorted(world.labels.iterdir()) + sorted(world.preds.iterdir())
    for path in targets:
        _save_like(path, np.zeros((0, 48, 32), nib.load(str(path)).get_data_dtype()))
    return Expect((".nii.gz: empty volume, shape (0, 48, 32) has a zero-size axis",), 1 if command == "check" else 2)


def _nan_image(world: World, command: str) -> Expect:
    for path in world.files("*_flair.nii.gz"):
        array = _voxels(path).astype(np.float32)
        array[2, 3, 4] = np.nan
        _save_like(path, array)
    return Expect(("_flair.nii.gz: image contains 1 NaN or Inf voxel(s)",), 1 if command == "check" else 2)


def _shape_mismatch(world: World, command: str) -> Expect:
    targets = sorted(world.preds.iterdir()) if command == "evaluate" else world.files("*_t1.nii.gz")
    for path in targets:
        _save_like(path, _voxels(path)[:-2])
    problem = "shape" if command != "evaluate" else "lie on different grids"
    return Expect((targets[0].name if command == "check" else ".nii.gz", problem), 1 if command == "check" else 2)


def _affine_mismatch(world: World, command: str) -> Expect:
    targets = sorted(world.preds.iterdir()) if command == "evaluate" else world.files("*_t1.nii.gz")
    for path in targets:
        affine = nib.load(str(path)).affine.copy()
        affine[:3, 3] += 5.0
        _save_like(path, _voxels(path), affine)
    problem = "lie on different grids" if command == "evaluate" else "affine differs"
    return Expect((".nii.gz", problem), 1 if command == "check" else 2)


def _truncated(world: World, command: str) -> Expect:
    pattern = "*_seg.nii.gz" if command == "borders" else "*_flair.nii.gz"  # the file each command reads
    targets = sorted(world.labels.iterdir()) if command == "evaluate" else world.files(pattern)
    for path in targets:
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    return Expect((".nii.gz", "truncated or corrupt"), 1 if command == "check" else 2)


def _image_2d(world: World, command: str) -> Expect:
    for path in world.files("*_flair.nii.gz"):
        _save_like(path, _voxels(path)[:, :, 0])
    return Expect(("_flair.nii.gz: expected a 3D volume",), 1 if command == "check" else 2)


def _empty_folder(world: World, command: str) -> Expect:
    for folder in (world.root, world.preds, world.labels):
        shutil.rmtree(folder)
        folder.mkdir()
    return Expect((world.preds.name if command == "evaluate" else world.root.name,), 2)


def _missing_folder(world: World, command: str) -> Expect:
    for folder in (world.root, world.preds, world.labels):
        shutil.rmtree(folder)
    return Expect((world.preds.name if command == "evaluate" else world.root.name,), 2)


def _path_is_a_file(world: World, command: str) -> Expect:
    for folder in (world.root, world.preds, world.labels):
        shutil.rmtree(folder)
        folder.write_text("a file where a folder should be")
    return Expect((world.preds.name if command == "evaluate" else world.root.name,), 2)


def _output_under_a_file(world: World, command: str) -> Expect:
    blocker = world.base / "a_file"
    blocker.write_text("")
    world.out = blocker / "out"
    return Expect((str(world.out), "is a file"), 2)


def _checkpoint(key: str, problem: str) -> Callable[[World, str], Expect]:
    def apply(world: World, command: str) -> Expect:
        world.model = world.model.parent / f"{key}.pt"
        return Expect((str(world.model), problem), 2)
    return apply


def declared_huge_gzip(path: Path, shape: tuple[int, ...] = (20000, 20000, 20000)) -> None:
    """Replace `path` by a ~400-byte .nii.gz whose header declares `shape` uint8 (the file's affine kept)."""
    import gzip

    header = nib.load(str(path)).header.copy()
    header.set_data_dtype(np.uint8)
    header.set_data_shape(shape)
    payload = header.binaryblock + b"\0" * 4 + bytes(range(48))  # the extension flag, then a few voxels
    path.write_bytes(gzip.compress(payload, mtime=0))


def _declared_huge(world: World, command: str) -> Expect:
    """Only the FLAIR (the label for borders and evaluate) is bad: the line must name it, not a healthy sibling."""
    pattern = "*_seg.nii.gz" if command == "borders" else "*_flair.nii.gz"
    targets = sorted(world.labels.iterdir()) if command == "evaluate" else world.files(pattern)
    for path in targets:
        declared_huge_gzip(path)
    named = ".nii.gz" if command == "evaluate" else pattern[1:]
    return Expect((named, "the header declares 20000×20000×20000 uint8 (8.0 TB)", "truncated or corrupt"),
                  1 if command == "check" else 2, absent=("_t1.nii.gz", "_t1ce.nii.gz", "_t2.nii.gz"))


def _memory_budget(world: World, command: str) -> Expect:
    """A machine with 500 kB free: a 60×60×38 file needs 547 kB (int16) to 820 kB (float32) to read; refused from
    its header."""
    from oss_net.data import nifti

    world.patch.setattr(nifti, "memory_budget", lambda: 500_000)
    return Expect((".nii.gz", "of memory to read, more than the 500.0 kB available"), 1 if command == "check" else 2)


def _bad_affine(column: Callable[[np.ndarray], None], problem: str) -> Callable[[World, str], Expect]:
    def apply(world: World, command: str) -> Expect:
        targets = world.files("*.nii.gz") if command != "evaluate" else sorted(world.preds.iterdir())
        for path in targets:
            image = nib.load(str(path))
            affine = image.affine.copy()
            column(affine)
            header = image.header.copy()  # the sform written as is (nibabel cannot turn it into a qform)
            header.set_qform(None, code=0)
            header["srow_x"], header["srow_y"], header["srow_z"] = affine[:3]
            nib.save(nib.Nifti1Image(_voxels(path), None, header), str(path))
        return Expect((".nii.gz", problem), 1 if command == "check" else 2)
    return apply


def _qform_flip(world: World, command: str) -> Expect:
    """Every file's qform is its sform mirrored left-right, both set: which one is right is the user's call."""
    targets = world.files("*.nii.gz") if command != "evaluate" else sorted(world.preds.iterdir())
    for path in targets:
        image = nib.load(str(path))
        image = nib.Nifti1Image(_voxels(path), image.affine)
        flipped = image.affine.copy()
        flipped[:, 0] *= -1
        image.set_sform(image.affine, code=1)
        image.set_qform(flipped, code=1)
        nib.save(image, str(path))
    return Expect((".nii.gz", "qform and sform disagree", "left-right flip", "--prefer sform or --prefer qform"),
                  1 if command == "check" else 2)


def _deny_reading(world: World, names: Callable[[Path], bool]) -> None:
    """Reading a file `names` picks fails as on a mode-000 file (injected: root reads every file)."""
    import builtins
    import io

    real_open = builtins.open

    def guarded(file, *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and names(Path(os.fspath(file))):
            raise PermissionError(13, "Permission denied", os.fspath(file))
        return real_open(file, *args, **kwargs)

    world.patch.setattr(builtins, "open", guarded)
    world.patch.setattr(io, "open", guarded)


def _unreadable_image(world: World, command: str) -> Expect:
    if command == "evaluate":
        _deny_reading(world, lambda path: path.parent == world.labels)
        return Expect(("permission denied reading", str(world.labels)), 2)
    pattern = "_seg.nii.gz" if command == "borders" else "_flair.nii.gz"
    _deny_reading(world, lambda path: path.name.endswith(pattern))
    return Expect(("permission denied reading", pattern, "check the permissions"), 1 if command == "check" else 2)


def _unreadable_checkpoint(world: World, command: str) -> Expect:
    world.model = Path(shutil.copy(world.model, world.base / "model.pt"))
    _deny_reading(world, lambda path: path == world.model)
    return Expect((f"permission denied reading {world.model}", "check the permissions"), 2)


def _foreign_checkpoint(kind: str) -> Callable[[World, str], Expect]:
    """A file named model.pt that holds Python objects (never unpickled), or a bare state dict of 300+ weights."""
    def apply(world: World, command: str) -> Expect:
        path = world.base / "model.pt"
        if kind == "pickle":
            torch.save({"model": argparse.Namespace(weights=[1.0])}, path)
            parts = (f"{path}: not a model checkpoint (it holds Python objects besides tensors",)
        else:
            torch.save(torch.load(world.model, weights_only=True)["model"], path)
            parts = (f"{path}: not a model checkpoint (expected keys", "in all)")
        world.model = path
        return Expect((*parts, "give a model file"), 2, absent=("weights_only", "will likely succeed"), max_length=500)
    return apply


def _non_empty_run_folder(world: World, command: str) -> Expect:
    run = world.out / "run"
    run.mkdir()
    (run / "final_model.pt").write_bytes(b"an earlier run's model")
    (run / "metrics.csv").write_text("iteration,epoch,name,value\n")
    return Expect((f"{run}: run folder is not empty (holds final_model.pt, metrics.csv)", f"--resume {run}",
                   "--overwrite"), 2)


def _read_only_dataset(world: World, command: str) -> Expect:
    """The maps go next to their cases by default; a dataset on read-only storage must point to --output."""
    from oss_net import io

    real_access = io.os.access
    cases = set(world.cases)
    world.patch.setattr(io.os, "access", lambda path, mode, **kw: False if Path(path) in cases and mode & os.W_OK
                        else real_access(path, mode, **kw))
    world.borders_output = False
    return Expect((world.cases[0].name, "case folder is not writable", "--output"), 2)


def _output_is_input(world: World, command: str) -> Expect:
    """-o (--output_dir) is a BraTS case folder (evaluate: the prediction folder); training's run folder inside it."""
    world.out = world.preds if command == "evaluate" else world.cases[0]
    named = "the output folder lies inside the input folder" if command == "train" else "the output folder is the input folder"
    return Expect((named, "choose a folder outside the inputs"), 2)


def _foreign_output(world: World, command: str) -> Expect:
    """The output folder holds a file with an output's name that this package did not write (a user's own)."""
    name = {"predict": f"{world.cases[0].name}.nii.gz", "infer": "summary.json", "evaluate": "summary.csv"}[command]
    (world.out / name).write_text("the user's own file")
    return Expect((f"{world.out / name}: already exists and was not written by this tool", "--overwrite"), 2)


def _loose_channels(problem: str) -> Callable[[World, str], Expect]:
    """predict -i with loose channel files: a 4-D file among them, a label file as a channel, one channel short."""
    def apply(world: World, command: str) -> Expect:
        flair, t1, t1ce, t2 = (next(world.cases[0].glob(f"*_{m}.nii.gz")) for m in ("flair", "t1", "t1ce", "t2"))
        seg = next(world.cases[0].glob("*_seg.nii.gz"))
        if problem == "4d":
            both = world.base / "t1_and_t1ce.nii.gz"
            nib.save(nib.Nifti1Image(np.stack([_voxels(t1), _voxels(t1ce)], axis=-1), nib.load(str(t1)).affine), str(both))
            world.predict_inputs = [flair, both, t2]
            return Expect((f"{both}: a 4-D file of 2 channels among 3 channel files", "one 3-D file per channel"))
        if problem == "label":
            world.predict_inputs = [flair, t1, t1ce, seg]
            return Expect((f"{seg}: the file name says it is a label or segmentation", "give the image files only"))
        world.predict_inputs = [flair, t1, t1ce]
        return Expect((f"{t1ce}", "has 3 channel(s) but the checkpoint expects 4 channel(s) (flair, t1, t1ce, t2)",
                       "give them in that order"))
    return apply


KINDS: dict[str, Kind] = {
    "missing_modality": Kind("a case folder without its t1ce file", ("check", "borders", "train", "infer", "predict"),
                             _missing_modality),
    "bad_label_values": Kind("label value 7 (BraTS allows 0, 1, 2, 4; evaluate with --regions)",
                             ("check", "borders", "train", "infer", "evaluate"), _label_value(7, "label values [7] outside")),
    "float_labels": Kind("a label voxel of 0.5", ("check", "borders", "train", "infer", "evaluate"),
                         _label_value(0.5, "non-integer values")),
    "zero_size_volume": Kind("every file 0×48×32", COMMANDS, _zero_size),
    "nan_image": Kind("a NaN voxel in FLAIR", ("check", "train", "infer", "predict"), _nan_image),
    "shape_mismatch": Kind("T1 (or the prediction) 2 slices short", ("check", "train", "infer", "predict", "evaluate"),
                           _shape_mismatch),
    "affine_mismatch": Kind("T1 (or the prediction) shifted 5 mm", ("check", "train", "infer", "predict", "evaluate"),
                            _affine_mismatch),
    "truncated_file": Kind("a gzip file cut in half", COMMANDS, _truncated),
    "image_2d": Kind("a 2-D FLAIR file", ("check", "train", "infer", "predict"), _image_2d),
    "empty_folder": Kind("the dataset (or prediction) folder is empty", COMMANDS, _empty_folder),
    "missing_folder": Kind("the dataset (or prediction) folder does not exist", COMMANDS, _missing_folder),
    "file_as_folder": Kind("a file where the dataset (or prediction) folder should be", COMMANDS, _path_is_a_file),
    "output_under_a_file": Kind("the output folder's parent is a file", ("borders", "train", "infer", "predict", "evaluate"),
                                _output_under_a_file),
    "nan_checkpoint": Kind("a checkpoint with a NaN weight", ("train", "infer", "predict"),
                           _checkpoint("nan", "checkpoint holds NaN or Inf weights")),
    "corrupt_checkpoint": Kind("a file that is no checkpoint", ("train", "infer", "predict"),
                               _checkpoint("corrupt", "not a")),
    # issue 24: hostile input, second round
    "declared_huge": Kind("a 400-byte .nii.gz declaring 20000³ uint8 (only FLAIR, or the label)", COMMANDS,
                          _declared_huge),
    "memory_budget": Kind("files larger than the memory available (1 MB injected)",
                          ("check", "borders", "train", "infer", "predict", "evaluate"), _memory_budget),
    "singular_affine": Kind("an affine with two equal columns (determinant 0)",
                            ("check", "train", "infer", "predict", "evaluate"),
                            _bad_affine(lambda a: a.__setitem__((slice(None), 1), a[:, 0]), "affine is degenerate")),
    "zero_column_affine": Kind("an affine with a zero column", ("check", "train", "infer", "predict", "evaluate"),
                               _bad_affine(lambda a: a.__setitem__((slice(0, 3), 2), 0.0), "affine is singular")),
    "qform_sform_flip": Kind("qform = sform mirrored left-right, both set", ("check", "train", "infer", "predict"),
                             _qform_flip),
    "unreadable_image": Kind("a mode-000 FLAIR (label; label folder for evaluate)", COMMANDS, _unreadable_image),
    "unreadable_checkpoint": Kind("a mode-000 checkpoint", ("train", "infer", "predict"), _unreadable_checkpoint),
    "pickle_checkpoint": Kind("model.pt holding a Python object (never unpickled)", ("train", "infer", "predict"),
                              _foreign_checkpoint("pickle")),
    "bare_state_dict": Kind("model.pt holding a bare state dict (300+ keys)", ("train", "infer", "predict"),
                            _foreign_checkpoint("state_dict")),
    "non_empty_run_folder": Kind("training into a folder holding an earlier run", ("train",), _non_empty_run_folder),
    "read_only_dataset": Kind("border maps next to cases on read-only storage", ("borders",), _read_only_dataset),
    "output_is_input": Kind("-o is a case folder (evaluate: the prediction folder)",
                            ("train", "infer", "predict", "evaluate"), _output_is_input),
    "foreign_output": Kind("the output folder holds a file of that name it did not write", ("infer", "predict", "evaluate"),
                           _foreign_output),
    "loose_4d_channel": Kind("-i flair, a 2-channel 4-D file, t2", ("predict",), _loose_channels("4d")),
    "label_as_channel": Kind("-i flair t1 t1ce seg", ("predict",), _loose_channels("label")),
    "channel_missing": Kind("-i flair t1 t1ce (the model takes 4)", ("predict",), _loose_channels("count")),
}

# Cells not handled yet: (kind, command) → why. They run as xfail(strict=False) and show as such in the table.
NOT_YET: dict[tuple[str, str], str] = {}  # evaluate reads through oss_net.data.nifti since issue 25: every cell runs
# Printed under the table: how a cell is run where the command's default would not see the input as bad.
NOTES = {
    ("bad_label_values", "evaluate"): "run with --regions (BraTS labels); without --regions or --labels evaluate "
                                      "knows no label set and 7 is a label by design "
                                      "(test_evaluate_without_a_label_set_scores_any_integer_label)",
}


def _cells() -> list:
    cells = []
    for kind, spec in KINDS.items():
        for command in COMMANDS:
            if command not in spec.commands:
                RESULTS[(kind, command)] = "n/a"
                continue
            marks = [pytest.mark.xfail(reason=NOT_YET[kind, command], strict=False)] if (kind, command) in NOT_YET else []
            cells.append(pytest.param(kind, command, marks=marks, id=f"{kind}-{command}"))
    return cells


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPOSITORY / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _argv(world: World, command: str) -> list[str]:
    return {
        "check": [str(world.root)],
        "borders": [str(world.root), "--device", "cpu", *(["--output", str(world.out)] if world.borders_output else [])],
        "train": [*TRAIN, "--dataset_path", str(world.root), "--output_dir", str(world.out / "run"), *world.train_flags,
                  "--load_model", str(world.model)] if world.model != world.healthy_model else
                 [*TRAIN, "--dataset_path", str(world.root), "--output_dir", str(world.out / "run"), *world.train_flags],
        "infer": ["--load_model", str(world.model), "--dataset_path", str(world.root), "--output_dir", str(world.out), "--cpu"],
        "predict": ["-i", *map(str, world.predict_inputs or [world.cases[0] if (world.root / BRATS_TRAINING).is_dir()
                                                             else world.root]),
                    "-o", str(world.out), "-m", str(world.model), "--cpu"],
        "evaluate": [str(world.preds), str(world.labels), "-o", str(world.out), *world.evaluate_flags],
    }[command]


def _main(command: str) -> Callable[[list[str]], int]:
    if command == "borders":
        return _script("generate_borders_bra_ts_2020").main
    module = {"check": "oss_net.data.check", "train": "oss_net.training.cli", "infer": "oss_net.inference.cli",
              "predict": "oss_net.predict", "evaluate": "oss_net.evaluate"}[command]
    return importlib.import_module(module).main


# What to do: every error line of the matrix holds one of these (the check's table lists problems instead).
REMEDIES = ("check the path", "check --dataset_path", "fix them", "fix or remove them", "fix the label file",
            "--skip_bad_cases", "choose another path", "use an earlier checkpoint", "re-export the file",
            "resample", "save the labels as integers", "replace them with finite values", "copy or export",
            "give one 3D volume", "give a model file", "give its folder", "give .nii", "give the folder",
            "pass --dataset", "name each prediction", "expected a folder per case", "give a complete case folder",
            "check the permissions", "free memory", "--prefer", "fix the file's affine", "--resume", "--output",
            "--overwrite", "choose a folder outside the inputs", "give the image files only", "one 3-D file per channel",
            "give them in that order")


def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if ": error: " in line]


@pytest.mark.parametrize("kind, command", _cells())
def test_bad_input(kind: str, command: str, world: World, capsys) -> None:
    RESULTS[(kind, command)] = "FAILED"
    expect = KINDS[kind].apply(world, command)
    before = _snapshot(world.base)
    code = _main(command)(_argv(world, command))
    captured = capsys.readouterr()
    if command == "check" and expect.code == 1:  # the check's table: one FAIL row per case, naming file and problem
        assert code == 1, captured.err
        failed = [line for line in captured.out.splitlines() if "  FAIL  " in line]
        MESSAGES[(kind, command)] = failed[0] if failed else captured.out
        assert failed and all(part in failed[0] for part in expect.parts), captured.out
        assert not any(part in failed[0] for part in expect.absent), failed[0]
    else:
        lines = _error_lines(captured.err)
        MESSAGES[(kind, command)] = lines[0] if lines else captured.err
        assert code == expect.code, captured.err
        assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
        assert all(part in lines[0] for part in expect.parts), lines[0]
        assert not any(part in lines[0] for part in expect.absent), lines[0]
        assert expect.max_length is None or len(lines[0]) <= expect.max_length, f"{len(lines[0])} chars: {lines[0]}"
        assert any(remedy in lines[0] for remedy in REMEDIES), f"no what-to-do in: {lines[0]}"
    assert _snapshot(world.base) == before, "files changed"
    RESULTS[(kind, command)] = "handled"


def _sha256(folder: Path) -> str:
    """One SHA-256 over every file of `folder` (relative name and bytes, in name order)."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def test_predict_from_images_into_the_labels_folder_is_refused_and_changes_nothing(world, capsys):
    """nnU-Net's layout: `oss-net-predict -i imagesTr -o labelsTr` would replace every ground-truth label with a
    prediction of the same name (a later evaluate then scores 1.0). Refused before any work, the folder unchanged."""
    from oss_net.predict import main

    RESULTS[("images_into_labels", "predict")] = "FAILED"
    images, labels = world.base / "imagesTr", world.base / "labelsTr"
    images.mkdir()
    labels.mkdir()
    for case in world.cases:
        for channel, modality in enumerate(("flair", "t1", "t1ce", "t2")):
            shutil.copy(next(case.glob(f"*_{modality}.nii.gz")), images / f"{case.name}_{channel:04d}.nii.gz")
        shutil.copy(next(case.glob("*_seg.nii.gz")), labels / f"{case.name}.nii.gz")
    before = _sha256(labels)
    assert main(["-i", str(images), "-o", str(labels), "-m", str(world.model), "--cpu"]) == 2
    (line,) = _error_lines(capsys.readouterr().err)
    after = _sha256(labels)
    print(f"\nlabelsTr sha256 before: {before}\nlabelsTr sha256 after:  {after}")
    assert f"{labels / world.cases[0].name}.nii.gz: already exists and was not written by this tool (and 3 more)" in line
    assert "--overwrite" in line and after == before and sorted(p.name for p in labels.iterdir()) == \
        sorted(f"{case.name}.nii.gz" for case in world.cases)
    MESSAGES[("images_into_labels", "predict")] = line
    RESULTS[("images_into_labels", "predict")] = "handled"


def test_predict_continue_removes_what_an_interrupted_write_left(world, capsys):
    """SIGTERM during a write leaves `.<case>.nii.gz.<random>.tmp`; the next run (--continue) removes it."""
    from oss_net.predict import main

    RESULTS[("stale_temporary", "predict")] = "FAILED"
    world.out.mkdir(exist_ok=True)
    leftover = world.out / f".{world.cases[0].name}.nii.gz.k3j2h1.tmp"
    leftover.write_bytes(b"")
    assert main(["-i", str(world.cases[0]), "-o", str(world.out), "-m", str(world.model), "--cpu", "--continue"]) == 0
    assert not leftover.exists() and (world.out / f"{world.cases[0].name}.nii.gz").is_file()
    assert (world.out / "earlier_result.txt").read_text() == "from an earlier run"
    RESULTS[("stale_temporary", "predict")] = "handled"


def test_a_case_far_from_the_training_data_is_a_warning_and_a_flag(world, caplog):
    """A FLAIR whose darkest voxels are CT air (−1024) given to a BraTS (MRI) model: predict and infer run, each
    says so in the log and in the case's record (predictions.json, the case's metrics.json)."""
    from oss_net.inference.cli import main as infer
    from oss_net.predict import main as predict

    for command in ("predict", "infer"):
        RESULTS[("far_from_training", command)] = "FAILED"
    for flair in world.files("*_flair.nii.gz"):
        array = _voxels(flair).astype(np.float32)
        array[:, :, :4] = -1024.0  # 10 % of the voxels
        _save_like(flair, array)
    expected = "channel flair (MRI): intensities down to -1024 look like CT Hounsfield units"
    with caplog.at_level("WARNING"):
        assert predict(["-i", str(world.cases[0]), "-o", str(world.out / "p"), "-m", str(world.model), "--cpu"]) == 0
    (entry,) = json.loads((world.out / "p" / "predictions.json").read_text())["cases"]
    assert any(expected in text for text in entry["input_warnings"]) and expected in caplog.text
    RESULTS[("far_from_training", "predict")] = "handled"
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert infer(["--load_model", str(world.model), "--dataset_path", str(world.cases[0]), "--output_dir",
                      str(world.out / "i"), "--cpu", "--no_mesh", "--no_overlay"]) == 0
    record = json.loads((world.out / "i" / world.cases[0].name / "metrics.json").read_text())
    assert expected in record["input_warnings"] and expected in caplog.text
    RESULTS[("far_from_training", "infer")] = "handled"


def test_predict_with_prefer_writes_the_chosen_affine(world):
    """qform mirrored against the sform: refused without --prefer (the matrix), with --prefer sform the label map is
    written on the sform's grid, its two forms agreeing."""
    from oss_net.predict import main

    RESULTS[("prefer_sform", "predict")] = "FAILED"
    _qform_flip(world, "predict")
    sform = nib.load(str(next(world.cases[0].glob("*_flair.nii.gz")))).header.get_sform()
    assert main(["-i", str(world.cases[0]), "-o", str(world.out), "-m", str(world.model), "--cpu", "--prefer", "sform"]) == 0
    header = nib.load(str(world.out / f"{world.cases[0].name}.nii.gz")).header
    assert np.allclose(header.get_best_affine(), sform, atol=1e-4)
    qform, code = header.get_qform(coded=True)
    assert code == 0 or np.allclose(qform, sform, atol=1e-3)
    RESULTS[("prefer_sform", "predict")] = "handled"


def test_evaluate_a_folder_against_itself_warns_and_an_empty_mask_is_said_in_words(world, capsys, caplog):
    from oss_net.evaluate import main

    RESULTS[("same_folder_twice", "evaluate")] = "FAILED"
    RESULTS[("empty_prediction", "evaluate")] = "FAILED"
    with caplog.at_level("WARNING"):
        assert main([str(world.labels), str(world.labels), "-o", str(world.out)]) == 0
    assert f"{world.labels} is both the prediction and the label folder" in caplog.text
    RESULTS[("same_folder_twice", "evaluate")] = "handled"
    first = sorted(world.preds.iterdir())[0]
    _save_like(first, np.zeros_like(_voxels(first)))
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert main([str(world.preds), str(world.labels), "-o", str(world.out)]) == 0
    err = capsys.readouterr().err
    assert "UndefinedMetricWarning" not in err and "warnings.warn" not in err and "scores.py" not in err
    case = first.name.removesuffix(".nii.gz")
    assert (f"{case}: exactly one of prediction and target is empty; HD95 is undefined (NaN) (left out of the mean "
            "and median, counted under 'undefined')") in caplog.text
    RESULTS[("empty_prediction", "evaluate")] = "handled"


def test_evaluate_without_a_label_set_scores_any_integer_label(world, capsys):
    """By design, not a bad input: without --regions (BraTS) evaluate knows no label set, so 7 is a label (scored by
    default as `label_7`, and foreground with --foreground)."""
    from oss_net.evaluate import main

    first = sorted(world.labels.iterdir())[0]
    array = _voxels(first).astype(np.uint8)
    array[array == 4] = 7
    assert (array == 7).any()
    _save_like(first, array)
    assert main([str(world.preds), str(world.labels), "-o", str(world.out)]) == 0, capsys.readouterr().err
    assert "label_7" in json.loads((world.out / "summary.json").read_text())["statistics"]
    assert main([str(world.preds), str(world.labels), "-o", str(world.out), "--foreground"]) == 0, capsys.readouterr().err
    rows = json.loads((world.out / "summary.json").read_text())["per_case"]
    case = next(row for row in rows if row["case"] == first.name.removesuffix(".nii.gz"))
    assert case["structure"] == "foreground" and case["dice"] == 1.0  # prediction 4 and label 7 are both foreground


@pytest.fixture(scope="module", autouse=True)
def matrix_table():
    """Print the matrix (kind × command) once the module's tests ran; visible with `pytest -s`."""
    yield
    kinds = list(KINDS) + sorted({k for k, _ in RESULTS} - set(KINDS))
    width = max(len(k) for k in kinds)
    lines = ["", f"{'kind':<{width}}  " + "  ".join(f"{c:<9}" for c in COMMANDS)]
    for kind in kinds:
        cells = [RESULTS.get((kind, c), "-") for c in COMMANDS]
        cells = ["xfail" if (kind, c) in NOT_YET and v == "FAILED" else v for (c, v) in zip(COMMANDS, cells)]
        lines.append(f"{kind:<{width}}  " + "  ".join(f"{v:<9}" for v in cells))
    run = [v for v in RESULTS.values() if v != "n/a" and v != "-"]
    lines.append(f"{sum(v == 'handled' for v in run)} of {len(run)} cells handled")
    lines += [f"note: {kind} × {command}: {note}" for (kind, command), note in NOTES.items()]
    lines += ["", "messages:"] + [f"{kind} × {command}: {text}" for (kind, command), text in sorted(MESSAGES.items())]
    print("\n".join(lines))


# ------------------------------------------------------------------------------------- faults (processes)

# Runs commands in a fresh process: `python -c HARNESS '<json>'`. The JSON names the runs (module + argv), and
# optionally a file-name fragment `stall`: the write whose fsync matches it prints "writing <file>" and then
# waits for the file `go` (forever without one), so the parent can kill the process in the middle of that write.
# Each run's exit status and stderr are printed as one JSON line. The test model kind is registered by importing
# tests/inference/conftest.py.
HARNESS = textwrap.dedent("""
    import contextlib, importlib, io, json, os, sys, time
    spec = json.loads(sys.argv[1])
    sys.path.insert(0, spec["conftest_dir"])
    import conftest  # registers the intensity model of the inference tests
    if spec.get("stall"):
        real_fsync = os.fsync
        def fsync(fd):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if spec["stall"] in os.path.basename(target):
                print("writing " + target, flush=True)
                while not (spec.get("go") and os.path.exists(spec["go"])):
                    time.sleep(0.02)
            real_fsync(fd)
        os.fsync = fsync
    for run in spec["runs"]:
        if run["module"].endswith(".py"):
            loader = importlib.util.spec_from_file_location("script", run["module"])
            module = importlib.util.module_from_spec(loader)
            loader.loader.exec_module(module)
        else:
            module = importlib.import_module(run["module"])
        err = io.StringIO()
        with contextlib.redirect_stderr(err) if spec.get("capture") else contextlib.nullcontext():
            code = module.main(run["argv"])
        print(json.dumps({"code": code, "err": err.getvalue()}), flush=True)
    sys.exit(code)  # the last run's status
""")
INFERENCE_TESTS = REPOSITORY / "tests" / "inference"
INFER = "oss_net.inference.cli"


def _spawn(runs: list[dict], stall: str | None = None, go: Path | None = None, capture: bool = False,
           prefix: list[str] = ()) -> subprocess.Popen:
    spec = {"runs": runs, "stall": stall, "go": str(go) if go else None, "capture": capture,
            "conftest_dir": str(INFERENCE_TESTS)}
    return subprocess.Popen([*prefix, sys.executable, "-c", HARNESS, json.dumps(spec)], cwd=REPOSITORY,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _kill(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL


@pytest.fixture
def intensity_checkpoint(tmp_path) -> Path:
    sys.path.insert(0, str(INFERENCE_TESTS))
    try:
        from conftest import intensity_model  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(INFERENCE_TESTS))
    from oss_net.models import save_model

    path = tmp_path / "intensity.pt"
    save_model(path, intensity_model("C"))
    return path


@pytest.fixture
def small_root(synthetic_brats_root, tmp_path) -> Path:
    """The synthetic BraTS set with its first two cases only (the fault tests run every case of it, twice)."""
    root = shutil.copytree(synthetic_brats_root, tmp_path / "small")
    for folder in sorted((root / BRATS_TRAINING).iterdir())[2:]:
        shutil.rmtree(folder)
    return root


def _infer_argv(model: Path, root: Path, out: Path, *extra: str) -> list[str]:
    return ["--load_model", str(model), "--dataset_path", str(root), "--output_dir", str(out), "--split", "all",
            "--no_mesh", "--no_overlay", *extra]


def _assert_consistent(out: Path, case_ids: list[str]) -> str:
    """Every case finished, each folder's files exactly those of its manifest, all of the last run; returns its hash."""
    from oss_net.inference import outputs

    fingerprint = json.loads((out / "inference_settings.json").read_text())["settings_hash"]
    assert {case_id: outputs.unfinished_reason(out, case_id, fingerprint) for case_id in case_ids} == dict.fromkeys(case_ids)
    assert not [p.name for p in out.iterdir() if p.name.startswith(".") and p.name not in (outputs.LOCK_FILE, OUTPUT_MANIFEST)]
    assert not list(out.rglob("*.tmp"))
    assert [row["case"] for row in json.loads((out / "summary.json").read_text())] == [*case_ids, "mean"]
    return fingerprint


def _brats_ids(root: Path) -> list[str]:
    return sorted(p.name for p in (root / BRATS_TRAINING).iterdir() if p.is_dir())


@pytest.mark.slow
def test_two_inference_runs_on_one_folder_never_mix(intensity_checkpoint, small_root, tmp_path):
    out, go = tmp_path / "out", tmp_path / "go"
    first = _spawn([{"module": INFER, "argv": _infer_argv(intensity_checkpoint, small_root, out)}],
                   stall="_mask.nii.gz", go=go)
    RESULTS[("two_runs_one_folder", "infer")] = "FAILED"
    spawned = [first]
    try:
        assert first.stdout.readline().startswith("writing "), first.stderr.read()  # the first run holds the folder
        before = _snapshot(out)
        second = _spawn([{"module": INFER, "argv": _infer_argv(intensity_checkpoint, small_root, out)}])
        third = _spawn([{"module": INFER, "argv": _infer_argv(intensity_checkpoint, small_root, out,
                                                              "--wait", "--threshold", "0.4")}])
        spawned += [second, third]
        _, err = second.communicate(timeout=300)
        lines = _error_lines(err)
        assert second.returncode == 2 and len(lines) == 1, err
        assert f"{out}: output folder is in use by another inference run (pid {first.pid})" in lines[0]
        waiting = ""
        while "waiting (--wait)" not in waiting:
            waiting = third.stderr.readline()
            assert waiting, "the waiting run ended instead of waiting"
        assert _snapshot(out) == before  # neither the refused nor the waiting run touched anything
        go.write_text("")  # let the first run finish; the third takes the folder after it
        assert first.wait(timeout=300) == 0 and third.wait(timeout=300) == 0
    finally:
        go.write_text("")
        for process in spawned:
            if process.poll() is None:
                _kill(process)
    fingerprint = _assert_consistent(out, _brats_ids(small_root))
    settings = json.loads((out / "inference_settings.json").read_text())
    assert settings["threshold"] == 0.4 and settings["settings_hash"] == fingerprint  # every case is the third run's
    RESULTS[("two_runs_one_folder", "infer")] = "handled"


def _can_unshare() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=4k tmpfs /mnt && umount /mnt"],
                           capture_output=True, timeout=30)
    return probe.returncode == 0


def _in_tmpfs(folder: Path, options: str) -> list[str]:
    """A command prefix mounting a tmpfs (`options`) on `folder` in a private mount namespace, then listing it after."""
    folder.mkdir(parents=True, exist_ok=True)
    script = ('mount -t tmpfs -o "$0" tmpfs "$1" && shift && "$@"; status=$?; '
              'find "$FOLDER" -mindepth 1 | sed "s/^/LISTED /"; exit $status')
    return ["env", f"FOLDER={folder}", "unshare", "-m", "sh", "-c", script, options, str(folder)]


def _results(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def _listed(stdout: str, folder: Path) -> list[str]:
    return sorted(str(Path(line[7:]).relative_to(folder)) for line in stdout.splitlines() if line.startswith("LISTED "))


@pytest.mark.slow
def test_disk_full_during_inference_is_one_line_and_leaves_no_partial_file(intensity_checkpoint, small_root,
                                                                          tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    RESULTS[("disk_full", "infer")] = "FAILED"
    if _can_unshare():  # a real full disk: a 12 KiB tmpfs holds the settings, not a case's occupancy grid
        process = _spawn([{"module": INFER, "argv": _infer_argv(intensity_checkpoint, small_root, out)}],
                         capture=True, prefix=_in_tmpfs(out, "size=12k"))
        stdout, stderr = process.communicate(timeout=180)
        (result,) = _results(stdout)
        code, err, left = result["code"], result["err"], _listed(stdout, out)
    else:  # no private mount namespace here: the same error injected at the write
        import errno

        import oss_net.io
        from oss_net.inference.cli import main

        def full(descriptor):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(oss_net.io.os, "fsync", full)
        out.mkdir()
        code, err = main(_infer_argv(intensity_checkpoint, small_root, out)), capsys.readouterr().err
        left = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    lines = _error_lines(err)
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert "no space left on device while writing " in lines[0] and str(out) in lines[0]
    assert not [name for name in left if name.endswith(".tmp") or ".partial" in name], left  # nothing half-written
    assert not [name for name in left if name.startswith("BraTS")], left  # no case folder
    RESULTS[("disk_full", "infer")] = "handled"


@pytest.mark.slow
@pytest.mark.parametrize("write", ["_mask.nii.gz", "manifest.json", "summary.json"])
def test_kill_during_an_inference_write_then_continue(write, intensity_checkpoint, small_root, tmp_path):
    from oss_net.inference.cli import main

    out = tmp_path / "out"
    kind = {"_mask.nii.gz": "kill_9_case_file", "manifest.json": "kill_9_manifest", "summary.json": "kill_9_summary"}[write]
    RESULTS[(kind, "infer")] = "FAILED"
    process = _spawn([{"module": INFER, "argv": _infer_argv(intensity_checkpoint, small_root, out)}], stall=write)
    try:
        assert process.stdout.readline().startswith("writing "), process.stderr.read()
    finally:
        _kill(process)
    case_ids = _brats_ids(small_root)
    finished = sorted(p.name for p in out.iterdir() if p.is_dir() and not p.name.startswith("."))
    kept = {case_id: (out / case_id / "metrics.json").stat().st_mtime_ns for case_id in finished}
    assert finished == (case_ids if write == "summary.json" else [])
    assert main(_infer_argv(intensity_checkpoint, small_root, out, "--continue")) == 0
    _assert_consistent(out, case_ids)
    assert {case_id: (out / case_id / "metrics.json").stat().st_mtime_ns for case_id in finished} == kept  # not redone
    RESULTS[(kind, "infer")] = "handled"


def test_training_into_a_used_folder_with_overwrite_moves_the_earlier_run_aside(synthetic_brats_root, tmp_path):
    """--overwrite starts a new run: the earlier run's files move into replaced_<time>/ (a user's note stays where
    it is), nothing is deleted, and the old checkpoint 40 neither prunes the new run's nor is resumed from."""
    from oss_net.training import resume
    from oss_net.training.cli import main

    RESULTS[("overwrite_run_folder", "train")] = "FAILED"
    run = tmp_path / "run"
    resume.save_checkpoint({"model": {}, "config": {}}, resume.checkpoint_path(run, 40))
    (run / "final_model.pt").write_bytes(b"the earlier run's model")
    (run / "notes.txt").write_text("mine")
    before = {p.name: p.read_bytes() for p in [run / "final_model.pt", *resume.periodic_checkpoints(run)]}
    flags = [*TRAIN[:-4], "--epochs", "1", "--max_iterations", "2", "--checkpoint_every", "1", "--keep_last", "1",
             "--dataset_path", str(synthetic_brats_root), "--output_dir", str(run), "--overwrite"]
    assert main(flags) == 0
    (aside,) = run.glob("replaced_*")
    assert {p.name: p.read_bytes() for p in [aside / "final_model.pt", *resume.periodic_checkpoints(aside)]} == before
    assert (run / "notes.txt").read_text() == "mine"
    assert [p.name for p in resume.periodic_checkpoints(run)] == ["ckpt_000000002.pt"]
    assert resume.resume_checkpoint(run)[0].name == "ckpt_000000002.pt"
    RESULTS[("overwrite_run_folder", "train")] = "handled"


def test_resume_passes_over_a_truncated_newest_checkpoint_and_says_so(synthetic_brats_root, tmp_path, capsys, caplog):
    """A newest checkpoint cut short: --resume DIR goes on from the one before and names both; --resume FILE of the
    cut one is one error line pointing to the intact one."""
    from oss_net.training import resume
    from oss_net.training.cli import main

    RESULTS[("truncated_newest_checkpoint", "train")] = "FAILED"
    run = tmp_path / "run"
    flags = [*TRAIN[:-4], "--epochs", "1", "--checkpoint_every", "1", "--keep_last", "3",
             "--dataset_path", str(synthetic_brats_root), "--output_dir", str(run)]
    assert main([*flags, "--max_iterations", "2"]) == 0
    first, newest = resume.periodic_checkpoints(run)
    newest.write_bytes(newest.read_bytes()[:1000])
    capsys.readouterr()
    assert main(["--resume", str(newest)]) == 2
    (line,) = _error_lines(capsys.readouterr().err)
    assert f"{newest}: not a readable checkpoint (not a PyTorch file, or one cut short)" in line
    assert f"the newest intact checkpoint of its run is {first}" in line
    assert main(["--resume", str(run), "--max_iterations", "2"]) == 0
    assert f"{newest}: not a readable checkpoint" in caplog.text
    assert f"resuming from the newest intact checkpoint, {first}" in caplog.text
    assert resume.load_checkpoint(resume.periodic_checkpoints(run)[-1])["training"]["position"]["iteration"] == 2
    RESULTS[("truncated_newest_checkpoint", "train")] = "handled"


@pytest.mark.slow
def test_kill_during_a_checkpoint_write_then_resume(synthetic_brats_root, tmp_path):
    from oss_net.training import resume
    from oss_net.training.cli import main

    run = tmp_path / "run"
    RESULTS[("kill_9_checkpoint", "train")] = "FAILED"
    flags = [*TRAIN[:-4], "--epochs", "5", "--checkpoint_every", "1", "--dataset_path", str(synthetic_brats_root)]
    process = _spawn([{"module": "oss_net.training.cli", "argv": [*flags, "--max_iterations", "2", "--output_dir", str(run)]}],
                     stall="ckpt_000000002.pt")
    try:
        assert process.stdout.readline().startswith("writing "), process.stderr.read()
    finally:
        _kill(process)
    assert resume.find_checkpoint(run).name == "ckpt_000000001.pt"  # the half-written one is invisible
    assert resume.load_checkpoint(resume.find_checkpoint(run))["training"]["position"]["iteration"] == 1
    assert main(["--resume", str(run), "--max_iterations", "2"]) == 0
    assert resume.find_checkpoint(run).name == "ckpt_000000002.pt" and (run / "final_model.pt").is_file()
    assert not list(run.rglob("*.tmp"))
    RESULTS[("kill_9_checkpoint", "train")] = "handled"


@pytest.mark.slow
def test_read_only_output_folder_for_every_command(world, tmp_path):
    """A read-only file system under the output folder (root ignores permission bits, so a read-only tmpfs)."""
    if not _can_unshare():
        pytest.skip("needs a private mount namespace (unshare -m as root) for a read-only file system")
    read_only = tmp_path / "read_only"
    runs = {"borders": {"module": str(REPOSITORY / "generate_borders_bra_ts_2020.py"),
                        "argv": [str(world.root), "--device", "cpu", "--output", str(read_only / "maps")]},
            "train": {"module": "oss_net.training.cli",
                      "argv": [*TRAIN, "--dataset_path", str(world.root), "--output_dir", str(read_only / "run")]},
            "infer": {"module": INFER, "argv": ["--load_model", str(world.model), "--dataset_path", str(world.root),
                                                "--output_dir", str(read_only), "--cpu"]},
            "predict": {"module": "oss_net.predict", "argv": ["-i", str(world.cases[0]), "-o", str(read_only),
                                                             "-m", str(world.model), "--cpu"]},
            "evaluate": {"module": "oss_net.evaluate", "argv": [str(world.preds), str(world.labels), "-o", str(read_only)]}}
    for command in runs:
        RESULTS[("read_only_output", command)] = "FAILED"
    process = _spawn(list(runs.values()), capture=True, prefix=_in_tmpfs(read_only, "ro,size=4k"))
    stdout, stderr = process.communicate(timeout=300)
    results = _results(stdout)
    assert len(results) == len(runs), stderr
    for command, result in zip(runs, results):
        lines = _error_lines(result["err"])
        handled = (result["code"] == 2 and len(lines) == 1 and str(read_only) in lines[0]
                   and ("read-only file system" in lines[0] or "not writable" in lines[0]))
        RESULTS[("read_only_output", command)] = "handled" if handled else "FAILED"
    assert _listed(stdout, read_only) == []
    expected = {c: "FAILED" if ("read_only_output", c) in NOT_YET else "handled" for c in runs}  # xfail cells may pass
    assert {c: RESULTS[("read_only_output", c)] for c in runs if ("read_only_output", c) not in NOT_YET} == \
        {c: v for c, v in expected.items() if v == "handled"}, results
