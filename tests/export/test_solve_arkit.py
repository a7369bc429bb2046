"""solve_arkit: exact bounded least squares (against scipy's lsq_linear on the full, unreduced
problem), recovery of rig weights, the error figures, chunking, input checks."""

import numpy as np
import pytest
import torch
from scipy.optimize import lsq_linear

from avguide.errors import BadInputError
from avguide.export import ArkitFit, solve_arkit


def _objective(a, y, w):
    r = a @ np.asarray(w, np.float64) - y
    return float(r @ r)


def test_matches_lsq_linear_on_the_full_problem(head, subject, rig):
    """Weights out of [0, 1] plus motion outside the rig: many bounds active, and the fit still
    equals scipy's bounded least squares on the 14226 x 52 problem."""
    rng = np.random.default_rng(0)
    true_w = rng.uniform(-0.6, 1.6, size=(3, 52))
    extra = rng.normal(0.0, 2e-4, size=(3,) + subject.shape)            # 0.2 mm off the rig
    verts = (rig(subject, head.blendshapes, true_w) + extra).astype(np.float32)
    fit = solve_arkit(verts, subject, head.blendshapes)
    assert fit.weights.shape == (3, 52) and fit.weights.dtype == np.float32
    assert fit.weights.min() >= 0.0 and fit.weights.max() <= 1.0

    a = head.blendshapes.reshape(52, -1).astype(np.float64).T           # (V*3, 52)
    for t in range(3):
        y = (verts[t].astype(np.float64) - subject.astype(np.float64)).reshape(-1)
        ref = lsq_linear(a, y, bounds=(0.0, 1.0), method="bvls", tol=1e-14).x
        np.testing.assert_allclose(fit.weights[t], ref, rtol=0, atol=1e-5)
        ours, best = _objective(a, y, fit.weights[t]), _objective(a, y, ref)
        assert ours == pytest.approx(best, rel=1e-9)
        at_bound = (ref <= 1e-12) | (ref >= 1 - 1e-12)
        assert 10 <= at_bound.sum() <= 45, at_bound.sum()              # bounds really active


def test_recovers_known_weights_with_zero_error(head, subject, rig):
    rng = np.random.default_rng(1)
    true_w = rng.uniform(0.0, 1.0, size=(40, 52))
    verts = rig(subject, head.blendshapes, true_w).astype(np.float32)
    fit = solve_arkit(verts, subject, head.blendshapes)
    # float32 vertices (~6e-9 m rounding) are the only error source
    np.testing.assert_allclose(fit.weights, true_w, rtol=0, atol=2e-4)
    assert fit.rms_error_mm < 1e-4 and fit.max_error_mm < 1e-3 and fit.relative_error < 1e-5
    assert fit.iterations == 0   # unconstrained fits are inside the box: no Newton step needed


def test_error_figures_follow_their_definitions(head, subject, rig):
    """A vertex that no blendshape moves, displaced by 2 mm: weights unaffected, and the error
    figures equal the ones computed here from the residual."""
    untouched = np.flatnonzero(np.abs(head.blendshapes).max(axis=(0, 2)) == 0)[0]
    rng = np.random.default_rng(2)
    true_w = rng.uniform(0.0, 1.0, size=(6, 52))
    verts = rig(subject, head.blendshapes, true_w)
    verts[:, untouched, 0] += 0.002
    fit = solve_arkit(verts, subject, head.blendshapes)
    np.testing.assert_allclose(fit.weights, true_w, atol=1e-6)
    residual = verts - rig(subject, head.blendshapes, fit.weights)       # (T, V, 3) metres
    per_vertex = np.linalg.norm(residual, axis=2)
    motion = verts - subject.astype(np.float64)
    assert fit.max_error_mm == pytest.approx(1e3 * per_vertex.max(), rel=1e-6)
    assert fit.max_error_mm == pytest.approx(2.0, rel=1e-4)
    assert fit.rms_error_mm == pytest.approx(1e3 * np.sqrt((per_vertex ** 2).mean()), rel=1e-6)
    assert fit.relative_error == pytest.approx(np.linalg.norm(residual) / np.linalg.norm(motion),
                                               rel=1e-6)
    assert fit.reconstruction() == {"rms_error_mm": fit.rms_error_mm,
                                    "max_error_mm": fit.max_error_mm,
                                    "relative_error": fit.relative_error}


def test_layouts_chunks_and_torch_agree(head, subject, rig):
    rng = np.random.default_rng(3)
    verts = rig(subject, head.blendshapes, rng.uniform(-0.3, 1.3, size=(23, 52))).astype(np.float32)
    ref = solve_arkit(verts, subject, head.blendshapes)
    flat = solve_arkit(verts.reshape(23, -1), subject, head.blendshapes, chunk_frames=5)
    tensor = solve_arkit(torch.from_numpy(verts), torch.from_numpy(subject),
                         torch.from_numpy(np.array(head.blendshapes)), chunk_frames=1)
    for other in (flat, tensor):
        assert isinstance(other, ArkitFit)
        np.testing.assert_allclose(other.weights, ref.weights, atol=1e-7)
        assert other.rms_error_mm == pytest.approx(ref.rms_error_mm, rel=1e-9)
        assert other.max_error_mm == pytest.approx(ref.max_error_mm, rel=1e-9)
        assert other.relative_error == pytest.approx(ref.relative_error, rel=1e-9)


def test_no_motion_gives_zero_weights(head, subject):
    fit = solve_arkit(np.repeat(subject[None], 3, axis=0), subject, head.blendshapes)
    assert np.all(fit.weights == 0) and fit.relative_error == 0.0 and fit.max_error_mm == 0.0


@pytest.mark.parametrize("case, words", [
    ("vertex_count", ["vertices", "(T, 4742, 3)"]),
    ("last_dim", ["vertices"]),
    ("no_frames", ["T = 0"]),
    ("nan_vertices", ["vertices", "NaN", "frame 2"]),
    ("shape_count", ["blendshapes", "(52, 4742, 3)"]),
    ("template_shape", ["template"]),
    ("inf_template", ["template", "inf"]),
    ("dependent", ["linearly dependent"]),
    ("chunk", ["chunk_frames"]),
])
def test_bad_input_is_one_clear_error(head, subject, case, words):
    verts = np.repeat(subject[None], 4, axis=0)
    bs = np.array(head.blendshapes)
    tmpl = subject.copy()
    kwargs = {}
    if case == "vertex_count":
        verts = verts[:, :-1]
    elif case == "last_dim":
        verts = verts[..., :2]
    elif case == "no_frames":
        verts = verts[:0]
    elif case == "nan_vertices":
        verts[2, 10, 1] = np.nan
    elif case == "shape_count":
        bs = bs[:51]
    elif case == "template_shape":
        tmpl = tmpl[:, :2]
    elif case == "inf_template":
        tmpl[0, 0] = np.inf
    elif case == "dependent":
        bs[5] = bs[4]
    elif case == "chunk":
        kwargs["chunk_frames"] = 0
    with pytest.raises(ValueError) as e:
        solve_arkit(verts, tmpl, bs, **kwargs)
    assert not isinstance(e.value, BadInputError)  # the caller's arrays: a programming error
    for w in words:
        assert w in str(e.value), (w, str(e.value))
    assert str(e.value).startswith("solve_arkit:")
