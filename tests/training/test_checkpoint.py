"""Checkpoint files: every RNG state survives weights_only loading; a killed write leaves the previous one."""
from __future__ import annotations

import random
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from oss_net.training import resume


def _draws() -> tuple:
    return torch.rand(3).tolist(), np.random.rand(3).tolist(), np.random.randn(1).tolist(), [random.random() for _ in range(3)]


def test_rng_states_round_trip_through_a_weights_only_file(tmp_path):
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    np.random.randn(1)  # leaves a cached Gaussian in numpy's state
    state = resume.capture_rng_state()
    expected = _draws()
    path = tmp_path / "rng.pt"
    resume.save_checkpoint({"model": {}, "config": {}, "training": {"rng": state}}, path)
    loaded = resume.load_checkpoint(path)["training"]["rng"]
    _draws()  # move every generator on
    resume.restore_rng_state(loaded)
    assert _draws() == expected


def test_find_and_prune_periodic_checkpoints(tmp_path):
    for iteration in (3, 10, 7):
        resume.save_checkpoint({"model": {}, "config": {}, "i": iteration}, resume.checkpoint_path(tmp_path, iteration))
    (tmp_path / "checkpoints" / ".ckpt_000000011.pt.abc.tmp").write_bytes(b"partial")
    assert resume.find_checkpoint(tmp_path).name == "ckpt_000000010.pt"
    resume.prune_checkpoints(tmp_path, keep=2)
    assert [p.name for p in resume.periodic_checkpoints(tmp_path)] == ["ckpt_000000007.pt", "ckpt_000000010.pt"]
    resume.remove_stale_temporaries(tmp_path)
    assert not list((tmp_path / "checkpoints").glob(".*"))


def test_unreadable_or_missing_checkpoints_raise_resume_error(tmp_path):
    with pytest.raises(resume.ResumeError, match="no checkpoint found"):
        resume.find_checkpoint(tmp_path)
    with pytest.raises(resume.ResumeError, match="no such run folder or checkpoint file"):
        resume.find_checkpoint(tmp_path / "missing")
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(resume.ResumeError, match=r"broken\.pt: not a readable checkpoint"):
        resume.load_checkpoint(broken)


WRITER = textwrap.dedent("""
    import os, sys, time, torch
    from pathlib import Path
    from oss_net.training import resume
    run = Path(sys.argv[1])
    resume.save_checkpoint({"model": {"w": torch.ones(4)}, "config": {}, "iteration": 1}, resume.checkpoint_path(run, 1))
    def stall(fd):  # the data is in the temporary file; hold here until the parent kills us
        print("writing", flush=True)
        time.sleep(60)
    os.fsync = stall
    resume.save_checkpoint({"model": {"w": torch.zeros(2**20)}, "config": {}, "iteration": 2}, resume.checkpoint_path(run, 2))
""")


def test_sigkill_during_a_write_leaves_the_previous_checkpoint_loadable(tmp_path):
    process = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "writing"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    assert list((tmp_path / "checkpoints").glob(".ckpt_000000002.pt.*.tmp")), "the killed write left its temporary file"
    newest = resume.find_checkpoint(tmp_path)
    assert newest.name == "ckpt_000000001.pt"
    state = resume.load_checkpoint(newest)
    assert state["iteration"] == 1 and torch.equal(state["model"]["w"], torch.ones(4))
