"""A run killed with SIGKILL and resumed ends with the same weights, bit for bit, as an uninterrupted one."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from oss_net.training import main, train

REPO = Path(__file__).resolve().parents[2]
# 3 training cases, batch 1: 3 iterations per epoch. 50 epochs keep the killed run busy long after the
# kill; --max_iterations 5 ends both runs inside epoch 2, past one epoch end (scheduler, validation).
FLAGS = ["--train", "--test", "--demo", "--cpu", "--uniform_sampling", "--batch_size", "1", "--training_samples", "64",
         "--val_samples", "128", "--val_every", "1", "--no_dense_validation", "--epochs", "50", "--checkpoint_every", "1"]
STOP = 5


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def _kill_after_first_checkpoint(process: subprocess.Popen, run_dir: Path, outcome: dict) -> None:
    deadline = time.monotonic() + 150
    while not (run_dir / "checkpoints" / "ckpt_000000001.pt").exists():
        if process.poll() is not None or time.monotonic() > deadline:
            outcome["error"] = f"no checkpoint before the process ended or 150 s passed (return code {process.poll()})"
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)


@pytest.mark.slow
def test_sigkill_then_resume_is_bitwise_identical(tiny_settings, synthetic_brats_root, tmp_path):
    killed = tmp_path / "killed"
    command = [sys.executable, str(REPO / "train_oss_net.py"), *FLAGS, "--dataset_path", str(synthetic_brats_root),
               "--output_dir", str(killed)]
    # Same thread count as this process: CPU reductions are only reproducible at a fixed thread count.
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())})
    outcome: dict = {}
    watcher = threading.Thread(target=_kill_after_first_checkpoint, args=(process, killed, outcome))
    watcher.start()
    try:  # the uninterrupted reference trains meanwhile
        reference = train(tiny_settings(test=True, val_every=1, epochs=50, checkpoint_every=1, max_iterations=STOP,
                                        output_dir=str(tmp_path / "reference")))
    finally:
        watcher.join()
    assert "error" not in outcome, outcome.get("error")
    assert process.returncode == -signal.SIGKILL
    assert not (killed / "final_model.pt").exists()

    assert main(["--resume", str(killed), "--max_iterations", str(STOP)]) == 0
    expected, resumed = _weights(reference / "final_model.pt"), _weights(killed / "final_model.pt")
    assert expected.keys() == resumed.keys()
    assert [k for k in expected if not torch.equal(expected[k], resumed[k])] == []


def test_ctrl_c_prints_the_resume_command_and_it_resumes(tiny_settings, tmp_path, capsys, monkeypatch):
    """Ctrl-C after a checkpoint: one line with `--resume <run folder>`, status 130; the command continues."""
    from oss_net.training import loop

    steps = []
    step = loop.train_step

    def ctrl_c_on_the_third_step(*args, **kwargs):
        steps.append(1)
        if len(steps) == 3:
            raise KeyboardInterrupt
        return step(*args, **kwargs)

    monkeypatch.setattr(loop, "train_step", ctrl_c_on_the_third_step)
    settings = tiny_settings(checkpoint_every=1, epochs=2)
    arguments = ["--train", "--demo", "--cpu", "--no_validation", "--batch_size", "1", "--training_samples", "64",
                 "--epochs", "2", "--checkpoint_every", "1", "--dataset_path", settings.dataset_path,
                 "--output_dir", str(tmp_path / "run")]
    assert main(arguments) == 130
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert ": interrupted; to go on where it stopped: " in line and line.endswith(f" --resume {tmp_path / 'run'}")
    monkeypatch.setattr(loop, "train_step", step)
    assert main(["--resume", str(tmp_path / "run"), "--max_iterations", "3"]) == 0
    assert (tmp_path / "run" / "final_model.pt").is_file()
