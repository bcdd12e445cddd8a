"""Fixtures of the benchmark tests: results go to a temporary folder, and tiny tensors run on one thread."""
from __future__ import annotations

import importlib
import pkgutil

import pytest
import torch

import benchmarks
import benchmarks.common


@pytest.fixture
def results_dir(tmp_path, monkeypatch):
    """Send every benchmark's output to a temporary folder, so a test never overwrites benchmarks/results/."""
    monkeypatch.setattr(benchmarks.common, "RESULTS_DIR", tmp_path)
    for module_info in pkgutil.iter_modules(benchmarks.__path__):
        module = importlib.import_module(f"benchmarks.{module_info.name}")
        if hasattr(module, "RESULTS_DIR"):
            monkeypatch.setattr(module, "RESULTS_DIR", tmp_path)
    return tmp_path


@pytest.fixture
def single_thread():
    """One intra-op thread: with other jobs on two cores, OpenMP's thread team waits on busy cores
    (measured: a 12x12x8 U-Net step took 1.6 s with 2 threads, 0.04 s with 1)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
