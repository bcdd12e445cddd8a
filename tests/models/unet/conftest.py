"""One intra-op thread for the baseline tests: these tensors are tiny, and with other jobs on the two cores
OpenMP's thread team waits on busy cores (measured: a 12x12x8 U-Net step took 1.6 s with 2 threads, 0.04 s with 1)."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
