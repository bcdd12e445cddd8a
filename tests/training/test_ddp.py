"""DDP on the CPU: two gloo processes under torchrun hold identical weights after several steps."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from oss_net.training.sampler import ResumableSampler

WORKER = Path(__file__).with_name("ddp_worker.py")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_sampler_splits_every_global_batch_between_ranks_and_resumes_mid_epoch():
    ranks = [ResumableSampler(10, batch_size=2, seed=3, rank=r, world_size=2) for r in range(2)]
    for sampler in ranks:
        sampler.set_epoch(4)
    orders = [list(sampler) for sampler in ranks]
    assert len(orders[0]) == len(orders[1]) == 4  # 2 global batches of 4; the tail of 2 is dropped
    assert set(orders[0]).isdisjoint(orders[1])
    ranks[0].set_epoch(4, start_batch=1)
    assert list(ranks[0]) == orders[0][2:]
    ranks[0].set_epoch(5)
    assert list(ranks[0]) != orders[0]


@pytest.mark.slow
def test_two_gloo_ranks_hold_identical_weights(synthetic_brats_root, tmp_path):
    # 3 training cases, batch 1 per rank: one global step per epoch (the odd case is dropped), 3 epochs.
    # Parameters must agree exactly. BatchNorm running statistics are buffers that each rank updates
    # from its own data on the CPU (DDP re-broadcasts rank 0's before every forward; only rank 0 saves).
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(WORKER.parents[2])}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
               "--master_port", str(_free_port()), str(WORKER), str(synthetic_brats_root), str(tmp_path)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    assert len(ranks[0]["seen"]) == len(ranks[1]["seen"]) == 3
    assert all(a != b for a, b in zip(ranks[0]["seen"], ranks[1]["seen"]))  # each rank has its own share
    first, second = ranks[0]["parameters"], ranks[1]["parameters"]
    assert [k for k in first if not torch.equal(first[k], second[k])] == []
    assert any(not torch.equal(first[k], ranks[0]["initial"][k]) for k in first)  # training happened
    assert (tmp_path / "run" / "final_model.pt").is_file()  # written by rank 0 only
