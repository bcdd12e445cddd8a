"""One rank of the 2-process gloo test (launched by torchrun from test_ddp.py, not collected by pytest).

Trains a few steps through the real loop, then saves this rank's weights and the case ids it saw.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

from oss_net.training import loop
from oss_net.training.distributed import setup_process, teardown_process
from oss_net.training.settings import resolve_settings


def main(dataset_path: str, output: str) -> None:
    settings = resolve_settings({
        "train": True, "demo": True, "cpu": True, "uniform_sampling": True, "batch_size": 1, "training_samples": 64,
        "epochs": 3, "dataset_path": dataset_path, "output_dir": str(Path(output) / "run"),
    })
    context = setup_process(cpu=True)
    run = loop._build_run(settings, context)
    seen: list[str] = []
    step = loop._step

    def tracking_step(run_, batch, autocast):
        seen.extend(batch["case_id"])
        return step(run_, batch, autocast)

    loop._step = tracking_step
    initial = {name: p.detach().clone() for name, p in run.model.named_parameters()}
    loop._train_loop(run)
    parameters = {name: p.detach() for name, p in run.model.named_parameters()}
    torch.save({"initial": initial, "parameters": parameters, "seen": seen}, Path(output) / f"rank{context.rank}.pt")
    run.recorder.close()
    teardown_process(context)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
