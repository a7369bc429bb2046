"""The compiled frame blending (avguide.render.jitblend) of resample_fps and resample_frames: the torch
path's frames bit for bit, its gradients to a rounding, and finite differences."""

import pytest
import torch

from avguide.render import jitblend
from avguide.render.lipcam import resample_fps, resample_frames

pytestmark = pytest.mark.skipif(not jitblend.available(), reason="numba is not importable")


def _batch(dtype, g, b=3, t=11, v=17):
    return torch.randn(b, t, v, 3, generator=g, dtype=torch.float64).to(dtype), torch.tensor([11, 4, 7][:b])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("fps", [30.0, 50.0, 25.0, 24.0])
def test_resample_fps_equals_the_torch_path(dtype, fps):
    g = torch.Generator().manual_seed(0)
    verts, lengths = _batch(dtype, g)
    out = {}
    for jit in (True, False):
        v = verts.clone().requires_grad_(True)
        frames, len25 = resample_fps(v, lengths, fps, jit=jit)
        (frames * torch.randn(frames.shape, generator=torch.Generator().manual_seed(1), dtype=dtype)).sum().backward()
        out[jit] = frames.detach(), len25, v.grad
    assert torch.equal(out[True][0], out[False][0]) and torch.equal(out[True][1], out[False][1])
    eps = torch.finfo(dtype).eps
    torch.testing.assert_close(out[True][2], out[False][2], rtol=4 * eps, atol=4 * eps)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_resample_frames_equals_resampling_then_gathering(dtype):
    g = torch.Generator().manual_seed(2)
    verts, lengths = _batch(dtype, g)
    for vertices in (None, torch.tensor([16, 3, 4, 9, 0]), torch.tensor([], dtype=torch.int64)):
        v = verts if vertices is None else verts[:, :, vertices]
        v25, len25 = resample_fps(v, lengths, 30.0, jit=False)
        bi, ti = (torch.arange(v25.shape[1])[None] < len25[:, None]).nonzero(as_tuple=True)
        out = {}
        for jit in (True, False):
            x = verts.clone().requires_grad_(True)
            frames, lens, idx = resample_frames(x, lengths, 30.0, vertices=vertices, jit=jit)
            assert torch.equal(lens, len25) and torch.equal(idx[0], bi) and torch.equal(idx[1], ti)
            assert torch.equal(frames.detach(), v25[bi, ti])
            frames.backward(torch.randn(frames.shape, generator=torch.Generator().manual_seed(3), dtype=dtype))
            out[jit] = x.grad
        eps = torch.finfo(dtype).eps
        torch.testing.assert_close(out[True], out[False], rtol=4 * eps, atol=4 * eps)


def test_gradients_match_finite_differences():
    g = torch.Generator().manual_seed(4)
    verts, lengths = _batch(torch.float64, g, t=6, v=5)
    lengths = torch.tensor([6, 3, 5])
    x = verts.clone().requires_grad_(True)
    torch.autograd.gradcheck(lambda v: resample_frames(v, lengths, 30.0, vertices=torch.tensor([4, 1, 2]))[0], (x,))
    torch.autograd.gradcheck(lambda v: resample_fps(v, lengths, 40.0)[0], (x,))


def test_bad_vertices_and_lengths():
    verts = torch.zeros(2, 5, 4, 3)
    with pytest.raises(ValueError, match="vertices"):
        resample_frames(verts, torch.tensor([5, 2]), 30.0, vertices=torch.tensor([0, 4]))
    with pytest.raises(ValueError, match="lengths"):
        resample_frames(verts, torch.tensor([6, 2]), 30.0)
