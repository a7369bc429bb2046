"""Compiled z-buffer: the face ids of :func:`avguide.render.raster.rasterize`, in one pass of
machine code per image (numba).

:func:`zbuffer` takes the arguments of ``rasterize`` and returns the *same* face ids, bit for bit:
it repeats the torch rasteriser's float32 arithmetic operation by operation (no fused
multiply-add, no fast-math; every operand float32, so numba never widens to float64):

1. **Culling** (``raster._cull``, ``raster._face_planes``): twice the signed screen area
   ``(x1 - x0) (y2 - y0) - (y1 - y0) (x2 - x0)`` must be finite and non-zero (and < 0 when back
   faces are culled), the pixel box ``ceil(min x - 1/2) .. floor(max x - 1/2)`` clipped to the
   image must be non-empty, the depths finite (and > 0 for a perspective camera).
2. **Coverage**: pixel centre (px, py) is covered when for the three edges k (corner k -> k + 1,
   ``s = sign(area)``) ``(s dx_k) (py - y_k) >= (s dy_k) (px - x_k)`` (``raster._row_col_terms``).
   For one row each edge keeps a prefix or a suffix of the columns (the float32 products are
   monotone in px), so a row's covered columns are consecutive and its scan stops after them.
3. **Depth**: ``(gy (py - y0) + d0) + gx (px - x0)`` with the plane of ``raster._face_planes``
   (``d = z``, or ``-1/z`` for a perspective camera).
4. **Visibility** (the two ``scatter_reduce(amin)`` of ``rasterize``): the smallest depth wins,
   the lower face index among fragments at exactly that depth (-0.0 == +0.0); a fragment at depth
   +inf is still drawn; a NaN depth at a pixel leaves it empty (the torch ``amin`` propagates NaN
   and no fragment equals it).

The first call in a fresh numba cache compiles (a few seconds); later processes load the machine
code from the cache (``NUMBA_CACHE_DIR``, or ``__pycache__`` beside this file). The kernel runs
without the GIL, so :func:`avguide.render.parallel.map_batch`'s threads rasterise at the same
time. Without numba :func:`available` is False and ``rasterize`` keeps its torch path.
"""

from __future__ import annotations

import numpy as np
import torch

from avguide.render.numbajit import available, njit

_NONE = np.iinfo(np.int64).max  # no fragment yet at a pixel


@njit
def _draw(p, faces, fidx, h, w, orthographic, cull_backfaces, out):
    """Face ids of N images.

    p (N, V, 3) float32 pixel x, y, depth; faces (F', 3) int64 the faces to consider, fidx (F',)
    int64 their indices in the caller's mesh; out (N, H*W) int64 written (-1: no face)."""
    half = np.float32(0.5)
    zero = np.float32(0.0)
    one = np.float32(1.0)
    wmax, hmax = np.float32(w - 1), np.float32(h - 1)
    zbuf = np.empty(h * w, np.float32)
    best = np.empty(h * w, np.int64)
    cols = np.empty((4, w), np.float32)  # per column of a face's box: 3 edge terms, depth term
    for i in range(p.shape[0]):
        zbuf[:] = np.inf
        best[:] = _NONE
        for j in range(faces.shape[0]):
            a, b, c = faces[j, 0], faces[j, 1], faces[j, 2]
            x0, x1, x2 = p[i, a, 0], p[i, b, 0], p[i, c, 0]
            y0, y1, y2 = p[i, a, 1], p[i, b, 1], p[i, c, 1]
            area = (x1 - x0) * (y2 - y0) - (y1 - y0) * (x2 - x0)
            if not (np.isfinite(area) and area != zero):  # also every non-finite corner x, y
                continue
            if cull_backfaces and not area < zero:
                continue
            bx0 = max(np.ceil(min(min(x0, x1), x2) - half), zero)
            bx1 = min(np.floor(max(max(x0, x1), x2) - half), wmax)
            by0 = max(np.ceil(min(min(y0, y1), y2) - half), zero)
            by1 = min(np.floor(max(max(y0, y1), y2) - half), hmax)
            if not (bx1 >= bx0 and by1 >= by0):
                continue
            z0, z1, z2 = p[i, a, 2], p[i, b, 2], p[i, c, 2]
            if not (np.isfinite(z0) and np.isfinite(z1) and np.isfinite(z2)):
                continue
            if not orthographic:
                if not (z0 > zero and z1 > zero and z2 > zero):
                    continue
                z0, z1, z2 = -one / z0, -one / z1, -one / z2  # linear in screen space
            s = -one if area < zero else one
            sx0, sx1, sx2 = (x1 - x0) * s, (x2 - x1) * s, (x0 - x2) * s  # slope[0]: row terms
            sy0, sy1, sy2 = (y1 - y0) * s, (y2 - y1) * s, (y0 - y2) * s  # slope[1]: column terms
            d1x, d1y, d2x, d2y = x1 - x0, y1 - y0, x2 - x0, y2 - y0
            dz1, dz2 = z1 - z0, z2 - z0
            gx = (dz1 * d2y - dz2 * d1y) / area
            gy = (dz2 * d1x - dz1 * d2x) / area
            c0, c1, r0, r1 = int(bx0), int(bx1), int(by0), int(by1)
            for col in range(c0, c1 + 1):
                px = np.float32(col) + half
                cols[0, col] = sy0 * (px - x0)
                cols[1, col] = sy1 * (px - x1)
                cols[2, col] = sy2 * (px - x2)
                cols[3, col] = gx * (px - x0)
            f = fidx[j]
            for row in range(r0, r1 + 1):
                py = np.float32(row) + half
                t0, t1, t2 = sx0 * (py - y0), sx1 * (py - y1), sx2 * (py - y2)
                zr = gy * (py - y0) + z0
                base = row * w
                hit = False
                for col in range(c0, c1 + 1):
                    if t0 >= cols[0, col] and t1 >= cols[1, col] and t2 >= cols[2, col]:
                        hit = True
                        z = zr + cols[3, col]
                        k = base + col
                        zb = zbuf[k]
                        if zb != zb:  # a NaN depth already here: stays empty
                            continue
                        if z != z:
                            zbuf[k] = z
                            best[k] = _NONE
                        elif z < zb or (z == zb and f < best[k]):
                            zbuf[k] = z
                            best[k] = f
                    elif hit:  # past the row's covered columns (consecutive)
                        break
        for k in range(h * w):
            out[i, k] = -1 if best[k] == _NONE else best[k]


def zbuffer(pix: torch.Tensor, faces: torch.Tensor, size: tuple[int, int], *, orthographic: bool = True,
            cull_backfaces: bool = True, face_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Nearest visible face at every pixel centre, compiled: exactly :func:`avguide.render.raster.rasterize`.

    Args:
        pix: (N, V, 3) float CPU tensor, projected vertices (pixel x, pixel y, camera depth z);
            detached and tested in float32.
        faces: (F, 3) int64 vertex indices (counter-clockwise seen from the camera = front).
        size: (H, W) image size.
        orthographic: depth linear in screen space (True) or as -1/z (perspective: faces with a
            vertex at z <= 0 are dropped).
        cull_backfaces: skip back-facing faces.
        face_mask: optional (F,) bool, only these faces are drawn.
    Returns:
        (N, H, W) int64 index into ``faces`` of the visible face, -1 where none covers the pixel centre.
    Raises:
        IndexError: a face indexes a vertex outside [0, V) (the kernel does not check bounds).
    """
    assert available(), "zbuffer needs numba (check available())"
    n, v = pix.shape[0], pix.shape[1]
    h, w = size
    p = pix.detach().float().contiguous()  # (N, V, 3) float32
    fidx = torch.arange(faces.shape[0]) if face_mask is None else face_mask.cpu().nonzero(as_tuple=True)[0]
    fs = faces.cpu().long().index_select(0, fidx).contiguous()  # (F', 3)
    if fs.numel() and (int(fs.min()) < 0 or int(fs.max()) >= v):
        raise IndexError(f"faces index vertices outside [0, {v})")
    out = torch.empty((n, h * w), dtype=torch.int64)
    if n * h * w:
        _draw(p.numpy(), fs.numpy(), fidx.long().contiguous().numpy(), h, w, bool(orthographic),
              bool(cull_backfaces), out.numpy())
    return out.view(n, h, w)
