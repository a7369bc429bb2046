"""Shared pytest fixtures. Tests are tiered: unit (default), ``slow`` and ``gpu`` markers."""

import os
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The ../shared folder beside the checkout (reference data); skips if absent."""
    if not SHARED.is_dir():
        pytest.skip("../shared not present")
    return SHARED


@pytest.fixture(autouse=True)
def _torch_threads():
    """One torch thread per test process: small ops run far faster without thread contention on a
    shared 2-core machine, and pytest -n 2 uses both cores."""
    try:
        import torch
        torch.set_num_threads(1)
    except ImportError:
        pass
    yield
