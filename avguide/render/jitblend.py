"""Compiled frame blending for the 25 fps resampling of vertex sequences (numba), forward and backward.

:func:`avguide.render.lipcam.resample_fps` and :func:`avguide.render.lipcam.resample_frames` make
every output frame a blend ``a * w0 + b * w1`` of two input frames (``w0 = 1 - w1``, computed by
the caller in the input's dtype). In torch that is two gathers of whole frames, two products and a
sum, each a pass over the output, and a backward of as many passes plus the zero-filled buffers of
every gather; on a padded (B, T, V, 3) batch of the whole head, where the expert's crops need a
third of the vertices, this costs more than rendering them. :func:`blend_rows` is one pass that
reads only the vertices asked for, and a backward that scatters into one zero-filled buffer.

The forward repeats the torch expression's arithmetic in the input's dtype (one product per term,
then their sum; no fused multiply-add), so frames are equal bit for bit; the backward adds the
two terms of each output frame in turn (torch sums each gather's gradient separately, then the
two), so gradients agree to a rounding of the input's dtype.
"""

from __future__ import annotations

import torch

from avguide.render.numbajit import available, njit  # noqa: F401  (available: the switch callers ask)


@njit
def _blend_fwd(src, r0, r1, w0, w1, vid, out):
    """out[n, u] = src[r0[n], vid[u]] * w0[n] + src[r1[n], vid[u]] * w1[n]."""
    for n in range(out.shape[0]):
        a, b, p, q = r0[n], r1[n], w0[n], w1[n]
        for u in range(vid.shape[0]):
            v = vid[u]
            for c in range(src.shape[2]):
                out[n, u, c] = src[a, v, c] * p + src[b, v, c] * q


@njit
def _blend_bwd(grad, r0, r1, w0, w1, vid, g_src):
    """g_src (R, V, C) (zeros) += the gradient of src from grad (N, U, C)."""
    for n in range(grad.shape[0]):
        a, b, p, q = r0[n], r1[n], w0[n], w1[n]
        for u in range(vid.shape[0]):
            v = vid[u]
            for c in range(grad.shape[2]):
                g = grad[n, u, c]
                g_src[a, v, c] += g * p
                g_src[b, v, c] += g * q


class _BlendRows(torch.autograd.Function):
    """See :func:`blend_rows`."""

    @staticmethod
    def forward(ctx, src, r0, r1, w0, w1, vid):
        s = src.detach().contiguous()
        out = torch.empty((r0.shape[0], vid.shape[0], s.shape[2]), dtype=s.dtype)
        idx = [t.contiguous().numpy() for t in (r0, r1, w0.to(s.dtype), w1.to(s.dtype), vid)]
        _blend_fwd(s.numpy(), *idx, out.numpy())
        ctx.idx, ctx.src_shape = idx, s.shape
        return out

    @staticmethod
    def backward(ctx, grad):
        g_src = torch.zeros(ctx.src_shape, dtype=grad.dtype)
        _blend_bwd(grad.detach().contiguous().numpy(), *ctx.idx, g_src.numpy())
        return g_src, None, None, None, None, None


def blend_rows(src: torch.Tensor, r0: torch.Tensor, r1: torch.Tensor, w0: torch.Tensor, w1: torch.Tensor,
               vertices: torch.Tensor) -> torch.Tensor:
    """Blends of pairs of frames at some vertices (differentiable w.r.t. ``src``, once).

    Args:
        src: (R, V, C) float CPU frames.
        r0, r1: (N,) int64 rows of ``src`` blended into each output frame.
        w0, w1: (N,) float their weights (the dtype of ``src``).
        vertices: (U,) int64 the vertices kept, in output order.
    Returns:
        (N, U, C) float: ``src[r0[n], vertices] * w0[n] + src[r1[n], vertices] * w1[n]``.
    """
    return _BlendRows.apply(src, r0, r1, w0, w1, vertices)
