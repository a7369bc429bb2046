"""Threaded chunks of a batch (map_batch) give the images and gradients of the sequential render."""

import pytest
import torch

from avguide.render import expert_input
from avguide.render.parallel import chunk_bounds, map_batch


def test_chunk_bounds_cover_the_batch_in_balanced_pieces():
    assert chunk_bounds(10, 2) == [slice(0, 5), slice(5, 10)]
    assert chunk_bounds(10, 2, max_chunk=3) == [slice(0, 2), slice(2, 5), slice(5, 8), slice(8, 10)]
    assert chunk_bounds(1, 4) == [slice(0, 1)]
    assert chunk_bounds(0, 2) == []
    for n in range(1, 40):
        b = chunk_bounds(n, 3, max_chunk=7)
        assert b[0].start == 0 and b[-1].stop == n and all(x.stop == y.start for x, y in zip(b, b[1:]))
        assert max(s.stop - s.start for s in b) <= 7 and len(b) >= min(n, 3)


def test_map_batch_gradients_reach_every_input_that_requires_them():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(7, 3, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randn(7, 3, generator=g, dtype=torch.float64)  # constant
    w = torch.randn(7, 3, generator=g, dtype=torch.float64, requires_grad=True)

    def fn(sl, a, b, c):
        return (a.sin() * b + c.square()).sum(1, keepdim=True) * (sl.start + 1)

    out = map_batch(fn, [x, y, w], workers=3)
    ref_out = torch.cat([fn(sl, x[sl], y[sl], w[sl]) for sl in chunk_bounds(7, 3)])
    torch.testing.assert_close(out, ref_out, rtol=0, atol=0)
    gx, gw = torch.autograd.grad(out.square().sum(), [x, w])
    rx, rw = torch.autograd.grad(ref_out.square().sum(), [x, w])
    torch.testing.assert_close(gx, rx, rtol=0, atol=0)
    torch.testing.assert_close(gw, rw, rtol=0, atol=0)
    assert torch.autograd.gradcheck(lambda a, c: map_batch(fn, [a, y, c], workers=2), (x, w))


def test_map_batch_without_gradients_and_with_one_worker_is_the_plain_call():
    x = torch.arange(12.0).view(6, 2)
    fn = lambda sl, a: a * 2 + sl.start  # noqa: E731
    assert torch.equal(map_batch(fn, [x], workers=1), x * 2)
    assert torch.equal(map_batch(fn, [x], workers=2), torch.cat([x[:3] * 2, x[3:] * 2 + 3]))
    with pytest.raises(ValueError, match="batch size"):
        map_batch(fn, [x, x[:5]], workers=2)


def test_threaded_expert_input_equals_sequential_images_and_gradients(head, jaw_batch):
    g = torch.Generator().manual_seed(4)
    v0, alb, nb, cam = jaw_batch(head, g, 12)
    lengths = torch.tensor([12, 9])
    weights = torch.randn(2, 10, 1, 88, 88, generator=g)
    results = []
    for workers, chunk in ((1, 64), (2, 64), (3, 4)):
        v = v0.clone().requires_grad_(True)
        video, len25 = expert_input(v, lengths, 30.0, head.faces, cam, alb, neighbors=nb, chunk=chunk, workers=workers)
        (video * weights).sum().backward()
        results.append((video.detach(), len25, v.grad))
    video, len25, grad = results[0]
    assert len25.tolist() == [10, 8] and grad.abs().max() > 0
    for other in results[1:]:
        torch.testing.assert_close(other[0], video, rtol=0, atol=1e-6)
        assert torch.equal(other[1], len25)
        torch.testing.assert_close(other[2], grad, rtol=1e-5, atol=1e-6 * float(grad.abs().max()))
