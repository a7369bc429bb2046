"""Fixtures of the export tests: the embedded head and a subject template shaped by identity."""

import numpy as np
import pytest

from avguide.assets.head import load_head


@pytest.fixture(scope="session")
def head():
    return load_head()


@pytest.fixture(scope="session")
def subject(head):
    """(V, 3) float32 neutral face of a subject: the head plus a fixed identity mix."""
    rng = np.random.default_rng(7)
    coef = rng.uniform(0.0, 0.5, size=len(head.identity_names))
    return (head.vertices + np.einsum("k,kvc->vc", coef, head.identity_targets)).astype(np.float32)


def _rig(template, blendshapes, weights):
    return template.astype(np.float64)[None] + np.einsum(
        "tk,kvc->tvc", np.asarray(weights, np.float64), blendshapes.astype(np.float64))


@pytest.fixture(scope="session")
def rig():
    """``rig(template, blendshapes, weights)``: (T, V, 3) float64 ``template + weights @ deltas``,
    computed here independently of avguide."""
    return _rig
