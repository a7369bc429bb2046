"""LVE, MVE, FDD against hand-computed cases."""

import math

import numpy as np
import pytest
import torch

from avguide.metrics import geometry


def _lve_case():
    """2 frames, 3 vertices, lips = {0, 2}; ground truth at the origin."""
    gt = np.zeros((2, 3, 3))
    pred = np.zeros((2, 3, 3))
    pred[0, 0] = (1, 0, 0)  # sq 1
    pred[0, 1] = (0, 3, 0)  # sq 9, not a lip vertex
    pred[0, 2] = (0, 1, 1)  # sq 2     -> frame 0 max over lips = 2
    pred[1, 0] = (0, 0, 2)  # sq 4     -> frame 1 max over lips = 4
    pred[1, 2] = (1, 1, 1)  # sq 3
    return pred, gt, np.array([0, 2])


def test_lve_hand_case():
    pred, gt, lips = _lve_case()
    np.testing.assert_allclose(geometry.lip_max_sq_error(pred, gt, lips), [2.0, 4.0])
    assert geometry.lve(pred, gt, lips) == pytest.approx(3.0)
    # all vertices as lips: frame 0 max is the non-lip vertex's 9
    assert geometry.lve(pred, gt, [0, 1, 2]) == pytest.approx((9 + 4) / 2)


def test_lve_is_translation_invariant_in_error_and_accepts_torch_float32():
    pred, gt, lips = _lve_case()
    shift = np.array([10.0, -5.0, 2.0])
    assert geometry.lve(pred + shift, gt + shift, lips) == pytest.approx(3.0)
    t = geometry.lve(torch.tensor(pred, dtype=torch.float32), torch.tensor(gt), lips)
    assert t == pytest.approx(3.0, rel=1e-6)


def test_mve_hand_case():
    pred, gt, _ = _lve_case()
    # per-vertex L2 norms: frame 0: 1, 3, sqrt 2; frame 1: 2, 0, sqrt 3
    expected = (1 + 3 + math.sqrt(2) + 2 + 0 + math.sqrt(3)) / 6
    assert geometry.mve(pred, gt) == pytest.approx(expected)
    np.testing.assert_allclose(geometry.vertex_l2_error(pred, gt),
                               [(4 + math.sqrt(2)) / 3, (2 + math.sqrt(3)) / 3])


def test_batched_variants_ignore_padding():
    pred, gt, lips = _lve_case()
    # batch of two sequences padded to 3 frames; the padding frames carry huge errors
    bp = np.zeros((2, 3, 3, 3))
    bg = np.zeros((2, 3, 3, 3))
    bp[0, :2] = pred
    bp[1, :1] = pred[1:]  # second sequence: 1 valid frame with lip error 4
    bp[0, 2] = bp[1, 1:] = 1e6
    lengths = np.array([2, 1])
    # pooled over the 3 valid frames: (2 + 4 + 4) / 3
    assert geometry.lve_batch(bp, bg, lips, lengths) == pytest.approx(10 / 3)
    mve_frames = [(4 + math.sqrt(2)) / 3, (2 + math.sqrt(3)) / 3, (2 + math.sqrt(3)) / 3]
    assert geometry.mve_batch(bp, bg, lengths) == pytest.approx(np.mean(mve_frames))
    with pytest.raises(ValueError, match="lengths"):
        geometry.lve_batch(bp, bg, lips, [4, 1])


def test_motion_std_uses_squared_norm_and_population_std():
    template = np.ones((1, 3))
    # displacement magnitudes 0, 2, 0, 2 -> squared 0, 4, 0, 4 -> population std 2
    # (a plain norm would give std 1; ddof=1 would give 4/sqrt(3))
    verts = template + np.array([0, 2, 0, 2], dtype=float)[:, None, None] * np.array([0, 1, 0])
    np.testing.assert_allclose(geometry.motion_std(verts, template, [0]), [2.0])


def test_fdd_hand_case():
    template = np.full((2, 3), 0.5)
    gt = np.zeros((4, 2, 3))
    gt[:, 0, 0] = [0, 1, 0, 1]  # sq norms 0 1 0 1 -> std 0.5
    gt[:, 1, 0] = 2             # sq norms 4 4 4 4 -> std 0     => gt motion std = 0.25
    pred = np.zeros((4, 2, 3))
    pred[:, 1, :2] = [[1, 1], [1, 1], [0, 0], [0, 0]]  # vertex 1 sq norms 2 2 0 0 -> std 1
    # vertex 0 static -> std 0                                 => pred motion std = 0.5
    gt, pred = gt + template, pred + template
    assert geometry.fdd(pred, gt, template, [0, 1]) == pytest.approx(0.25 - 0.5)
    assert geometry.fdd(gt, gt, template, [0, 1]) == 0.0
    # only vertex 0 is upper face: gt 0.5, pred 0
    assert geometry.fdd(pred, gt, template, [0]) == pytest.approx(0.5)


@pytest.mark.parametrize("call", [
    lambda: geometry.lve(np.zeros((2, 3, 3)), np.zeros((3, 3, 3)), [0]),
    lambda: geometry.lve(np.zeros((2, 3, 3)), np.zeros((2, 3, 3)), [3]),
    lambda: geometry.lve(np.zeros((2, 3, 3)), np.zeros((2, 3, 3)), []),
    lambda: geometry.lve(np.zeros((2, 3, 2)), np.zeros((2, 3, 2)), [0]),
    lambda: geometry.lve(np.zeros((2, 3, 3)), np.zeros((2, 3, 3)), [0.5]),
    lambda: geometry.fdd(np.zeros((2, 3, 3)), np.zeros((2, 3, 3)), np.zeros((4, 3)), [0]),
])
def test_bad_inputs_raise_bad_input_error(call):
    with pytest.raises(ValueError):
        call()
