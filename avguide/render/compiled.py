"""Opt-in ``torch.compile`` versions of the renderer's heaviest kernels (``compile=True``).

The eager renderer is a chain of small tensor operations, each one pass over memory. Here the
per-face set-up and culling of :func:`avguide.render.raster._setup`, the scanline's (face, row)
intervals and pixel expansion (:func:`avguide.render.raster._scanline`), the two-pass
visibility of :func:`avguide.render.raster.rasterize`, the forward and backward of
:func:`avguide.render.planes.shade_planes` and the exit-edge search of
:func:`avguide.render.antialias.antialias_planes` are written as a few pure functions that
``torch.compile(dynamic=True)`` (inductor's C++ backend on CPU) fuses into one loop each, gathers
included. The arithmetic is the eager code's, operation for operation, so face ids are identical
and images and gradients equal the eager ones to float32 rounding (``tests/render``).

The kernels are built with inductor's ``cpp_wrapper`` option, whose C++ wrapper releases the GIL
while they run. Inductor's default Python bindings hold it: two ``map_batch`` worker threads then
take turns instead of running at once (``bench/compile_threads.py``: two threads together got
0.98x the throughput of one without ``cpp_wrapper``, 2.2x with it). The expert-window
training path (batch 32, 2 workers x 1 thread) runs about 1.3x faster than eager.

Costs: the first call compiles (about 50 s on 2 cores; about 6 s once inductor's on-disk
cache holds the kernels), a single-frame chunk compiles once more (size-1 specialisation), and
a C++ compiler is needed: without one, ``compile=True`` warns once and renders eagerly. The
compiled functions are process-wide, like every ``torch.compile`` cache; first calls are
serialised across threads (``map_batch`` workers), see :data:`_FIRST_CALLS`.

Cases the kernels do not cover use the eager code for the whole call: scanline faces needing the
column-by-column fallback (huge coordinates, horizontal edges).
"""

from __future__ import annotations

import functools
import threading
import warnings

import torch

from avguide.render import raster
from avguide.render.antialias import antialias_planes as eager_antialias_planes
from avguide.render.shading import Lights


@functools.cache
def available() -> bool:
    """Whether inductor finds a C++ compiler (warns once, naming the cause, when not)."""
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler

        get_cpp_compiler()
        return True
    except Exception as e:  # InvalidCxxCompiler, or an inductor that lacks this function
        warnings.warn(f"render compile=True: torch.compile needs a C++ compiler for its CPU backend "
                      f"({type(e).__name__}: {e}); set CXX or install g++. Rendering without torch.compile.",
                      RuntimeWarning, stacklevel=3)
        return False


_FIRST_CALLS = threading.Lock()
"""Held while a kernel runs its first call (compiles): dynamo's guard checks are not safe while
another thread compiles (they fail and compile the function again), so during a compilation
every kernel call waits for it."""


class _Kernel:
    """``torch.compile(fn, dynamic=True)`` with a GIL-releasing C++ wrapper; the first call, and
    calls during another kernel's first call, run under :data:`_FIRST_CALLS`."""

    def __init__(self, fn):
        self.fn = torch.compile(fn, dynamic=True, options={"cpp_wrapper": True})
        self.warm = False

    def __call__(self, *args):
        if self.warm and not _FIRST_CALLS.locked():
            return self.fn(*args)
        with _FIRST_CALLS:
            out = self.fn(*args)
            self.warm = True
            return out


@functools.cache
def _kernel(fn) -> _Kernel:
    return _Kernel(fn)


# ---- rasteriser: per-face set-up (raster._setup) ----

def _setup(pix: torch.Tensor, faces: torch.Tensor, size: tuple[int, int], orthographic: bool,
           cull_backfaces: bool, face_mask: torch.Tensor | None) -> raster._Drawn:
    """:func:`raster._setup` (the same pairs, in the same order) with its pure pieces compiled."""
    return raster._setup(pix, faces, size, orthographic, cull_backfaces, face_mask, kernel=_kernel)


# ---- rasteriser: scanline (raster._row_intervals, raster._edge_bounds, raster._scanline) ----

def _intervals(corner, slope, depth, box, img, face, pair, first_pair, h: int, w: int):
    """Covered columns of the R (face, row) pairs (``pair`` (R,) int64 face of each) of faces with
    no column-by-column edge: :func:`raster._edge_bounds`'s float32 tests, fused.

    Returns:
        lo, count, base (R,) int32 (first covered column, covered pixels, first pixel of the row
        in N*H*W), face (R,) int32, and zrow, dzdx, cx0 (R,) float32 (depth at the row, its
        d/dx, corner 0 x).
    """
    cx, cy = corner[0].index_select(1, pair), corner[1].index_select(1, pair)  # (3, R) each
    sx, a = slope[0].index_select(1, pair), slope[1].index_select(1, pair)
    bx = box.index_select(1, pair)  # (4, R)
    x0, x1 = bx[0], bx[0] + bx[2] - 1
    row = bx[1] + (torch.arange(pair.shape[0], device=pair.device) - first_pair.index_select(0, pair))  # (R,)
    r = ((row.float() + 0.5) - cy) * sx  # (3, R)
    cap = torch.where(a > 0, float("-inf"), float("inf"))
    sg = torch.sign(a)
    est = torch.round((cx - 0.5) + r * (1.0 / a))
    step = (((est + 0.5) - cx) * a <= r).int() + ((((est + sg) + 0.5) - cx) * a <= r).int()
    bound = est + sg * (step - 1)
    lo_k, hi_k = torch.minimum(bound, cap), torch.maximum(bound, cap)
    f0, f1 = x0.float(), x1.float()
    lo = torch.maximum(torch.maximum(lo_k[0], lo_k[1]), lo_k[2]).clamp(f0, f1 + 1).int()
    hi = torch.minimum(torch.minimum(hi_k[0], hi_k[1]), hi_k[2]).clamp(f0 - 1, f1).int()
    count = (hi - lo + 1).clamp_min(0)
    dp = depth.index_select(1, pair)  # (3, R)
    zrow = dp[2] * ((row.float() + 0.5) - cy[0]) + dp[0]
    base = (img.index_select(0, pair) * (h * w) + row * w).int()
    return lo, count, base, face.index_select(0, pair).int(), zrow, dp[1], cx[0]


def _expand(lo, base, face, zrow, dzdx, cx0, owner, first_px):
    """pixel (Q,) int64, depth (Q,) float32, face (Q,) int32 of the covered pixels (``owner`` (Q,)
    int64 pair of each, ``first_px`` (R,) output index of each pair's first pixel)."""
    col = lo.index_select(0, owner) + (torch.arange(owner.shape[0], device=owner.device)
                                       - first_px.index_select(0, owner)).int()  # (Q,) int32
    z = zrow.index_select(0, owner) + dzdx.index_select(0, owner) * ((col.float() + 0.5) - cx0.index_select(0, owner))
    return (base.index_select(0, owner) + col).long(), z, face.index_select(0, owner)


def _scanline(d: raster._Drawn, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`raster._scanline` (same pixels, order, depths) from two compiled kernels."""
    a = d.slope[1]
    far = (d.corner.abs() >= 2.0 ** 16).flatten(0, 1).any(0) | (a.abs() < 2.0 ** -20).any(0)  # as _row_intervals
    if bool(far.any()):
        return raster._scanline(d, h, w)
    height = d.box[3]
    pair = raster._segment_ids(height).long()  # (R,)
    lo, count, base, face, zrow, dzdx, cx0 = _kernel(_intervals)(
        d.corner, d.slope, d.depth, d.box, d.img, d.face, pair, height.cumsum(0) - height, h, w)
    owner = raster._segment_ids(count).long()  # (Q,)
    return _kernel(_expand)(lo, base, face, zrow, dzdx, cx0, owner, count.cumsum(0) - count)


def _visibility(pixel: torch.Tensor, depth: torch.Tensor, face: torch.Tensor, npix: int) -> torch.Tensor:
    """(npix,) int64 face id: the nearest depth, then the lowest face at exactly it (as rasterize)."""
    zbuf = torch.full((npix,), float("inf"), device=depth.device).scatter_reduce(0, pixel, depth, reduce="amin")
    cand = torch.where(depth == zbuf.index_select(0, pixel), face.long(), raster._NO_FACE)
    fid = torch.full((npix,), raster._NO_FACE, dtype=torch.int64, device=depth.device)
    return raster._face_of(fid.scatter_reduce(0, pixel, cand, reduce="amin"))


@torch.no_grad()
def rasterize(pix: torch.Tensor, faces: torch.Tensor, size: tuple[int, int], *, orthographic: bool = True,
              cull_backfaces: bool = True, face_mask: torch.Tensor | None = None) -> torch.Tensor:
    """:func:`avguide.render.raster.rasterize` with compiled kernels (identical face ids).

    Returns:
        (N, H, W) int64 face index, -1 on background.
    """
    if not available():
        return raster.rasterize(pix, faces, size, orthographic=orthographic, cull_backfaces=cull_backfaces,
                                face_mask=face_mask)
    raster._check(pix, faces)
    n, h, w = pix.shape[0], *size
    assert n * h * w < 2 ** 31, "the scanline's int32 pixel indices need N*H*W < 2**31"
    d = _setup(pix, faces, size, orthographic, cull_backfaces, face_mask)
    if d.img.numel() == 0:
        return torch.full((n, h, w), -1, dtype=torch.int64, device=pix.device)
    small = (d.box[2] <= 2) & (d.box[3] <= 2)
    parts = [raster._small_boxes(d.select(small.nonzero().squeeze(1)), h, w)]
    large = (~small).nonzero().squeeze(1)
    if large.numel() > 0:
        parts.append(_scanline(d.select(large), h, w))
    pixel, depth, face = (torch.cat(t) for t in zip(*parts))  # (Q,) each
    return _kernel(_visibility)(pixel, depth, face, n * h * w).view(n, h, w)


# ---- shading (planes.shade_planes) ----

def _shade_forward(coef, row, px, py, dirs, inten, ambient: float, perspective: bool):
    """Radiance (C, P) and what the backward needs: val (K', P), nh (3, P), norm, sq (P,), dots
    (L, P), light (P,) (the tensors ``planes._ShadePlanes`` saves; ``den`` = 1 / z plane)."""
    k = coef.shape[0] // 3
    g = coef.index_select(1, row)  # (3K, P)
    val = g[:k] + g[k:2 * k] * px + g[2 * k:] * py  # (K, P), as addcmul: c0 + cx px + cy py
    den = val[-1]
    if perspective:
        val = val[:-1] / den
    n, a = val[:3], val[3:]
    sq = n.square().sum(0)
    norm = sq.clamp_min(1e-24).sqrt()
    nh = n / norm
    dots = -(dirs[:, :, None] * nh[None]).sum(1)  # (L, P)
    light = ambient + (inten[:, None] * dots.clamp_min(0.0)).sum(0)  # (P,)
    return a * light, val, den, nh, norm, sq, dots, light


def _shade_backward(grad, val, den, nh, norm, sq, dots, light, px, py, dirs, inten, perspective: bool):
    """(3K, P) gradient of each pixel's plane coefficients (before the index_add into the faces)."""
    g_light = (grad * val[3:]).sum(0)  # (P,)
    g_dots = (dots >= 0) * (inten[:, None] * g_light)  # (L, P)
    g_nh = -(dirs[:, :, None] * g_dots[:, None]).sum(0)  # (3, P)
    radial = (g_nh * nh).sum(0) * (sq >= 1e-24)
    gv = torch.cat([(g_nh - nh * radial) / norm, grad * light])  # (3 + C, P) w.r.t. the values
    if perspective:  # val = num / den
        gv = torch.cat([gv / den, -(gv * val).sum(0, keepdim=True) / den])
    return torch.cat([gv, gv * px, gv * py])


class _ShadePlanes(torch.autograd.Function):
    """``planes._ShadePlanes`` with compiled forward and backward."""

    @staticmethod
    def forward(ctx, coef, row, px, py, perspective, dirs, inten, ambient):
        out, *saved = _kernel(_shade_forward)(coef, row, px, py, dirs, inten, ambient, perspective)
        ctx.save_for_backward(row, px, py, dirs, inten, *saved)
        ctx.coef_shape, ctx.perspective = coef.shape, perspective
        return out

    @staticmethod
    def backward(ctx, grad):
        if not ctx.needs_input_grad[0]:
            return (None,) * 8
        row, px, py, dirs, inten, val, den, nh, norm, sq, dots, light = ctx.saved_tensors
        g = _kernel(_shade_backward)(grad, val, den, nh, norm, sq, dots, light, px, py, dirs, inten, ctx.perspective)
        grad_coef = g.new_zeros(ctx.coef_shape).index_add_(1, row, g)
        return grad_coef, None, None, None, None, None, None, None


def shade_planes(coef: torch.Tensor, row: torch.Tensor, px: torch.Tensor, py: torch.Tensor,
                 lights: Lights = Lights(), *, perspective: bool = False) -> torch.Tensor:
    """:func:`avguide.render.planes.shade_planes` with compiled kernels (same arguments, (C, P) result)."""
    from avguide.render import planes

    if not available():
        return planes.shade_planes(coef, row, px, py, lights, perspective=perspective)
    d = torch.tensor(lights.directions, dtype=coef.dtype, device=coef.device)  # (L, 3)
    d = d / d.norm(dim=-1, keepdim=True)
    inten = torch.tensor(lights.intensities, dtype=coef.dtype, device=coef.device)  # (L,)
    flat = coef.reshape(3 * coef.shape[1], coef.shape[2])  # (3K, S)
    return _ShadePlanes.apply(flat, row, px, py, perspective, d, inten, lights.ambient)


# ---- antialias (antialias.antialias_planes) ----

def antialias_planes(planes: torch.Tensor, pix: torch.Tensor, faces: torch.Tensor, face_id: torch.Tensor,
                     neighbors: torch.Tensor, *, orthographic: bool = True) -> torch.Tensor:
    """:func:`avguide.render.antialias.antialias_planes` with the exit-edge search compiled (the
    same pixel pairs and blend weights). (C, N*H*W) result."""
    return eager_antialias_planes(planes, pix, faces, face_id, neighbors, orthographic=orthographic,
                                  kernel=_kernel if available() else lambda fn: fn)
