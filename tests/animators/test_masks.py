"""Masks and positional encodings, checked against hand-computed values."""

import math

import torch

from avguide.animators.cache import bias_row
from avguide.animators.masks import alibi_slopes, alignment_mask, biased_mask, distance_bias, \
    periodic_encoding, repeat_for_batch

INF = float("-inf")


def test_slopes_match_faceformer_values():
    assert torch.allclose(alibi_slopes(4), torch.tensor([1 / 4, 1 / 16, 1 / 64, 1 / 256]))
    assert torch.allclose(alibi_slopes(8), torch.tensor([2.0 ** -k for k in range(1, 9)]))
    # 6 heads: the 4-head slopes then every other 8-head slope
    assert torch.allclose(alibi_slopes(6), torch.tensor([1 / 4, 1 / 16, 1 / 64, 1 / 256, 1 / 2, 1 / 8]))


def test_biased_mask_small_case_by_hand():
    m = biased_mask(5, 4, period=2)
    # head 0 (slope 1/4): bias -floor((i-j)/2)/4 on and below the diagonal, -inf above
    expected = torch.tensor([
        [0, INF, INF, INF, INF],
        [0, 0, INF, INF, INF],
        [-1, 0, 0, INF, INF],
        [-1, -1, 0, 0, INF],
        [-2, -1, -1, 0, 0],
    ]) / 4
    assert torch.equal(m[0], expected)
    assert torch.equal(m[3][4, 0], torch.tensor(-2 / 256))
    sym = biased_mask(5, 4, period=2, causal=False)
    assert torch.equal(sym[0], torch.maximum(expected, expected.T))


def test_biased_mask_any_length_700_frames():
    m = biased_mask(700, 4, period=30)
    assert m.shape == (4, 700, 700)
    assert m[1, 699, 0] == -math.floor(699 / 30) / 16
    assert m[0, 650, 651] == INF
    assert torch.isfinite(m[2].tril()).all()
    # the cached path's per-row bias reads the same numbers
    row = bias_row(distance_bias(700, 4, 30), 700)  # frame 699: 700 keys
    assert torch.equal(row[:, 0], m[:, 699])


def test_alignment_mask_1x_and_2x():
    one = alignment_mask(3, 4, ratio=1)
    assert torch.equal(one == 0, torch.tensor([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]], dtype=torch.bool))
    two = alignment_mask(3, 6, ratio=2)
    assert torch.equal(two == 0, torch.tensor([[1, 1, 0, 0, 0, 0], [0, 0, 1, 1, 0, 0], [0, 0, 0, 0, 1, 1]],
                                              dtype=torch.bool))
    assert (two[two != 0] == INF).all()
    big = alignment_mask(700, 1400, ratio=2)
    assert (big[699] == 0).nonzero().flatten().tolist() == [1398, 1399]


def test_alignment_mask_rejects_short_audio():
    try:
        alignment_mask(4, 7, 2)
    except ValueError as e:
        assert "7 audio frames" in str(e)
    else:
        raise AssertionError("no error")


def test_repeat_for_batch_is_batch_major():
    m = torch.arange(2 * 1 * 1.0).view(2, 1, 1)
    assert repeat_for_batch(m, 3).flatten().tolist() == [0, 1, 0, 1, 0, 1]


def test_periodic_encoding():
    pe = periodic_encoding(12, 4, period=5)
    assert torch.equal(pe[0], torch.tensor([0.0, 1.0, 0.0, 1.0]))
    assert torch.equal(pe[7], pe[2])
    assert torch.allclose(pe[1], torch.tensor([math.sin(1), math.cos(1), math.sin(0.01), math.cos(0.01)]))
