"""One rank of the 2-process gloo test (launched by torchrun from test_ddp.py, not collected by pytest).

Trains a few steps through the real loop, then saves this rank's weights and the case ids its
`train_step` calls saw (a spy that wraps the step the loop calls, so nothing else changes).
"""
from __future__ import annotations

import sys
from pathlib import Path
from unittest import mock

import torch

from oss_net.training import loop
from oss_net.training.distributed import setup_process, teardown_process
from oss_net.training.settings import resolve_settings
from oss_net.training.step import train_step


def main(dataset_path: str, output: str) -> None:
    settings = resolve_settings({
        "train": True, "demo": True, "cpu": True, "uniform_sampling": True, "batch_size": 1, "training_samples": 64,
        "epochs": 3, "dataset_path": dataset_path, "output_dir": str(Path(output) / "run"),
    })
    context = setup_process(cpu=True)
    run = loop.build_run(settings, context)
    initial = {name: p.detach().clone() for name, p in run.model.named_parameters()}
    with mock.patch.object(loop, "train_step", wraps=train_step) as step:
        loop.fit(run)
    seen = [case for call in step.call_args_list for case in call.args[1]["case_id"]]
    parameters = {name: p.detach() for name, p in run.model.named_parameters()}
    torch.save({"initial": initial, "parameters": parameters, "seen": seen}, Path(output) / f"rank{context.rank}.pt")
    run.recorder.close()
    teardown_process(context)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
