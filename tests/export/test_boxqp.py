"""The batched box QP on small random problems, against scipy's bounded least squares; the
warm-started sequence solver against the batched one."""

import numpy as np
import pytest
from scipy.optimize import lsq_linear

from avguide.export.boxqp import kkt_violation, solve_box_qp, solve_box_qp_warm


@pytest.mark.parametrize("k, lo, hi, seed", [(3, 0.0, 1.0, 0), (8, -0.5, 2.0, 1), (20, 0.0, 1.0, 2)])
def test_equals_bounded_least_squares(k, lo, hi, seed):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(3 * k, k)) @ np.diag(np.logspace(0, -2, k))    # ill-conditioned columns
    y = rng.normal(size=(50, 3 * k)) * 3
    res = solve_box_qp(a.T @ a, y @ a, lo, hi)
    assert res.x.shape == (50, k) and res.kkt <= 1e-10 and res.iterations > 0
    assert np.all(res.x >= lo) and np.all(res.x <= hi)
    for n in range(50):
        ref = lsq_linear(a, y[n], bounds=(lo, hi), method="bvls", tol=1e-14).x
        np.testing.assert_allclose(res.x[n], ref, rtol=0, atol=1e-8)
    assert np.all(kkt_violation(a.T @ a, y @ a, res.x, lo, hi) <= 1e-10)


def test_interior_solutions_need_no_step():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(30, 6))
    x = rng.uniform(0.2, 0.8, size=(10, 6))
    res = solve_box_qp(a.T @ a, x @ (a.T @ a))
    assert res.iterations == 0
    np.testing.assert_allclose(res.x, x, atol=1e-12)


def test_kkt_violation_detects_a_wrong_point():
    g = np.eye(2)
    b = np.array([[2.0, -1.0]])                       # optimum: x = (1, 0), both at a bound
    assert kkt_violation(g, b, np.array([[1.0, 0.0]]), 0.0, 1.0)[0] == 0.0
    assert kkt_violation(g, b, np.array([[0.5, 0.0]]), 0.0, 1.0)[0] == pytest.approx(0.5)


def test_not_converging_is_reported():
    rng = np.random.default_rng(4)
    a = rng.normal(size=(20, 5))
    with pytest.raises(RuntimeError, match="not converged"):
        solve_box_qp(a.T @ a, rng.normal(size=(4, 5)) * 10, max_iter=0)


def _warm(G, b, lo, hi, active=None):
    active = np.zeros(G.shape[0], np.int8) if active is None else active
    return np.stack([solve_box_qp_warm(G, b[n: n + 1], lo, hi, active)[0] for n in range(len(b))]), active


@pytest.mark.parametrize("k, lo, hi, seed", [(8, -0.5, 2.0, 5), (20, 0.0, 1.0, 6), (52, 0.0, 1.0, 7)])
def test_warm_started_sequence_equals_the_batch_solver(k, lo, hi, seed):
    """A smoothly moving sequence (the streamed case: consecutive problems share most bounds)
    and the same problems shuffled (warm starts far from the answer: several exchanges, some
    handed to solve_box_qp) give solve_box_qp's minimisers, both bounds active."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(3 * k, k)) @ np.diag(np.logspace(0, -1.5, k))
    t = np.linspace(0, 6, 120)[:, None]
    x_true = (hi - lo) * (0.5 + 0.9 * np.sin(t * rng.uniform(0.5, 2, k) + rng.uniform(0, 6, k))) + lo  # (120, k)
    b = (x_true @ a.T + rng.normal(0, 0.05, (120, 3 * k))) @ a
    G = a.T @ a
    ref = solve_box_qp(G, b, lo, hi).x
    assert (ref == lo).any() and (ref == hi).any()
    for order in (np.arange(120), rng.permutation(120)):
        got, active = _warm(G, b[order], lo, hi)
        np.testing.assert_allclose(got, ref[order], rtol=0, atol=1e-9)
        assert np.all(kkt_violation(G, b[order], got, lo, hi) <= 1e-10)
        last = ref[order][-1]  # the active set left for the next problem is the last answer's
        assert np.array_equal(active == -1, last == lo) and np.array_equal(active == 1, last == hi)
    # a batch in one call equals the problems one by one
    np.testing.assert_allclose(solve_box_qp_warm(G, b, lo, hi, np.zeros(k, np.int8)), ref, rtol=0, atol=1e-9)


def test_warm_start_that_never_settles_is_solved_by_the_batch_solver(monkeypatch):
    import avguide.export.boxqp as boxqp

    rng = np.random.default_rng(8)
    a = rng.normal(size=(30, 10))
    b = rng.normal(size=(20, 30)) @ a * 2
    ref = solve_box_qp(a.T @ a, b).x
    monkeypatch.setattr(boxqp, "MAX_EXCHANGES", 1)  # no exchange allowed: every change of active set falls back
    got, _ = _warm(a.T @ a, b, 0.0, 1.0, np.ones(10, np.int8))
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-9)


def test_warm_start_equals_the_batch_solver_on_the_heads_blendshapes():
    """The real case: the 52 ARKit shapes' Gram matrix, frames of a smooth face motion off the
    rig, weights beyond both bounds."""
    from avguide.assets.head import load_head

    head = load_head()
    basis = head.blendshapes.reshape(52, -1).astype(np.float64)      # (52, V*3)
    G = basis @ basis.T
    rng = np.random.default_rng(9)
    t = np.linspace(0, 4, 90)[:, None]
    w = 0.5 + 0.8 * np.sin(t * rng.uniform(0.5, 3, 52) + rng.uniform(0, 6, 52))  # (90, 52) in [-0.3, 1.3]
    motion = w @ basis + rng.normal(0, 1e-4, (90, basis.shape[1]))  # (90, V*3)
    b = motion @ basis.T
    ref = solve_box_qp(G, b).x
    assert (ref == 0).any() and (ref == 1).any()
    got, _ = _warm(G, b, 0.0, 1.0)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-9)
