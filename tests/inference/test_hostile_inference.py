"""Hostile input against `oss-net-infer` (issue 16): cases that discovery rejects, an unusable cache folder."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from oss_net.inference.cli import main
from oss_net.io import OUTPUT_MANIFEST
from oss_net.models import save_model

from .conftest import intensity_model

TRAINING = "MICCAI_BraTS2020_TrainingData"


def _cli(checkpoint: Path, root: Path, out: Path, *extra: str) -> list[str]:
    return ["--load_model", str(checkpoint), "--dataset_path", str(root), "--output_dir", str(out),
            "--no_mesh", "--no_overlay", *extra]


def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if ": error: " in line]


def _root_without_a_modality(synthetic_brats_root: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the synthetic set whose second case folder has no t1ce file; returns (root, that folder)."""
    root = shutil.copytree(synthetic_brats_root, tmp_path / "root")
    broken = sorted(p for p in (root / TRAINING).iterdir() if p.is_dir())[1]
    next(broken.glob("*_t1ce.nii.gz")).unlink()
    return root, broken


def test_skip_bad_cases_skips_a_case_folder_that_discovery_rejects(brats_checkpoint, synthetic_brats_root,
                                                                   tmp_path, capsys):
    root, broken = _root_without_a_modality(synthetic_brats_root, tmp_path)
    out = tmp_path / "out"
    assert main(_cli(brats_checkpoint, root, out, "--split", "all", "--skip_bad_cases")) == 0
    assert f"skipped 1 bad case(s): {broken.name} ({broken}: missing t1ce file(s))" in capsys.readouterr().out
    rows = json.loads((out / "summary.json").read_text())
    others = sorted(p.name for p in (root / TRAINING).iterdir() if p.is_dir() and p != broken)
    assert [row["case"] for row in rows] == [*others, broken.name, "mean"]
    assert rows[-2]["skipped"] == f"{broken}: missing t1ce file(s)"
    assert rows[-1]["skipped_cases"] == 1 and rows[-1]["cases"] == 3
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == others


def test_without_skip_bad_cases_a_rejected_case_folder_stops_the_run_with_what_to_do(brats_checkpoint,
                                                                                    synthetic_brats_root, tmp_path,
                                                                                    capsys):
    root, broken = _root_without_a_modality(synthetic_brats_root, tmp_path)
    out = tmp_path / "out"
    assert main(_cli(brats_checkpoint, root, out, "--split", "all")) == 2
    (line,) = _error_lines(capsys.readouterr().err)
    assert f"{broken}: missing t1ce file(s) (pass --skip_bad_cases to go on without them)" in line
    assert not out.exists()


def test_a_computed_split_cannot_skip_a_rejected_case(brats_checkpoint, synthetic_brats_root, tmp_path, capsys):
    """Leaving a case out would move others between the seeded train and val splits: refused, saying why."""
    root, broken = _root_without_a_modality(synthetic_brats_root, tmp_path)
    out = tmp_path / "out"
    assert main(_cli(brats_checkpoint, root, out, "--split", "val", "--skip_bad_cases")) == 2
    (line,) = _error_lines(capsys.readouterr().err)
    assert f"{broken}: missing t1ce file(s)" in line and "--skip_bad_cases skips them with --split all" in line
    assert not out.exists()


def test_a_stored_split_skips_its_rejected_case_and_ignores_those_of_other_splits(synthetic_brats_root, tmp_path, capsys):
    root, broken = _root_without_a_modality(synthetic_brats_root, tmp_path)
    ids = sorted(p.name for p in (root / TRAINING).iterdir() if p.is_dir())
    checkpoint = tmp_path / "model.pt"
    save_model(checkpoint, intensity_model("C"), split={"train": ids[2:], "val": ids[:2]})  # broken is ids[1]
    out = tmp_path / "out"
    assert main(_cli(checkpoint, root, out, "--split", "val", "--skip_bad_cases")) == 0
    rows = json.loads((out / "summary.json").read_text())
    assert [row["case"] for row in rows] == [ids[0], broken.name, "mean"] and rows[-1]["skipped_cases"] == 1
    assert main(_cli(checkpoint, root, tmp_path / "train_out", "--split", "train")) == 0  # the broken case is not in it
    rows = json.loads((tmp_path / "train_out" / "summary.json").read_text())
    assert [row["case"] for row in rows] == [*ids[2:], "mean"] and "skipped_cases" not in rows[-1]


def test_an_unwritable_cache_folder_fails_before_anything_is_written(brats_checkpoint, synthetic_brats_root,
                                                                     tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "earlier.txt").write_text("kept")
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    assert main(_cli(brats_checkpoint, synthetic_brats_root, out, "--cache_dir", str(blocker / "cache"))) == 2
    (line,) = _error_lines(capsys.readouterr().err)
    assert f"{blocker / 'cache'}: cache folder is not a folder, its parent {blocker} is a file" in line
    assert sorted(p.name for p in out.iterdir()) == ["earlier.txt"]


def test_only_what_a_run_wrote_is_replaced(brats_checkpoint, synthetic_brats_root, tmp_path, capsys):
    """A case folder the user made is never replaced (unless --overwrite); a folder written before outputs were
    recorded (no .oss_net_outputs.json) is still this package's: its run record and case manifests say so."""
    out = tmp_path / "out"
    assert main(_cli(brats_checkpoint, synthetic_brats_root, out)) == 0
    (out / OUTPUT_MANIFEST).unlink()  # an output folder of an earlier version
    assert main(_cli(brats_checkpoint, synthetic_brats_root, out)) == 0
    case_id = next(p.name for p in out.iterdir() if p.is_dir())
    out = tmp_path / "theirs"
    case = out / case_id
    case.mkdir(parents=True)
    (case / "notes.txt").write_text("the user's own")
    capsys.readouterr()
    assert main(_cli(brats_checkpoint, synthetic_brats_root, out)) == 2
    (line,) = _error_lines(capsys.readouterr().err)
    assert f"{case}: already exists and was not written by this tool" in line and "--overwrite" in line
    assert (case / "notes.txt").read_text() == "the user's own"
    assert main(_cli(brats_checkpoint, synthetic_brats_root, out, "--overwrite")) == 0
    assert (case / "manifest.json").is_file() and not (case / "notes.txt").exists()
