"""The blendshape rig: linearity, equality with a naive loop, identities."""

import numpy as np
import pytest

from avguide.assets.head import load_head
from avguide.synth.rig import (LIP_GAP_CLOSED_M, apply_blendshapes, clamp_weights, lip_gaps,
                               sample_identity)


@pytest.fixture(scope="module")
def head():
    return load_head()


def test_apply_equals_naive_loop():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(7, 3)).astype(np.float32)
    deltas = rng.normal(size=(4, 7, 3)).astype(np.float32)
    w = rng.uniform(size=(5, 4)).astype(np.float32)
    out = apply_blendshapes(base, deltas, w)
    naive = np.zeros((5, 7, 3))
    for t in range(5):
        naive[t] = base
        for k in range(4):
            naive[t] += w[t, k] * deltas[k]
    assert out.shape == (5, 7, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out, naive, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(apply_blendshapes(base, deltas, w[2]), naive[2], atol=1e-5)


def test_apply_is_linear_on_the_head(head):
    rng = np.random.default_rng(1)
    w1, w2 = rng.uniform(size=(2, 3, 52)).astype(np.float32)
    a, b = 0.3, 1.7
    v0 = head.vertices
    f = lambda w: apply_blendshapes(v0, head.blendshapes, w) - v0  # noqa: E731
    np.testing.assert_allclose(f(a * w1 + b * w2), a * f(w1) + b * f(w2), atol=1e-6)
    np.testing.assert_array_equal(apply_blendshapes(v0, head.blendshapes, np.zeros((2, 52)))[1], v0)


def test_apply_rejects_bad_shapes():
    base, deltas = np.zeros((5, 3)), np.zeros((2, 5, 3))
    with pytest.raises(ValueError, match="weights"):
        apply_blendshapes(base, deltas, np.zeros((4, 3)))
    with pytest.raises(ValueError, match="deltas"):
        apply_blendshapes(base, np.zeros((2, 4, 3)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="NaN"):
        apply_blendshapes(base, deltas, np.full((1, 2), np.nan))


def test_clamp_weights():
    w = np.array([[-0.5, 0.2, 1.5]])
    np.testing.assert_array_equal(clamp_weights(w), np.array([[0.0, 0.2, 1.0]], np.float32))
    with pytest.raises(ValueError):
        clamp_weights(np.array([np.nan]))


def test_lip_gaps_hand_case(head):
    v = head.vertices.copy()
    g0 = lip_gaps(v, head)
    v[head.regions["lower_lip"], 1] -= 0.01  # drop the lower lip by 1 cm
    np.testing.assert_allclose(lip_gaps(v, head), g0 + 0.01, atol=1e-6)
    seq = lip_gaps(np.stack([head.vertices, v]), head)
    assert seq.shape == (2, len(g0))


def test_identities_distinct_plausible_and_closed(head):
    rng = np.random.default_rng(7)
    draws = [sample_identity(head, rng) for _ in range(8)]
    temps = np.stack([t for _, t in draws])
    for c, t in draws:
        assert c.shape == (len(head.identity_names),) and c.min() >= 0 and c.max() <= 1
        np.testing.assert_allclose(apply_blendshapes(head.vertices, head.identity_targets, c), t,
                                   atol=1e-6)
        g = lip_gaps(t, head)
        assert LIP_GAP_CLOSED_M[0] <= g.min() and g.max() <= LIP_GAP_CLOSED_M[1]
        shift = np.linalg.norm(t - head.vertices, axis=1)
        assert 2e-3 < shift.max() < 0.05  # visibly different, still a head
    # pairwise distinct: RMS vertex distance between subjects of at least 1 mm
    d = np.sqrt(((temps[:, None] - temps[None]) ** 2).sum(-1).mean(-1))
    assert d[~np.eye(len(d), dtype=bool)].min() > 1e-3
    # deterministic for a seed; strength 0 is the rest head
    c1, t1 = sample_identity(head, np.random.default_rng(3))
    c2, t2 = sample_identity(head, np.random.default_rng(3))
    np.testing.assert_array_equal(t1, t2)
    c0, t0 = sample_identity(head, np.random.default_rng(3), strength=0.0)
    assert not c0.any()
    np.testing.assert_allclose(t0, head.vertices, atol=1e-7)
    with pytest.raises(ValueError, match="strength"):
        sample_identity(head, rng, strength=-1.0)


def test_teeth_poke_through_detects_narrow_nose():
    """A narrow nose lets the upper teeth show beside it when the lips round: detected, and such
    identities are never drawn."""
    from avguide.assets.head import load_head
    from avguide.synth.rig import apply_blendshapes, sample_identity, teeth_poke_through

    head = load_head()
    assert teeth_poke_through(np.asarray(head.vertices), head) == 0
    c = np.zeros(len(head.identity_names), np.float32)
    c[list(head.identity_names).index("nose-scale-horiz-decr")] = 1.0
    assert teeth_poke_through(apply_blendshapes(head.vertices, head.identity_targets, c), head) > 5
    _, template = sample_identity(head, np.random.default_rng([0, 1, 0]))  # Synth01's draw
    assert teeth_poke_through(template, head) == 0
