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


@pytest.fixture(scope="session")
def synth_av(tmp_path_factory):
    """A generated 3-subject x 2-sentence synthetic set and a tiny 1-epoch AV expert on it
    (``avguide/configs/expert/tiny.yaml``): (data directory, expert run)."""
    from avguide import configs
    from avguide.config import load_config
    from avguide.synth.generator import SynthConfig, generate
    from avguide.train.expert import run_expert_stage

    base = tmp_path_factory.mktemp("avg")
    data = base / "data"
    generate(load_config(SynthConfig, None, ["subjects=3", "sentences=2", "workers=1"]), data)
    expert = run_expert_stage(str(data), base / "expert", modality="av",
                              overrides=[*configs.overrides("expert/tiny"), "optim.epochs=1",
                                         f"cache_dir={base / 'cache'}"])
    return data, expert
