"""oss_net.io: writes are atomic and NIfTI output keeps the affine."""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch

from oss_net.io import OSSNetError, WriteError, atomic_save_json, atomic_save_nifti, atomic_save_torch, atomic_write


def test_failed_write_keeps_previous_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "result.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_write(target, "w") as handle:
            handle.write("half of the new cont")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.txt"]


def test_missing_output_folder_is_a_clear_error(tmp_path):
    with pytest.raises(OSSNetError, match="output folder does not exist"):
        atomic_save_json({"a": 1}, tmp_path / "missing" / "x.json")


def test_torch_and_json_round_trip(tmp_path):
    atomic_save_torch({"w": torch.arange(5)}, tmp_path / "w.pt")
    assert torch.equal(torch.load(tmp_path / "w.pt", weights_only=True)["w"], torch.arange(5))
    atomic_save_json({"b": 2, "a": [1.5]}, tmp_path / "x.json")
    assert (tmp_path / "x.json").read_text() == '{\n  "a": [\n    1.5\n  ],\n  "b": 2\n}\n'


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_nifti_keeps_affine_shape_and_values(tmp_path, suffix):
    affine = np.array([[0.9, 0, 0, -90.0], [0, 1.1, 0, 12.5], [0, 0, 2.0, -30.0], [0, 0, 0, 1]])
    data = np.random.default_rng(0).integers(0, 3, size=(5, 6, 7)).astype(np.uint8)
    path = tmp_path / f"mask{suffix}"
    atomic_save_nifti(data, affine, path)
    loaded = nib.load(str(path))
    np.testing.assert_array_equal(np.asarray(loaded.dataobj), data)
    np.testing.assert_allclose(loaded.affine, affine)
    assert loaded.get_data_dtype() == np.uint8


def test_written_files_follow_the_umask_not_mkstemp_private_mode(tmp_path):
    import os

    previous = os.umask(0o022)
    try:
        atomic_save_json({}, tmp_path / "public.json")
    finally:
        os.umask(previous)
    assert (tmp_path / "public.json").stat().st_mode & 0o777 == 0o644


class FullDiskFile:
    """A file object whose writes fail with ENOSPC once `capacity` bytes are written (a full disk)."""

    def __init__(self, handle, capacity: int) -> None:
        self.handle, self.capacity, self.written = handle, capacity, 0

    def write(self, data):
        self.written += len(data)
        if self.written > self.capacity:
            import errno
            import os

            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self.handle.write(data)

    def __getattr__(self, name):
        return getattr(self.handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.close()


@pytest.fixture
def full_disk(monkeypatch):
    """Every atomic write gets a file that fails with ENOSPC after 64 bytes."""
    import os

    import oss_net.io

    real_fdopen = os.fdopen
    monkeypatch.setattr(oss_net.io.os, "fdopen", lambda fd, mode: FullDiskFile(real_fdopen(fd, mode), 64))


def test_disk_full_during_torch_save_keeps_the_previous_checkpoint(tmp_path, full_disk):
    from oss_net.io import WriteError
    from oss_net.models import build_model, demo_config, save_model

    target = tmp_path / "best_model.pt"
    previous = {"w": torch.arange(5)}
    torch.save(previous, target)
    model = build_model(demo_config("A", "lits", volume_shape=(32, 32, 32)))
    with pytest.raises(WriteError, match=f"no space left on device while writing {target} ") as error:
        save_model(target, model)
    assert isinstance(error.value, OSError) and error.value.errno == 28  # ENOSPC, still an OSError for callers
    assert torch.equal(torch.load(target, weights_only=True)["w"], previous["w"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best_model.pt"]
    with pytest.raises(WriteError, match="no space left on device while writing"):
        atomic_save_json({"rows": list(range(100))}, tmp_path / "summary.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best_model.pt"]


def test_torch_write_failure_without_an_os_error_is_a_write_error(tmp_path, monkeypatch):
    from oss_net.io import WriteError

    def failing_save(obj, handle):
        handle.write(b"PK\x03\x04 half")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 228 vs 0")

    monkeypatch.setattr(torch, "save", failing_save)
    target = tmp_path / "ckpt.pt"
    with pytest.raises(WriteError, match=rf"no space left on device \(or write failed\) while writing {target}"):
        atomic_save_torch({}, target)
    assert list(tmp_path.iterdir()) == []


def test_other_torch_errors_pass_through(tmp_path):
    with pytest.raises(Exception) as error:
        atomic_save_torch(lambda: None, tmp_path / "x.pt")  # a lambda cannot be pickled
    assert "inline_container" not in str(error.value) and list(tmp_path.iterdir()) == []


def test_output_folder_under_a_file_names_the_file(tmp_path):
    from oss_net.io import WriteError, check_output_folder, prepare_output_folder

    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(WriteError, match=f"{blocker / 'out' / 'run'}: run folder is not a folder, its parent {blocker} is a file"):
        prepare_output_folder(blocker / "out" / "run", "run folder")
    with pytest.raises(WriteError, match=f"{blocker}: output folder is not a folder, it is a file"):
        check_output_folder(blocker)
    with pytest.raises(WriteError, match=f"{blocker}: output folder is not a folder, it is a file"):
        atomic_save_json({}, blocker / "x.json")
    check_output_folder(tmp_path / "new" / "deeper")  # creatable: fine, and nothing is created
    assert not (tmp_path / "new").exists()
    assert prepare_output_folder(tmp_path / "new" / "deeper").is_dir()


def test_unwritable_folder_names_the_folder_and_the_cause(tmp_path, monkeypatch):
    import os

    import oss_net.io
    from oss_net.io import WriteError, check_output_folder

    monkeypatch.setattr(oss_net.io.os, "access", lambda path, mode: False)
    with pytest.raises(WriteError, match=rf"{tmp_path}: cache folder is not writable \(permission denied; check its permissions\)"):
        check_output_folder(tmp_path, "cache folder")
    with pytest.raises(WriteError, match=rf"{tmp_path / 'new'}: cannot create the run folder; {tmp_path}: parent of the run folder"):
        check_output_folder(tmp_path / "new", "run folder")
    read_only = os.statvfs_result((4096,) * 8 + (os.ST_RDONLY, 255))
    monkeypatch.setattr(oss_net.io.os, "statvfs", lambda path: read_only)
    with pytest.raises(WriteError, match=r"output folder is not writable \(read-only file system; write to another folder\)"):
        atomic_save_json({}, tmp_path / "x.json")


def test_os_error_during_the_write_is_converted_and_names_the_target(tmp_path, monkeypatch):
    import errno
    import os

    import oss_net.io
    from oss_net.io import WriteError

    def denied(fd):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(oss_net.io.os, "fsync", denied)
    with pytest.raises(WriteError, match=f"input/output error on {tmp_path / 'x.json'}"):
        atomic_save_json({}, tmp_path / "x.json")
    assert list(tmp_path.iterdir()) == []


def test_disk_full_at_a_training_checkpoint_keeps_the_previous_one(synthetic_brats_root, tmp_path, capsys, monkeypatch):
    """ENOSPC injected into the write of the second checkpoint only: one line, the first checkpoint intact, --resume works."""
    import os
    import tempfile

    import oss_net.io
    from oss_net.training.cli import main

    full, real_mkstemp, real_fdopen = set(), tempfile.mkstemp, os.fdopen

    def mkstemp(prefix, suffix, dir):
        descriptor, name = real_mkstemp(prefix=prefix, suffix=suffix, dir=dir)
        if prefix.startswith(".ckpt_000000002.pt"):
            full.add(descriptor)
        return descriptor, name

    monkeypatch.setattr(oss_net.io.tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(oss_net.io.os, "fdopen", lambda fd, mode: FullDiskFile(real_fdopen(fd, mode), 64) if fd in full
                        else real_fdopen(fd, mode))
    run = tmp_path / "run"
    args = ["--train", "--demo", "--cpu", "--uniform_sampling", "--batch_size", "1", "--training_samples", "64",
            "--epochs", "1", "--dataset_path", str(synthetic_brats_root), "--output_dir", str(run), "--checkpoint_every", "1"]
    assert main([*args, "--max_iterations", "2"]) == 2
    second = run / "checkpoints" / "ckpt_000000002.pt"
    errors = [line for line in capsys.readouterr().err.splitlines() if ": error: " in line]
    assert len(errors) == 1 and f"no space left on device while writing {second} (free some space" in errors[0]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["ckpt_000000001.pt"]  # no temporary left
    monkeypatch.undo()
    assert main(["--resume", str(run), "--max_iterations", "2"]) == 0
    assert (run / "checkpoints" / "ckpt_000000002.pt").is_file()


def test_an_output_the_package_did_not_write_is_refused_until_overwrite(tmp_path):
    from oss_net.io import foreign_outputs, record_outputs, refuse_foreign_outputs

    ours, theirs, case = tmp_path / "a.nii.gz", tmp_path / "b.nii.gz", tmp_path / "case"
    ours.write_bytes(b"written by us")
    theirs.write_bytes(b"the user's ground truth")
    case.mkdir()
    record_outputs(tmp_path, [ours, "case"])
    names = ["a.nii.gz", "b.nii.gz", "case", "not_there.nii.gz"]
    assert foreign_outputs(tmp_path, names) == [theirs]
    with pytest.raises(WriteError, match=rf"{theirs}: already exists and was not written by this tool; it is never "
                                         r"replaced: choose another output folder, or pass --overwrite to replace it"):
        refuse_foreign_outputs(tmp_path, names)
    refuse_foreign_outputs(tmp_path, names, overwrite=True)
    ours.write_bytes(b"changed by the user since")  # another size: no longer what we wrote
    assert foreign_outputs(tmp_path, names) == [ours, theirs]


def test_an_output_folder_inside_an_input_folder_is_refused(tmp_path):
    from oss_net.io import refuse_output_in_inputs

    images, case = tmp_path / "imagesTr", tmp_path / "data" / "case_1"
    refuse_output_in_inputs(tmp_path / "labelsTr", [images, case])  # a sibling is fine (its files are checked)
    with pytest.raises(WriteError, match=rf"{case}: the output folder is the input folder; .* for -o\)"):
        refuse_output_in_inputs(case, [images, case])
    with pytest.raises(WriteError, match=rf"the output folder lies inside the input folder {images}"):
        refuse_output_in_inputs(images / "out", [images], "-o")


def test_stale_temporaries_of_the_named_outputs_only_are_removed(tmp_path):
    from oss_net.io import remove_stale_temporaries

    mine = tmp_path / ".case_1.nii.gz.k2j3h4.tmp"
    other = tmp_path / ".notes.txt.abc.tmp"
    for path in (mine, other):
        path.write_bytes(b"")
    assert remove_stale_temporaries(tmp_path, ["case_1.nii.gz", "case_2.nii.gz"]) == [mine]
    assert not mine.exists() and other.exists()
