"""Many small box-constrained convex quadratic programs solved at once (numpy, float64).

Each row ``b[n]`` defines one problem sharing the matrix ``G``::

    minimise  f(x) = 0.5 x^T G x - b^T x    subject to  lo <= x <= hi      (x in R^K)

with ``G`` (K, K) symmetric positive definite. A bounded least-squares problem
``min ||A x - y||^2, lo <= x <= hi`` is this QP with ``G = A^T A`` and ``b = A^T y``, which is how
:func:`avguide.export.arkit.solve_arkit` reduces a (V*3)-row fit to K = 52 unknowns once.

Method: projected Newton (D. P. Bertsekas, "Projected Newton methods for optimization problems
with simple constraints", SIAM J. Control Optim. 20(2), 1982). Start from the clipped
unconstrained minimiser; at each step the variables held at a bound by a gradient pointing out of
the box (within a shrinking tolerance) take a scaled gradient step, the others an exact Newton step
on their subspace, and a backtracking (Armijo) search along the projection arc keeps every step a
descent. Once the optimal active set is found the Newton step lands exactly on the solution, so
the result is exact to round-off. A problem stops when its KKT violation (:func:`kkt_violation`)
is at most ``tol``; only problems not yet converged are iterated.

Streams of problems whose solutions move little from one to the next (an animation's frames,
solved as they arrive) have :func:`solve_box_qp_warm`: each problem starts from the previous
one's active set (which variables sit at which bound), solves the free variables exactly, and
moves the variables that break the KKT conditions across (block principal pivoting: J. J. Judice
and F. M. Pires, "A block principal pivoting algorithm for large-scale strictly monotone linear
complementarity problems", Comput. Oper. Res. 21(5), 1994); a problem not settled in a few
exchanges is handed to :func:`solve_box_qp`. Either way the answer meets the same ``tol``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg
from scipy.linalg.lapack import dposv

ARMIJO = 1e-4
"""Sufficient-decrease fraction of the line search."""
MAX_HALVINGS = 40
"""Step halvings tried by the line search before it takes the last (tiny) step."""
EPS_ACTIVE = 1e-6
"""Largest distance to a bound at which a variable may be treated as held by it (Bertsekas's
epsilon; any value > 0 keeps the convergence proof, small values identified the active set in the
fewest steps on the head's 52 blendshapes)."""


@dataclass(frozen=True)
class BoxQPResult:
    """The solutions of a batch of box-constrained QPs.

    Attributes:
        x: (N, K) float64 minimisers.
        iterations: the most projected Newton steps any problem took (0: every clipped
            unconstrained minimiser was already optimal).
        kkt: largest :func:`kkt_violation` over the batch (<= the ``tol`` asked for).
    """

    x: np.ndarray
    iterations: int
    kkt: float


def kkt_violation(G: np.ndarray, b: np.ndarray, x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """How far each ``x[n]`` is from optimal: ``max_k |x_k - clip(x_k - g_k / G_kk, lo, hi)|``.

    Zero exactly at the minimiser (the KKT conditions: gradient ``g = G x - b`` zero on free
    variables, >= 0 at the lower bound, <= 0 at the upper bound). In units of x: the move a
    diagonally scaled projected gradient step would make.

    Args:
        G: (K, K) float64 SPD matrix.
        b: (N, K) float64 linear terms.
        x: (N, K) float64 points inside the box.
        lo, hi: the bounds.
    Returns:
        (N,) float64 violations.
    """
    g = x @ G - b                                        # (N, K); G is symmetric
    return np.abs(x - np.clip(x - g / np.diag(G), lo, hi)).max(axis=1)


def _objective(G: np.ndarray, b: np.ndarray, x: np.ndarray) -> np.ndarray:
    return 0.5 * np.einsum("nk,nk->n", x @ G, x) - np.einsum("nk,nk->n", b, x)  # (N,)


def _solve_free(G: np.ndarray, r: np.ndarray, free: np.ndarray) -> np.ndarray:
    """Solve ``G[F, F] y[F] = r[F]`` with ``y = 0`` off ``F``, for each row's free set ``F``.

    Rows are grouped by ``|F|`` and each group's (|F|, |F|) sub-matrices solved in one batched
    call: a (52 - m)-held problem costs (m / 52)^3 of a full solve.

    Args:
        G: (K, K) SPD matrix. r: (N, K) right-hand sides. free: (N, K) bool free sets.
    Returns:
        (N, K) float64 solutions, zero on the held variables.
    """
    y = np.zeros(r.shape)
    count = free.sum(axis=1)                                            # (N,)
    for m in np.unique(count):
        if m == 0:
            continue
        rows = np.flatnonzero(count == m)
        idx = np.nonzero(free[rows])[1].reshape(len(rows), m)          # (n, m) free indices
        sub = G[idx[:, :, None], idx[:, None, :]]                       # (n, m, m)
        rhs = np.take_along_axis(r[rows], idx, axis=1)                  # (n, m)
        ym = np.zeros((len(rows), r.shape[1]))
        np.put_along_axis(ym, idx, np.linalg.solve(sub, rhs[..., None])[..., 0], axis=1)
        y[rows] = ym
    return y


def _newton_step(G: np.ndarray, b: np.ndarray, x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """One projected Newton step with Armijo backtracking for every row of ``x`` (N, K)."""
    n = x.shape[0]
    diag = np.diag(G)
    g = x @ G - b                                                       # (N, K)
    w = np.abs(x - np.clip(x - g / diag, lo, hi)).max(axis=1, keepdims=True)
    eps = np.minimum(w, EPS_ACTIVE)                                     # (N, 1)
    held = ((x <= lo + eps) & (g > 0)) | ((x >= hi - eps) & (g < 0))    # (N, K)
    free = ~held
    # Newton step on the free variables, scaled gradient step on the held ones.
    d = np.where(free, _solve_free(G, -g, free), -g / diag)             # (N, K)
    f0 = _objective(G, b, x)
    scale = np.abs(f0) + np.einsum("nk,nk->n", np.abs(b), np.abs(x)) + 1e-300
    alpha = np.ones(n)
    out = x.copy()
    todo = np.arange(n)
    for _ in range(MAX_HALVINGS):
        xa = np.clip(x[todo] + alpha[todo, None] * d[todo], lo, hi)      # (n', K)
        gt, ft, dt = g[todo], free[todo], d[todo]
        predicted = ARMIJO * (-alpha[todo] * np.where(ft, gt * dt, 0.0).sum(1)
                              + np.where(ft, 0.0, gt * (x[todo] - xa)).sum(1))
        decrease = f0[todo] - _objective(G, b[todo], xa)
        ok = decrease >= predicted - 1e-13 * scale[todo]   # round-off slack near the optimum
        out[todo[ok]] = xa[ok]
        todo = todo[~ok]
        if todo.size == 0:
            break
        alpha[todo] *= 0.5
    if todo.size:                                          # only round-off left to gain
        out[todo] = np.clip(x[todo] + alpha[todo, None] * d[todo], lo, hi)
    return out


def solve_box_qp(G: np.ndarray, b: np.ndarray, lo: float = 0.0, hi: float = 1.0, *,
                 tol: float = 1e-10, max_iter: int = 100) -> BoxQPResult:
    """Solve ``min 0.5 x^T G x - b[n]^T x`` s.t. ``lo <= x <= hi`` for every row ``b[n]``.

    Args:
        G: (K, K) symmetric positive definite matrix (float64 advised).
        b: (N, K) linear terms, one problem per row.
        lo, hi: the box, ``lo < hi``, the same for every variable.
        tol: stop a problem once its :func:`kkt_violation` is at most this (units of x).
        max_iter: projected Newton steps after which a problem still not converged is a bug.
    Returns:
        :class:`BoxQPResult` with ``x`` (N, K) float64.
    Raises:
        numpy.linalg.LinAlgError: ``G`` is not positive definite (the caller checks this first).
        RuntimeError: a problem did not converge in ``max_iter`` steps (a bug, or ``tol`` below
            the round-off of this ``G``).
    """
    assert lo < hi, (lo, hi)
    G = np.asarray(G, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    chol = scipy.linalg.cho_factor(G)
    x = np.clip(scipy.linalg.cho_solve(chol, b.T).T, lo, hi)           # (N, K)
    viol = kkt_violation(G, b, x, lo, hi)
    todo = np.flatnonzero(viol > tol)
    it = 0
    while todo.size:
        if it == max_iter:
            raise RuntimeError(f"solve_box_qp: {todo.size} of {len(b)} problems not converged after "
                               f"{max_iter} projected Newton steps (KKT violation "
                               f"{viol[todo].max():.3g} > tol {tol:g})")
        it += 1
        x[todo] = _newton_step(G, b[todo], x[todo], lo, hi)
        viol[todo] = kkt_violation(G, b[todo], x[todo], lo, hi)
        todo = todo[viol[todo] > tol]
    return BoxQPResult(x=x, iterations=it, kkt=float(viol.max(initial=0.0)))


MAX_EXCHANGES = 6
"""Active-set exchanges :func:`solve_box_qp_warm` tries before handing a problem to
:func:`solve_box_qp` (consecutive animation frames settle in 1-2)."""


def solve_box_qp_warm(G: np.ndarray, b: np.ndarray, lo: float, hi: float, active: np.ndarray, *,
                      tol: float = 1e-10) -> np.ndarray:
    """Solve the problems ``b[0], b[1], ...`` of :func:`solve_box_qp` one after another, each
    starting from the active set of the one before: cheap when consecutive solutions share most
    of their bounds (a few small numpy calls per problem instead of a projected Newton run).

    The result meets the same KKT tolerance as :func:`solve_box_qp` (the minimiser is unique, so
    the two agree to round-off); a problem not settled in :data:`MAX_EXCHANGES` exchanges is
    solved by :func:`solve_box_qp`.

    Args:
        G: (K, K) float64 symmetric positive definite matrix.
        b: (N, K) float64 linear terms, in order.
        lo, hi: the box, ``lo < hi``.
        active: (K,) int8 warm start, **updated in place** to the last problem's active set:
            -1 at ``lo``, +1 at ``hi``, 0 free (all zeros: start from the unconstrained minimiser).
            The caller keeps one per stream.
        tol: KKT violation accepted (:func:`kkt_violation`, units of x).
    Returns:
        (N, K) float64 minimisers.
    Raises:
        numpy.linalg.LinAlgError: ``G`` is not positive definite.
    """
    assert lo < hi, (lo, hi)
    G, b = np.asarray(G, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert active.shape == (G.shape[0],) and active.dtype == np.int8, (active.shape, active.dtype)
    diag = np.diag(G)
    held = np.array([lo, 0.0, hi])                                         # value by active + 1
    x = np.empty(b.shape)
    for n, bn in enumerate(b):
        for _ in range(MAX_EXCHANGES):
            xn = held[active + 1]                                          # (K,) held values, 0 on free
            free = np.flatnonzero(active == 0)
            if free.size:  # G[F, F] x[F] = b[F] - G[F, H] x[H], by Cholesky (one LAPACK call)
                rows = G[free]                                             # (|F|, K)
                _, xn[free], info = dposv(rows[:, free], bn[free] - rows @ xn, overwrite_a=True, overwrite_b=True)
                if info:
                    raise np.linalg.LinAlgError(f"solve_box_qp_warm: G is not positive definite (dposv info {info})")
            g = G @ xn - bn                                                # (K,) gradient
            # KKT: free variables inside the box, held ones pushed against their bound (g >= 0
            # at lo, <= 0 at hi: active * g <= 0)
            wrong = (xn < lo) | (xn > hi) | (active * g > 0)
            if not wrong.any():
                break
            xc = np.clip(xn, lo, hi)                                       # round-off at a bound
            if np.abs(xc - np.clip(xc - (G @ xc - bn) / diag, lo, hi)).max() <= tol:
                xn = xc
                break
            # exchange: free variables out of the box go to the bound they crossed, held ones the
            # gradient pulls into the box are freed
            active[wrong] = np.where(xn[wrong] < lo, -1, np.where(xn[wrong] > hi, 1, 0))
        else:
            xn = solve_box_qp(G, bn[None], lo, hi, tol=tol).x[0]
            g = G @ xn - bn
            active[:] = np.where((xn <= lo) & (g > 0), -1, np.where((xn >= hi) & (g < 0), 1, 0))
        x[n] = xn
    return x
