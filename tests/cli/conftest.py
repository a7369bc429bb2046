"""Fixtures of the CLI tests: one tiny synthetic benchmark per session, copied per test."""

import shutil
from pathlib import Path

import pytest

from avguide.cli import main


@pytest.fixture(scope="session")
def synth_set(tmp_path_factory) -> Path:
    """3 subjects x 2 sentences (splits: train Synth01_sentence01/02, val Synth02_sentence02,
    test Synth03_sentence02), generated once; never modify it, copy it (``dataset``)."""
    root = tmp_path_factory.mktemp("synth") / "set"
    assert main(["synth", "--out", str(root), "subjects=3", "sentences=2", "workers=1"]) == 0
    return root


@pytest.fixture
def dataset(synth_set, tmp_path) -> Path:
    """A private copy of the synthetic set (without the files evaluate never reads)."""
    dst = tmp_path / "data"
    shutil.copytree(synth_set, dst, ignore=shutil.ignore_patterns("blendshapes_npy", "alignments"))
    return dst
