"""Compiled silhouette search for :func:`avguide.render.antialias.antialias_planes` on CPU (numba).

The antialiasing has a gradient-free part that decides, for every pair of neighbouring pixels,
whether it straddles a silhouette edge and which edge (``antialias._contour_faces``, the pair
masks and ``antialias._exit_edges``), and a small differentiable part on the pairs it keeps
(``antialias._blend`` and an ``index_add``). :func:`silhouette_pairs` is the first part in one
pass of machine code per image, :func:`blend` the second, with a hand-written backward. Both
repeat the torch path's arithmetic operation by operation in the input's dtype (no fused
multiply-add, no fast-math; the pixel centres come in as arrays of that dtype), hence take the
same decisions and give the same images bit for bit (``torch.equal`` in
``tests/render/test_jitalias.py``); the backward computes each term in float64 and adds it in
the input's dtype, so gradients agree to a rounding. The pairs:

- a face is front-facing in an image where twice its signed screen area
  ``(x1 - x0)(y2 - y0) - (y1 - y0)(x2 - x0)`` is < 0; a pixel is *near* a silhouette when its face
  has an edge whose neighbour is missing or not front-facing;
- pairs of horizontally, then vertically adjacent pixels (each in row-major order) with different
  faces, one of them near: the visible depth at both (barycentrics as
  :func:`avguide.render.raster.bary_planes`, ``z . w`` summed corner by corner, +inf on the
  background) picks the occluder (the first pixel on a tie), the exit edge is the one the segment
  to the other pixel crosses first (the lowest edge on a tie), kept if it is a silhouette edge
  whose direction is steep for a horizontal pair (flat for a vertical one).
"""

from __future__ import annotations

import numpy as np
import torch

from avguide.render.numbajit import available, njit  # noqa: F401  (available: the switch callers ask)


@njit
def _front(p, i, faces, f):
    """Face f is front-facing in image i (signed screen area < 0; False for f < 0)."""
    if f < 0:
        return False
    a, b, c = faces[f, 0], faces[f, 1], faces[f, 2]
    x0, y0, x1, y1, x2, y2 = p[i, a, 0], p[i, a, 1], p[i, b, 0], p[i, b, 1], p[i, c, 0], p[i, c, 1]
    return (x1 - x0) * (y2 - y0) - (y1 - y0) * (x2 - x0) < 0


@njit
def _depth(p, i, faces, f, px, py, one, ortho):
    """Depth of the pixel centre (px, py) in face f of image i (``raster.bary_planes`` in p's dtype)."""
    a, b, c = faces[f, 0], faces[f, 1], faces[f, 2]
    ax, ay, bx, by, cx, cy = p[i, a, 0], p[i, a, 1], p[i, b, 0], p[i, b, 1], p[i, c, 0], p[i, c, 1]
    area = (bx - ax) * (cy - ay) - (by - ay) * (cx - ax)
    w0 = ((cx - bx) * (py - by) - (cy - by) * (px - bx)) / area
    w1 = ((ax - cx) * (py - cy) - (ay - cy) * (px - cx)) / area
    w2 = one - w0 - w1
    za, zb, zc = p[i, a, 2], p[i, b, 2], p[i, c, 2]
    if not ortho:
        w0, w1, w2 = w0 / za, w1 / zb, w2 / zc
        tot = w0 + w1 + w2
        w0, w1, w2 = w0 / tot, w1 / tot, w2 / tot
    return za * w0 + zb * w1 + zc * w2


@njit
def _pairs(p, faces, face_id, neighbors, xs, ys, consts, ortho, out_i, out_f):
    """Fill out_i (K, 4) int64 (pa, pb, rows of N*V of the exit edge's ends) and out_f (K, 5)
    (ax, ay, bx, by, sign) with the kept pairs; returns K and the number of horizontal ones.
    xs (W,), ys (H,) pixel centres and consts (one, two) in p's dtype; face_id (N, H, W)."""
    n, h, w = face_id.shape
    nv = p.shape[1]
    one, two = consts[0], consts[1]
    near = np.zeros((n, h, w), np.bool_)  # the pixel's face has a silhouette edge in its image
    sil = np.zeros(faces.shape[0], np.int8)  # per image: 0 unknown, 1 no silhouette edge, 2 some
    for i in range(n):
        sil[:] = 0
        for y in range(h):
            for x in range(w):
                f = face_id[i, y, x]
                if f < 0:
                    continue
                if sil[f] == 0:
                    some = False
                    for k in range(3):
                        if not _front(p, i, faces, neighbors[f, k]):
                            some = True
                    sil[f] = 2 if some else 1
                near[i, y, x] = sil[f] == 2
    t = np.empty(3, p.dtype)
    kept = rows = 0
    for horizontal in (True, False):  # the torch path's order: every horizontal pair, then the vertical ones
        dy, dx = (0, 1) if horizontal else (1, 0)
        for i in range(n):
            for y in range(h - dy):
                for x in range(w - dx):
                    fa, fb = face_id[i, y, x], face_id[i, y + dy, x + dx]
                    if fa == fb or not (near[i, y, x] or near[i, y + dy, x + dx]):
                        continue
                    za = _depth(p, i, faces, fa, xs[x], ys[y], one, ortho) if fa >= 0 else np.inf
                    zb = _depth(p, i, faces, fb, xs[x + dx], ys[y + dy], one, ortho) if fb >= 0 else np.inf
                    if za <= zb:  # the occluder's pixel a, the other b
                        occ, ax, ay, bx, by = fa, xs[x], ys[y], xs[x + dx], ys[y + dy]
                        pa, pb = (i * h + y) * w + x, (i * h + y + dy) * w + x + dx
                    else:
                        occ, ax, ay, bx, by = fb, xs[x + dx], ys[y + dy], xs[x], ys[y]
                        pa, pb = (i * h + y + dy) * w + x + dx, (i * h + y) * w + x
                    sign = -one if _front(p, i, faces, occ) else one
                    best = 0
                    for k in range(3):  # edge k: corner k -> k + 1, its crossing t of the segment a -> b
                        c0, c1 = faces[occ, k], faces[occ, (k + 1) % 3]
                        x0, y0, x1, y1 = p[i, c0, 0], p[i, c0, 1], p[i, c1, 0], p[i, c1, 1]
                        ea = sign * ((x1 - x0) * (ay - y0) - (y1 - y0) * (ax - x0))
                        eb = sign * ((x1 - x0) * (by - y0) - (y1 - y0) * (bx - x0))
                        t[k] = ea / (ea - eb) if ea >= 0 and eb < 0 else two
                        if t[k] < t[best]:
                            best = k
                    if not t[best] < two:  # no edge exits (t = 2 exactly only without an exit)
                        continue
                    c0, c1 = faces[occ, best], faces[occ, (best + 1) % 3]
                    ddx, ddy = p[i, c1, 0] - p[i, c0, 0], p[i, c1, 1] - p[i, c0, 1]
                    if (abs(ddy) > abs(ddx)) != horizontal or _front(p, i, faces, neighbors[occ, best]):
                        continue
                    out_i[kept, 0], out_i[kept, 1] = pa, pb
                    out_i[kept, 2], out_i[kept, 3] = i * nv + c0, i * nv + c1
                    out_f[kept, 0], out_f[kept, 1], out_f[kept, 2], out_f[kept, 3] = ax, ay, bx, by
                    out_f[kept, 4] = sign
                    kept += 1
        if horizontal:
            rows = kept
    return kept, rows


def silhouette_pairs(pix: torch.Tensor, faces: torch.Tensor, face_id: torch.Tensor, neighbors: torch.Tensor, *,
                     orthographic: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """The pixel pairs :func:`avguide.render.antialias.antialias_planes` blends, and their exit edges.

    Args:
        pix: (N, V, 3) float CPU projected vertices (detached here).
        faces: (F, 3) int64. face_id: (N, H, W) int64 from :func:`avguide.render.raster.rasterize`.
        neighbors: (F, 3) int64 from :func:`avguide.render.antialias.face_neighbors`.
        orthographic: camera kind (the depth test choosing the occluder).
    Returns:
        idx (4, K) int64: the occluder's pixel, the other pixel (flat into N*H*W) and the rows of
        N*V of the exit edge's ends; centres (4, K) float (ax, ay, bx, by: the two pixel centres);
        sign (K,) float (+-1: the occluder's inside is where ``sign * edge >= 0``); and rows: the
        number of horizontal pairs, which come first, then the vertical ones, each in row-major
        order of (image, row, column).
    """
    n, h, w = face_id.shape
    p = pix.detach().contiguous()
    dt = p.numpy().dtype
    xs, ys = np.arange(w).astype(dt) + dt.type(0.5), np.arange(h).astype(dt) + dt.type(0.5)
    cap = 2 * n * h * w
    out_i, out_f = np.empty((cap, 4), np.int64), np.empty((cap, 5), dt)
    k = rows = 0
    if n * h * w:
        k, rows = _pairs(p.numpy(), faces.contiguous().numpy(), face_id.contiguous().numpy(),
                         neighbors.contiguous().numpy(), xs, ys, np.array([1.0, 2.0], dt), bool(orthographic),
                         out_i, out_f)
    idx, f = torch.from_numpy(out_i[:k].T.copy()), torch.from_numpy(out_f[:k].T.copy())
    return idx, f[:4], f[4], rows


@njit
def _edge_crossing(pix, idx, cen, sign, k):
    """ea, eb: the exit edge's function at both pixel centres of pair k (``antialias._inside``), and
    the edge's ends x0, y0, x1, y1, in pix's dtype."""
    e0, e1 = idx[2, k], idx[3, k]
    x0, y0, x1, y1 = pix[e0, 0], pix[e0, 1], pix[e1, 0], pix[e1, 1]
    s = sign[k]
    ea = s * ((x1 - x0) * (cen[1, k] - y0) - (y1 - y0) * (cen[0, k] - x0))
    eb = s * ((x1 - x0) * (cen[3, k] - y0) - (y1 - y0) * (cen[2, k] - x0))
    return ea, eb, x0, y0, x1, y1


@njit
def _blend_fwd(pix, planes, idx, cen, sign, half, out):
    """out (C, N*H*W) (a copy of planes) += the blend of every pair, in order (``index_add``)."""
    for k in range(sign.shape[0]):
        ea, eb, _, _, _, _ = _edge_crossing(pix, idx, cen, sign, k)
        t = ea / (ea - eb)  # the crossing, 0 at a, 1 at b
        wgt = abs(t - half)
        pa, pb = idx[0, k], idx[1, k]
        if t > half:  # the occluder covers t - 1/2 of b
            for c in range(planes.shape[0]):
                out[c, pb] += wgt * (planes[c, pa] - planes[c, pb])
        else:  # or misses 1/2 - t of a
            for c in range(planes.shape[0]):
                out[c, pa] += wgt * (planes[c, pb] - planes[c, pa])


@njit
def _blend_bwd(pix, planes, idx, cen, sign, half, grad, g_pix, g_planes):
    """g_planes (a copy of grad) and g_pix (N*V, 3) (zeros) += the blends' gradients."""
    for k in range(sign.shape[0]):
        ea, eb, x0, y0, x1, y1 = _edge_crossing(pix, idx, cen, sign, k)
        t = ea / (ea - eb)
        wgt = np.float64(abs(t - half))
        pa, pb = idx[0, k], idx[1, k]
        src, dst = (pa, pb) if t > half else (pb, pa)  # delta = wgt * (c[src] - c[dst]) added at dst
        g_wgt = 0.0
        for c in range(planes.shape[0]):
            g = np.float64(grad[c, dst])
            g_wgt += g * (np.float64(planes[c, src]) - np.float64(planes[c, dst]))
            g_planes[c, src] += wgt * g
            g_planes[c, dst] -= wgt * g
        d = t - half
        g_t = g_wgt if d > 0 else (-g_wgt if d < 0 else 0.0)  # |d|' = sgn(d)
        ea, eb = np.float64(ea), np.float64(eb)
        den = ea - eb
        g_ea, g_eb = -g_t * eb / (den * den), g_t * ea / (den * den)
        s = np.float64(sign[k])
        ax, ay, bx, by = np.float64(cen[0, k]), np.float64(cen[1, k]), np.float64(cen[2, k]), np.float64(cen[3, k])
        x0, y0, x1, y1 = np.float64(x0), np.float64(y0), np.float64(x1), np.float64(y1)
        e0, e1 = idx[2, k], idx[3, k]
        g_pix[e0, 0] += s * (g_ea * (y1 - ay) + g_eb * (y1 - by))
        g_pix[e0, 1] += s * (g_ea * (ax - x1) + g_eb * (bx - x1))
        g_pix[e1, 0] += s * (g_ea * (ay - y0) + g_eb * (by - y0))
        g_pix[e1, 1] += s * (g_ea * (x0 - ax) + g_eb * (x0 - bx))


class _Blend(torch.autograd.Function):
    """See :func:`blend`."""

    @staticmethod
    def forward(ctx, planes, pix, idx, centres, sign):
        n, v, _ = pix.shape
        p = pix.detach().reshape(n * v, 3).contiguous()
        pl = planes.detach().contiguous()
        out = pl.clone()
        dt = p.numpy().dtype
        args = (p.numpy(), pl.numpy(), idx.contiguous().numpy(), centres.contiguous().numpy(),
                sign.contiguous().numpy(), dt.type(0.5))
        _blend_fwd(*args, out.numpy())
        ctx.args, ctx.pix_shape = args, pix.shape
        return out

    @staticmethod
    def backward(ctx, grad):
        g_planes = grad.detach().contiguous().clone()
        g_pix = torch.zeros(ctx.pix_shape, dtype=grad.dtype)
        _blend_bwd(*ctx.args, grad.detach().contiguous().numpy(), g_pix.view(-1, 3).numpy(), g_planes.numpy())
        return g_planes, g_pix, None, None, None


def blend(planes: torch.Tensor, pix: torch.Tensor, idx: torch.Tensor, centres: torch.Tensor, sign: torch.Tensor
          ) -> torch.Tensor:
    """The antialiasing blend of the pairs of :func:`silhouette_pairs` (differentiable, once).

    Args:
        planes: (C, N*H*W) float CPU colours (channels first), with gradient.
        pix: (N, V, 3) float projected vertices (same dtype), with gradient.
        idx, centres, sign: from :func:`silhouette_pairs`.
    Returns:
        (C, N*H*W) float: ``planes`` plus, at each pair's target pixel, its share of the other
        pixel's colour (``antialias._blend`` + ``index_add``, the same values bit for bit).
    """
    return _Blend.apply(planes, pix, idx, centres, sign)
