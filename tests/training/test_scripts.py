"""The ten Table-1 scripts: their command lines carry the paper's settings and train for one iteration.

Each script is run for real by bash (from another directory, with the dataset as argument or from
the environment) with PYTHON pointing at a stub that records the command line. The recorded
command is then run in this process through the same `main` that train_oss_net.py calls, one
iteration on the synthetic dataset, which saves ~5 s of imports per script. (test_resume.py runs
train_oss_net.py itself in a subprocess.)
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from oss_net.models import get_config
from oss_net.training import main

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = {  # script stem -> (dataset, canonical configuration)
    "train_o_net": "vanilla_o_net_wide", "train_oss_net_a": "A", "train_oss_net_b": "B",
    "train_oss_net_c": "full", "train_oss_net_d": "full2",
}
SMOKE = ["--demo", "--cpu", "--max_iterations", "1", "--batch_size", "1", "--training_samples", "64", "--no_dense_validation"]


def _record(script: Path, tmp_path: Path, args: list[str], env: dict[str, str]) -> tuple[int, list[str], str]:
    """Run `script` with a stub interpreter; returns (exit code, recorded argv, stderr)."""
    stub, capture = tmp_path / "python-stub", tmp_path / "argv"
    stub.write_text('#!/bin/sh\nprintf "%s\\0" "$@" > "$CAPTURE"\n')
    stub.chmod(0o755)
    capture.unlink(missing_ok=True)
    result = subprocess.run(["bash", str(script), *args], cwd=tmp_path, capture_output=True, text=True,
                            env={**os.environ, **env, "PYTHON": str(stub), "CAPTURE": str(capture)})
    argv = capture.read_text().split("\0")[:-1] if capture.exists() else []
    return result.returncode, argv, result.stderr


def _value(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


@pytest.mark.parametrize("dataset", ["bra_ts", "lits"])
def test_every_script_has_paper_settings_and_trains_one_iteration(dataset, synthetic_brats_root, synthetic_lits_root, tmp_path):
    root = str(synthetic_brats_root if dataset == "bra_ts" else synthetic_lits_root)
    for stem, canonical in SCRIPTS.items():
        script = REPO / "scripts" / f"{stem}_{dataset}.sh"
        output = tmp_path / stem
        code, argv, stderr = _record(script, tmp_path, [root, *SMOKE, "--output_dir", str(output)], {})
        assert code == 0, stderr
        assert argv[0] == str(REPO / "train_oss_net.py")
        assert {"--train", "--test", "--paper"} <= set(argv)
        assert (_value(argv, "--epochs"), _value(argv, "--training_samples")) == ("50", "16384")
        assert _value(argv, "--batch_size") == ("8" if dataset == "bra_ts" else "4")  # the smoke override comes later
        assert ("--uniform_sampling" in argv) == (dataset == "bra_ts")
        assert _value(argv, "--dataset_path") == root
        assert get_config(_value(argv, "--network_config"), _value(argv, "--dataset")).name == canonical
        assert main(argv[1:]) == 0
        assert (output / "final_model.pt").is_file()
        assert (output / "checkpoints" / "ckpt_000000001.pt").is_file()


def test_dataset_from_the_environment_and_a_clear_usage_error(tmp_path):
    script = REPO / "scripts" / "train_oss_net_c_lits.sh"
    code, argv, _ = _record(script, tmp_path, ["--amp", "bf16"], {"LITS_ROOT": "/data/lits"})
    assert code == 0 and _value(argv, "--dataset_path") == "/data/lits" and argv[-2:] == ["--amp", "bf16"]
    env = {key: value for key, value in os.environ.items() if key != "LITS_ROOT"}
    result = subprocess.run(["bash", str(script)], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert result.returncode == 2 and "or set LITS_ROOT" in result.stderr
