"""Lip-reader tests use tiny tensors: one intra-op thread avoids OpenMP hand-off costs that
make such ops 10-100x slower on a loaded 2-core machine (runs after the root fixture)."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread(_torch_threads):
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
