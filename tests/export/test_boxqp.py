"""The batched box QP on small random problems, against scipy's bounded least squares."""

import numpy as np
import pytest
from scipy.optimize import lsq_linear

from avguide.export.boxqp import kkt_violation, solve_box_qp


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
