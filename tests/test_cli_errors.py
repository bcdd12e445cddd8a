"""The edge of every command (oss_net.cli_errors): one line on stderr, exit 2 for bad input, 1 for a bug.

The second half runs the real commands (check, borders, train, infer, evaluate) in-process through
their `main(argv)` on broken copies of the small synthetic datasets.
"""
from __future__ import annotations

import argparse
import errno
import importlib.util
import shutil
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from oss_net.cli_errors import EXIT_BAD_INPUT, EXIT_INTERNAL, add_verbose_flag, run_command
from oss_net.data import DatasetError
from oss_net.data.layouts.brats import BRATS_TRAINING

REPOSITORY = Path(__file__).resolve().parents[1]


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def _raise(error: BaseException):
    def body():
        raise error

    return body


# ------------------------------------------------------------------------------------------- the edge


def test_library_error_is_one_line_with_exit_status_2(capsys):
    code = run_command(_raise(DatasetError("/data/x.nii: file not found")), prog="oss-net-x")
    captured = capsys.readouterr()
    assert code == EXIT_BAD_INPUT == 2
    assert _lines(captured.err) == ["oss-net-x: error: /data/x.nii: file not found"]
    assert captured.out == ""


def test_pau_error_is_bad_input(capsys):
    from pade_activation_unit import PAUError

    assert run_command(_raise(PAUError("numerator degree must be >= 0")), prog="p") == EXIT_BAD_INPUT
    assert _lines(capsys.readouterr().err) == ["p: error: numerator degree must be >= 0"]


def test_internal_error_is_one_line_pointing_at_the_saved_traceback(capsys):
    code = run_command(_raise(ZeroDivisionError("division by zero")), prog="prog")
    lines = _lines(capsys.readouterr().err)
    assert code == EXIT_INTERNAL == 1 and len(lines) == 1
    assert lines[0].startswith("prog: internal error (a bug, please report it): ZeroDivisionError: division by zero")
    saved = Path(lines[0].split("traceback in ")[1].rstrip(")"))
    text = saved.read_text()
    saved.unlink()
    assert text.startswith("Traceback (most recent call last):") and "ZeroDivisionError: division by zero" in text


@pytest.mark.parametrize("error, status", [(DatasetError("a.nii: bad"), 2), (KeyError("oops"), 1)])
def test_verbose_prints_the_traceback_and_still_the_line(capsys, error, status):
    assert run_command(_raise(error), prog="prog", verbose=True) == status
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):") and "in body" in err
    assert _lines(err)[-1].startswith("prog: error: a.nii: bad" if status == 2 else "prog: internal error")


def test_status_of_the_body_is_returned_and_none_means_success(capsys):
    assert run_command(lambda: 1, prog="p") == 1 and run_command(lambda: None, prog="p") == 0
    assert capsys.readouterr().err == ""


def test_keyboard_interrupt_is_one_line_with_status_130(capsys):
    assert run_command(_raise(KeyboardInterrupt()), prog="p") == 130
    assert _lines(capsys.readouterr().err) == ["p: interrupted"]


def test_an_interrupted_run_names_the_exact_command_that_goes_on(capsys, monkeypatch):
    from oss_net.cli_errors import Interrupted, invocation, with_flag

    monkeypatch.setattr(sys.modules["__main__"], "__spec__", None)  # as a console script or a script file runs
    monkeypatch.setattr(sys, "argv", ["/venv/bin/oss-net-predict", "-i", "my scans", "-o", "out"])
    assert invocation() == ["oss-net-predict"] and with_flag(None, "--continue")[-1] == "--continue"
    assert run_command(_raise(KeyboardInterrupt()), prog="p", continue_with=with_flag(None, "--continue")) == 130
    assert _lines(capsys.readouterr().err) == [
        "p: interrupted; to go on where it stopped: oss-net-predict -i 'my scans' -o out --continue"]
    assert with_flag(["-i", "x", "--continue"], "--continue") == ["-i", "x", "--continue"]
    monkeypatch.setattr(sys, "argv", ["train_oss_net.py", "--train"])
    assert run_command(_raise(Interrupted(["--resume", "runs/x"])), prog="t", continue_with=["--train"]) == 130
    assert _lines(capsys.readouterr().err) == ["t: interrupted; to go on where it stopped: python train_oss_net.py "
                                               "--resume runs/x"]


@pytest.mark.parametrize("code, path, expected", [
    (errno.ENOSPC, "/out/model.pt", "no space left on device while writing /out/model.pt (free some space or write to another disk)"),
    (errno.EACCES, "/out/model.pt", "permission denied: /out/model.pt (check the folder's permissions)"),
    (errno.ENOTDIR, "/out/file/run", "/out/file/run: a parent is a file, not a folder (choose another path)"),
    (errno.EROFS, "/mnt/ro/x.json", "/mnt/ro/x.json: read-only file system (write to another folder)"),
    (errno.ENOENT, "/nowhere/x", "/nowhere/x: no such file or folder (check the path)"),
    (errno.EBUSY, "/out/x", "/out/x: Device or resource busy"),  # any other errno: its own words
])
def test_os_errors_are_put_in_words(capsys, code, path, expected):
    import os

    assert run_command(_raise(OSError(code, os.strerror(code), path)), prog="p") == EXIT_BAD_INPUT
    assert _lines(capsys.readouterr().err) == [f"p: error: {expected}"]


class _BrokenCases(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int):
        raise DatasetError("/data/case_7/flair.nii.gz: image contains 3 NaN or Inf voxel(s)")


def test_error_in_a_dataloader_worker_is_reported_as_the_original(capsys):
    loader = torch.utils.data.DataLoader(_BrokenCases(), num_workers=1)
    assert run_command(lambda: next(iter(loader)), prog="train") == EXIT_BAD_INPUT
    assert _lines(capsys.readouterr().err) == [
        "train: error: /data/case_7/flair.nii.gz: image contains 3 NaN or Inf voxel(s)"]


def test_verbose_flag_is_added_once():
    parser = argparse.ArgumentParser()
    add_verbose_flag(parser)
    add_verbose_flag(parser)  # a parser that has --verbose keeps its own
    assert parser.parse_args(["--verbose"]).verbose and not parser.parse_args([]).verbose


# ------------------------------------------------------------------------------ the real commands


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPOSITORY / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _empty_copy(source: Path, target: Path) -> Path:
    """A copy of a synthetic dataset whose every NIfTI file holds a (0, 48, 32) volume."""
    shutil.copytree(source, target)
    for path in target.rglob("*.nii*"):
        image = nib.load(str(path))
        nib.save(nib.Nifti1Image(np.zeros((0, 48, 32), image.get_data_dtype()), image.affine), str(path))
    return target


@pytest.fixture
def empty_brats(synthetic_brats_root, tmp_path) -> Path:
    return _empty_copy(synthetic_brats_root, tmp_path / "empty_brats")


@pytest.fixture
def brats_model(tmp_path) -> Path:
    from oss_net.models import build_model, demo_config, save_model

    path = tmp_path / "model.pt"
    save_model(path, build_model(demo_config("C", "brats")))
    return path


def _assert_one_line(err: str, *parts: str) -> None:
    """Exactly one error line on stderr (progress bars aside), holding every part; no traceback."""
    lines = [line for line in _lines(err) if ": error: " in line]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert all(part in lines[0] for part in parts), lines[0]


def test_check_lists_every_empty_volume(empty_brats, capsys):
    from oss_net.data.check import main

    assert main([str(empty_brats)]) == 1
    out = capsys.readouterr().out
    assert out.count("empty volume, shape (0, 48, 32) has a zero-size axis") >= 4
    assert "4 case(s): 0 ok, 0 with warnings, 4 failed" in out


def test_check_of_a_missing_folder_is_one_line_with_status_2(tmp_path, capsys):
    from oss_net.data.check import main

    assert main([str(tmp_path / "nowhere"), "--dataset", "brats"]) == EXIT_BAD_INPUT
    _assert_one_line(capsys.readouterr().err, f"python -m oss_net.data.check: error: {tmp_path / 'nowhere'}: dataset folder not found")


def test_borders_refuse_an_empty_volume(empty_brats, capsys):
    assert _script("generate_borders_bra_ts_2020").main([str(empty_brats), "--device", "cpu"]) == EXIT_BAD_INPUT
    _assert_one_line(capsys.readouterr().err, "_seg.nii.gz: empty volume")
    assert not list(empty_brats.rglob("*_border.nii.gz"))


def test_borders_into_an_output_under_a_file(synthetic_brats_root, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    code = _script("generate_borders_bra_ts_2020").main([str(synthetic_brats_root), "--output", str(blocker / "maps")])
    assert code == EXIT_BAD_INPUT
    _assert_one_line(capsys.readouterr().err, f"{blocker / 'maps'}: output folder is not a folder, its parent {blocker} is a file")


def test_borders_refuse_a_stored_map_of_the_wrong_shape(synthetic_lits_root, tmp_path, capsys):
    root = shutil.copytree(synthetic_lits_root, tmp_path / "lits")
    stale = root / "border-0.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8), np.uint8), np.eye(4)), str(stale))
    assert _script("generate_borders_lits").main([str(root), "--device", "cpu"]) == EXIT_BAD_INPUT
    _assert_one_line(capsys.readouterr().err, f"{stale}: shape (8, 8, 8) differs from", "delete it or rerun with --overwrite")
    assert not (root / "border-1.nii.gz").exists()  # the run stops at the stale map
    assert _script("generate_borders_lits").main([str(root), "--device", "cpu", "--overwrite"]) == 0
    assert nib.load(str(stale)).shape == nib.load(str(root / "segmentation-0.nii")).shape


TRAIN = ["--train", "--demo", "--cpu", "--uniform_sampling", "--batch_size", "1", "--training_samples", "64",
         "--max_iterations", "1", "--epochs", "1"]


def test_training_refuses_an_empty_volume(empty_brats, tmp_path, capsys):
    from oss_net.training.cli import main

    assert main([*TRAIN, "--dataset_path", str(empty_brats), "--output_dir", str(tmp_path / "run")]) == EXIT_BAD_INPUT
    _assert_one_line(capsys.readouterr().err, "error: ", "empty volume, shape (0, 48, 32) has a zero-size axis")


def test_training_output_and_cache_folders_are_checked_before_any_work(synthetic_brats_root, tmp_path, capsys):
    from oss_net.training.cli import main

    blocker = tmp_path / "a_file"
    blocker.write_text("")
    common = [*TRAIN, "--dataset_path", str(synthetic_brats_root)]
    assert main([*common, "--output_dir", str(blocker / "run")]) == EXIT_BAD_INPUT
    _assert_one_line(capsys.readouterr().err, f"{blocker / 'run'}: run folder is not a folder, its parent {blocker} is a file")
    run = tmp_path / "run"
    assert main([*common, "--output_dir", str(run), "--cache_dir", str(blocker / "cache")]) == EXIT_BAD_INPUT
    _assert_one_line(capsys.readouterr().err, f"{blocker / 'cache'}: cache folder is not a folder")
    assert not run.exists()


def test_training_output_folder_without_permission(synthetic_brats_root, tmp_path, capsys, monkeypatch):
    import oss_net.io

    run = tmp_path / "run"
    run.mkdir()
    real_access = oss_net.io.os.access
    monkeypatch.setattr(oss_net.io.os, "access", lambda path, mode: Path(path) != run and real_access(path, mode))
    from oss_net.training.cli import main

    assert main([*TRAIN, "--dataset_path", str(synthetic_brats_root), "--output_dir", str(run)]) == EXIT_BAD_INPUT
    _assert_one_line(capsys.readouterr().err, f"{run}: run folder is not writable (permission denied; check its permissions)")
    assert not list(run.iterdir())


def test_inference_refuses_an_empty_volume(empty_brats, brats_model, tmp_path, capsys):
    from oss_net.inference.cli import main

    case = next((empty_brats / BRATS_TRAINING).iterdir())
    out = tmp_path / "out"
    assert main(["--load_model", str(brats_model), "--dataset_path", str(case), "--output_dir", str(out), "--cpu"]) == 2
    _assert_one_line(capsys.readouterr().err, "error: ", "empty volume, shape (0, 48, 32) has a zero-size axis")
    assert not (out / case.name).exists()


def test_lits_inference_refuses_an_empty_volume(synthetic_lits_root, tmp_path, capsys):
    from oss_net.inference.cli import main
    from oss_net.models import build_model, demo_config, save_model

    root = _empty_copy(synthetic_lits_root, tmp_path / "lits")
    model = tmp_path / "lits.pt"
    save_model(model, build_model(demo_config("C", "lits", volume_shape=(32, 32, 32))))
    out = tmp_path / "out"
    code = main(["--load_model", str(model), "--dataset_path", str(root / "volume-0.nii"), "--output_dir", str(out),
                 "--cpu", "--dataset", "lits"])
    assert code == 2
    _assert_one_line(capsys.readouterr().err, "volume-0.nii: empty volume")


def test_inference_refuses_a_checkpoint_with_nan_weights(synthetic_brats_root, tmp_path, capsys):
    from oss_net.inference.cli import main
    from oss_net.models import build_model, demo_config, save_model

    model = build_model(demo_config("C", "brats"))
    name = next(name for name, _ in model.named_parameters())
    with torch.no_grad():
        dict(model.named_parameters())[name].view(-1)[0] = float("nan")
    checkpoint = tmp_path / "nan.pt"
    save_model(checkpoint, model)
    out = tmp_path / "out"
    assert main(["--load_model", str(checkpoint), "--dataset_path", str(synthetic_brats_root), "--output_dir", str(out)]) == 2
    _assert_one_line(capsys.readouterr().err, f"{checkpoint}: checkpoint holds NaN or Inf weights in {name}")
    assert not out.exists()


def test_evaluate_of_a_missing_folder_is_one_line(tmp_path, capsys):
    from oss_net.evaluate import main

    assert main([str(tmp_path / "nowhere"), str(tmp_path)]) == 2
    _assert_one_line(capsys.readouterr().err, ": error: ", "nowhere: not a folder")


def test_a_bug_in_a_command_exits_1_with_one_line(synthetic_brats_root, tmp_path, capsys, monkeypatch):
    import oss_net.data.check

    monkeypatch.setattr(oss_net.data.check, "check_dataset", lambda root, dataset: [][0])
    assert oss_net.data.check.main([str(synthetic_brats_root)]) == EXIT_INTERNAL
    line = _lines(capsys.readouterr().err)
    assert len(line) == 1 and line[0].startswith("python -m oss_net.data.check: internal error (a bug")
    Path(line[0].split("traceback in ")[1].rstrip(")")).unlink()
    assert oss_net.data.check.main([str(synthetic_brats_root), "--verbose"]) == EXIT_INTERNAL
    assert "IndexError: list index out of range" in capsys.readouterr().err


def test_check_runs_as_a_module_with_its_own_name(tmp_path):
    import subprocess

    result = subprocess.run([sys.executable, "-m", "oss_net.data.check", str(tmp_path / "nowhere")],
                            capture_output=True, text=True, cwd=REPOSITORY, timeout=120)
    assert result.returncode == EXIT_BAD_INPUT
    assert _lines(result.stderr) == [f"python -m oss_net.data.check: error: {tmp_path / 'nowhere'}: dataset folder not found "
                                    "(check the path)"]


def test_evaluate_refuses_an_empty_volume(tmp_path, capsys):
    from oss_net.evaluate import main

    for folder in ("pred", "label"):
        (tmp_path / folder).mkdir()
        nib.save(nib.Nifti1Image(np.zeros((0, 48, 32), np.uint8), np.eye(4)), str(tmp_path / folder / "c1.nii.gz"))
    assert main([str(tmp_path / "pred"), str(tmp_path / "label"), "-o", str(tmp_path / "scores")]) == EXIT_BAD_INPUT
    _assert_one_line(capsys.readouterr().err, f"{tmp_path / 'label' / 'c1.nii.gz'}: empty volume, shape (0, 48, 32)")
    assert not (tmp_path / "scores").exists()


def test_a_data_error_in_a_training_worker_is_one_line(synthetic_brats_root, tmp_path, capsys):
    from oss_net.training.cli import main

    root = shutil.copytree(synthetic_brats_root, tmp_path / "root")
    for case in (root / BRATS_TRAINING).iterdir():  # every case, whichever the sampler draws first
        flair = next(case.glob("*_flair.nii.gz"))
        image = nib.load(str(flair))
        array = np.asarray(image.dataobj).astype(np.float32)
        array[1, 2, 3] = np.nan
        nib.save(nib.Nifti1Image(array, image.affine), str(flair))
    code = main([*TRAIN, "--num_workers", "1", "--dataset_path", str(root), "--output_dir", str(tmp_path / "run")])
    assert code == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    _assert_one_line(err, "_flair.nii.gz: image contains 1 NaN or Inf voxel(s)")
    assert "DataLoader worker" not in err


class _BuggyCases(_BrokenCases):
    def __getitem__(self, index: int):
        return {}["missing key"]


def test_a_bug_in_a_dataloader_worker_is_one_line_with_status_1(capsys):
    loader = torch.utils.data.DataLoader(_BuggyCases(), num_workers=1)
    assert run_command(lambda: next(iter(loader)), prog="train") == EXIT_INTERNAL
    lines = _lines(capsys.readouterr().err)
    assert len(lines) == 1 and lines[0].startswith("train: internal error (a bug, please report it): KeyError: 'missing key'")
    Path(lines[0].split("traceback in ")[1].rstrip(")")).unlink()


def test_os_error_without_errno_keeps_its_message_on_one_line(capsys):
    assert run_command(_raise(OSError("device went away\nmore detail")), prog="p") == EXIT_BAD_INPUT
    assert _lines(capsys.readouterr().err) == ["p: error: device went away; more detail"]



def test_evaluate_checks_its_output_folder_before_scoring(tmp_path, capsys):
    from oss_net.evaluate import main

    blocker = tmp_path / "a_file"
    blocker.write_text("")
    assert main([str(tmp_path), str(tmp_path), "-o", str(blocker / "scores")]) == EXIT_BAD_INPUT
    _assert_one_line(capsys.readouterr().err, f"{blocker / 'scores'}: output folder is not a folder, its parent {blocker} is a file")


def test_a_multi_line_message_is_printed_on_one_line_naming_every_file() -> None:
    from oss_net.cli_errors import one_line

    assert one_line("2 bad case folder(s):\n/d/a: missing t1\n/d/b: missing t2\n") == \
        "2 bad case folder(s): /d/a: missing t1; /d/b: missing t2"
    assert one_line("first\nsecond") == "first; second"
    assert one_line("just one") == "just one"
