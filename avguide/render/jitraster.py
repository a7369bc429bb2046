"""Compiled video frames: the images of :func:`avguide.render.fastframes.render_frames` in one pass
of machine code per frame (numba), for the video writer.

:func:`render_frames_jit` takes the arguments of ``render_frames`` and returns the same sRGB bytes
up to rounding; the work per frame, in :func:`_render_chunk` (``numba.njit(cache=True,
nogil=True)``: compiled once, kept in numba's on-disk cache, run without the GIL so that worker
threads draw frames at the same time):

1. **Normals and culling.** Area-weighted vertex normals rotated into camera space; the back faces
   :func:`avguide.render.fastraster.drawn_faces` would drop (outside every boundary loop's box of
   a cullable component) are skipped.
2. **Z-buffer.** Every drawn face tests the pixel centres of its box: covered when on the inner
   side of (or on) its three edges (the rows' columns narrowed to where the edges can be, a pixel
   wider each side; the test decides). Each edge function is computed from the edge's end with the
   lower vertex index in float64, so the two faces of an edge get values of opposite sign exactly:
   no pixel centre falls between them, one exactly on the edge is covered by both. The nearest
   face wins (float64 depth plane), the lower face index on an exact tie. It keeps each face's
   corner, edges and inverse cross product for the shading.
3. **Shading.** Lambert shading of the interpolated, re-normalised camera-space normal times the
   interpolated albedo (:func:`avguide.render.shading.shade`), per pixel from its face's corners.
4. **Antialiasing.** The silhouette box filter of :mod:`avguide.render.antialias`: every pair of
   neighbouring pixels showing different faces, one with a silhouette edge, blends by where the
   nearer face's exit edge crosses the segment between the centres (the pairs, exit edges and
   weights of ``_exit_edges`` and ``_blend``), reading the unblended colours.
5. **Bytes.** ``round(255 * clamp(c, 0, 1) ** (1 / gamma))`` from a table of the exact rounding
   thresholds (no power per pixel).

Face ids equal the torch renderers' except on pixel centres within float32 rounding of an edge or
of another face's depth; bytes differ by rounding elsewhere (``tests/render/test_jitraster.py``).
The first call in a fresh numba cache compiles (a few seconds, ``bench/video.py`` prints it);
later processes load the machine code from the cache (``NUMBA_CACHE_DIR``, or ``__pycache__``
beside this file, or a user cache folder when that is read-only). Without numba
:func:`available` is False and the video writer uses the torch ``render_frames``.

This module imports neither torch nor the rest of ``avguide`` at its top: ``avguide animate``
runs it alone in a frame process (:func:`serve`, :class:`avguide.render.frameprocess.FrameProcess`)
started before torch is imported.
"""

from __future__ import annotations

import math
import os
import pickle
import queue
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch and the torch renderers are imported where used: the frame process runs without them
    import torch

    from avguide.render.camera import Camera
    from avguide.render.fastraster import CullPlan
    from avguide.render.shading import Lights

from avguide.render.numbajit import available, njit


_LUT_BITS = 14
"""The gamma table has 2**14 bins over [0, 1]; the exact thresholds correct each bin's byte."""

_TILE = 32
"""Faces are drawn tile by tile (of their centroid, 32 x 32 pixels): the z-buffer rows a tile's
faces touch stay in a core's cache."""


@njit(error_model="numpy")
def _normals(verts, faces, rot, out):
    """Camera-space unit vertex normals (area-weighted, as ``vertex_normals`` then ``@ rot.T``).

    verts (V, 3) float32 world; faces (F, 3) int64; rot (3, 3) float64; out (V, 3) float64."""
    nv = verts.shape[0]
    acc = np.zeros((nv, 3))
    for f in range(faces.shape[0]):
        a, b, c = faces[f, 0], faces[f, 1], faces[f, 2]
        ux, uy, uz = verts[b, 0] - verts[a, 0], verts[b, 1] - verts[a, 1], verts[b, 2] - verts[a, 2]
        vx, vy, vz = verts[c, 0] - verts[a, 0], verts[c, 1] - verts[a, 1], verts[c, 2] - verts[a, 2]
        nx, ny, nz = uy * vz - uz * vy, uz * vx - ux * vz, ux * vy - uy * vx  # float32, as torch's cross
        for k in range(3):
            i = faces[f, k]
            acc[i, 0] += nx
            acc[i, 1] += ny
            acc[i, 2] += nz
    for i in range(nv):
        inv = 1.0 / max(math.sqrt(acc[i, 0] ** 2 + acc[i, 1] ** 2 + acc[i, 2] ** 2), 1e-12)
        for r in range(3):
            out[i, r] = (rot[r, 0] * acc[i, 0] + rot[r, 1] * acc[i, 1] + rot[r, 2] * acc[i, 2]) * inv


@njit(error_model="numpy")
def _cull(pix, faces, cullable, rim, rim_loop, n_loops, area, draw):
    """Twice the signed screen area of every face (< 0: front) and the faces to draw (as
    ``drawn_faces``). pix (V, 3) float32; area (F,) float64 and draw (F,) bool are written."""
    box = np.empty((max(n_loops, 1), 4))  # x0, y0, x1, y1 of each boundary loop
    box[:, :2] = np.inf
    box[:, 2:] = -np.inf
    for j in range(rim.shape[0]):
        v, lp = rim[j], rim_loop[j]
        box[lp, 0] = min(box[lp, 0], pix[v, 0])
        box[lp, 1] = min(box[lp, 1], pix[v, 1])
        box[lp, 2] = max(box[lp, 2], pix[v, 0])
        box[lp, 3] = max(box[lp, 3], pix[v, 1])
    for f in range(faces.shape[0]):
        a, b, c = faces[f, 0], faces[f, 1], faces[f, 2]
        x0, y0, x1, y1, x2, y2 = pix[a, 0], pix[a, 1], pix[b, 0], pix[b, 1], pix[c, 0], pix[c, 1]
        ar = (np.float64(x1) - x0) * (np.float64(y2) - y0) - (np.float64(y1) - y0) * (np.float64(x2) - x0)
        area[f] = ar
        keep = ar < 0 or not cullable[f]
        if not keep:
            fx0, fx1 = min(x0, x1, x2), max(x0, x1, x2)
            fy0, fy1 = min(y0, y1, y2), max(y0, y1, y2)
            for lp in range(n_loops):
                if fx1 >= box[lp, 0] and fx0 <= box[lp, 2] and fy1 >= box[lp, 1] and fy0 <= box[lp, 3]:
                    keep = True
                    break
        draw[f] = keep


@njit(error_model="numpy")
def _tile_order(pix, faces, area, draw, hh, ww, order):
    """The drawn faces with a non-zero finite area, by tile of their centroid (a counting sort):
    writes them to order (F,) int64 and returns their number."""
    tx, ty = (ww + _TILE - 1) // _TILE, (hh + _TILE - 1) // _TILE
    tile = np.empty(faces.shape[0], np.int64)
    count = np.zeros(tx * ty + 1, np.int64)
    for f in range(faces.shape[0]):
        ar = area[f]
        tile[f] = -1
        if draw[f] and ar != 0 and math.isfinite(ar):
            a, b, c = faces[f, 0], faces[f, 1], faces[f, 2]
            cx = (np.float64(pix[a, 0]) + pix[b, 0] + pix[c, 0]) / 3
            cy = (np.float64(pix[a, 1]) + pix[b, 1] + pix[c, 1]) / 3
            if math.isfinite(cx) and math.isfinite(cy):
                t = min(max(int(cy / _TILE) if cy > 0 else 0, 0), ty - 1) * tx + \
                    min(max(int(cx / _TILE) if cx > 0 else 0, 0), tx - 1)
                tile[f] = t
                count[t + 1] += 1
    for t in range(tx * ty):
        count[t + 1] += count[t]
    for f in range(faces.shape[0]):
        t = tile[f]
        if t >= 0:
            order[count[t]] = f
            count[t] += 1
    return count[tx * ty]


@njit(error_model="numpy")
def _zbuffer(pix, faces, area, order, m, hh, ww, fid, zbuf, geo):
    """Nearest face at every pixel centre of the (hh, ww) window among the m faces of order (the
    lower face index on an exact tie): fid (hh*ww,) int32 (-1: none) and its depth zbuf (hh*ww,)
    float64 (inf: none), both written; geo (F, 7) float64: for every face that may cover a pixel,
    its first corner x0, y0, the edges to the others d1x, d1y, d2x, d2y and 1 / their cross
    product (what :func:`_shade` interpolates with)."""
    fid[:] = -1
    zbuf[:] = np.inf
    ex = np.empty(3)
    ey = np.empty(3)
    edx = np.empty(3)
    edy = np.empty(3)
    for j in range(m):
        f = order[j]
        i0, i1, i2 = faces[f, 0], faces[f, 1], faces[f, 2]
        x = (np.float64(pix[i0, 0]), np.float64(pix[i1, 0]), np.float64(pix[i2, 0]))
        y = (np.float64(pix[i0, 1]), np.float64(pix[i1, 1]), np.float64(pix[i2, 1]))
        z0, z1, z2 = np.float64(pix[i0, 2]), np.float64(pix[i1, 2]), np.float64(pix[i2, 2])
        if not (math.isfinite(z0) and math.isfinite(z1) and math.isfinite(z2)):
            continue
        c0 = max(math.ceil(max(min(x[0], x[1], x[2]) - 0.5, -1.0)), 0)
        c1 = min(math.floor(min(max(x[0], x[1], x[2]) - 0.5, ww)), ww - 1)
        r0 = max(math.ceil(max(min(y[0], y[1], y[2]) - 0.5, -1.0)), 0)
        r1 = min(math.floor(min(max(y[0], y[1], y[2]) - 0.5, hh)), hh - 1)
        if c1 < c0 or r1 < r0:
            continue
        s = -1.0 if area[f] < 0 else 1.0
        for k in range(3):  # edge k: corner k -> k + 1, anchored at its lower vertex index
            p, q = k, (k + 1) % 3
            sk = s
            if faces[f, q] < faces[f, p]:
                p, q = q, p
                sk = -s
            ex[k], ey[k] = x[p], y[p]
            edx[k], edy[k] = sk * (x[q] - x[p]), sk * (y[q] - y[p])
        # depth plane z0 + gx (px - x0) + gy (py - y0)
        d1x, d1y, d2x, d2y = x[1] - x[0], y[1] - y[0], x[2] - x[0], y[2] - y[0]
        inv = 1.0 / (d1x * d2y - d2x * d1y)
        geo[f, 0], geo[f, 1], geo[f, 2], geo[f, 3], geo[f, 4], geo[f, 5], geo[f, 6] = x[0], y[0], d1x, d1y, d2x, d2y, inv
        gx = ((z1 - z0) * d2y - (z2 - z0) * d1y) * inv
        gy = ((z2 - z0) * d1x - (z1 - z0) * d2x) * inv
        # the loops read locals: values in arrays are read again after every store to zbuf
        ex0, ex1, ex2, ey0, ey1, ey2 = ex[0], ex[1], ex[2], ey[0], ey[1], ey[2]
        dx0, dx1, dx2, dy0, dy1, dy2 = edx[0], edx[1], edx[2], edy[0], edy[1], edy[2]
        xa, ya = x[0], y[0]
        for r in range(r0, r1 + 1):
            py = r + 0.5
            t0, t1, t2 = dx0 * (py - ey0), dx1 * (py - ey1), dx2 * (py - ey2)
            # the row's columns where the edges can be >= 0, a pixel wider on each side than where
            # they are (the exact test below decides; this only skips the box's far corners)
            lo, hi = c0 - 1.0, c1 + 1.0
            for e, t, dy in ((ex0, t0, dy0), (ex1, t1, dy1), (ex2, t2, dy2)):
                if dy > 0:
                    hi = min(hi, e + t / dy + 0.5)
                elif dy < 0:
                    lo = max(lo, e + t / dy - 1.5)
            if not lo <= hi:
                continue
            zr = z0 + gy * (py - ya)
            row = r * ww
            for c in range(max(c0, math.ceil(lo)), min(c1, math.floor(hi)) + 1):
                # edge functions t - dy (px - x): >= 0 inside (the same values, negated, in the
                # face across the edge); without branches (whether a pixel centre is inside is
                # as good as random: a branch on it costs more than the test)
                px = c + 0.5
                z = zr + gx * (px - xa)
                q = row + c
                zq, fq = zbuf[q], fid[q]
                take = ((t0 - dy0 * (px - ex0) >= 0) & (t1 - dy1 * (px - ex1) >= 0)
                        & (t2 - dy2 * (px - ex2) >= 0) & ((z < zq) | ((z == zq) & (f < fq))))
                zbuf[q] = z if take else zq
                fid[q] = f if take else fq


@njit(error_model="numpy")
def _shade(geo, faces, normals, albedo, fid, to_light, intensity, ambient, bg_lin, hh, ww, lin):
    """Linear colour of every window pixel into lin (hh*ww, 3) float32: Lambert shading of the
    interpolated, re-normalised normal times the interpolated albedo; the background's colour
    where fid < 0. geo: the faces' corner and edges (:func:`_zbuffer`)."""
    for r in range(hh):
        py = r + 0.5
        for c in range(ww):
            q = r * ww + c
            f = fid[q]
            if f < 0:
                lin[q, 0], lin[q, 1], lin[q, 2] = bg_lin[0], bg_lin[1], bg_lin[2]
                continue
            a, b, cc = faces[f, 0], faces[f, 1], faces[f, 2]
            x0, y0, d1x, d1y, d2x, d2y, inv = geo[f, 0], geo[f, 1], geo[f, 2], geo[f, 3], geo[f, 4], geo[f, 5], geo[f, 6]
            ex, ey = (c + 0.5) - x0, py - y0
            w1 = (ex * d2y - ey * d2x) * inv  # barycentric weights of corners b and cc
            w2 = (ey * d1x - ex * d1y) * inv
            w0 = 1.0 - w1 - w2
            nx = w0 * normals[a, 0] + w1 * normals[b, 0] + w2 * normals[cc, 0]
            ny = w0 * normals[a, 1] + w1 * normals[b, 1] + w2 * normals[cc, 1]
            nz = w0 * normals[a, 2] + w1 * normals[b, 2] + w2 * normals[cc, 2]
            light = 0.0
            for k in range(to_light.shape[0]):
                light += intensity[k] * max(to_light[k, 0] * nx + to_light[k, 1] * ny + to_light[k, 2] * nz, 0.0)
            light = ambient + light / math.sqrt(max(nx * nx + ny * ny + nz * nz, 1e-24))
            for ch in range(3):
                lin[q, ch] = (w0 * albedo[a, ch] + w1 * albedo[b, ch] + w2 * albedo[cc, ch]) * light


@njit(error_model="numpy")
def _silhouette_kind(pix, faces, neighbors, area, kind):
    """kind (F,) uint8: bit 1, face f has a steep silhouette edge (|dy| > |dx|; its neighbour
    across it missing or back-facing); bit 2, a shallow one."""
    for f in range(faces.shape[0]):
        k8 = 0
        for k in range(3):
            nb = neighbors[f, k]
            if nb < 0 or not area[nb] < 0:
                p, q = faces[f, k], faces[f, (k + 1) % 3]
                steep = abs(pix[q, 1] - pix[p, 1]) > abs(pix[q, 0] - pix[p, 0])
                k8 |= 1 if steep else 2
        kind[f] = k8


@njit(error_model="numpy")
def _antialias(pix, faces, neighbors, area, kind, fid, zbuf, lin, hh, ww, acc):
    """Blend deltas of the silhouette pairs, read from the unblended colours lin (hh*ww, 3), added
    to acc (hh*ww, 3) (as ``antialias_planes``)."""
    for horizontal in (True, False):
        bit = 1 if horizontal else 2
        rows = hh if horizontal else hh - 1
        cols = ww - 1 if horizontal else ww
        step = 1 if horizontal else ww
        for r in range(rows):
            for c in range(cols):
                p1 = r * ww + c
                p2 = p1 + step
                fa, fb = fid[p1], fid[p2]
                if fa == fb or not ((fa >= 0 and kind[fa] & bit) or (fb >= 0 and kind[fb] & bit)):
                    continue
                if zbuf[p1] <= zbuf[p2]:  # the occluder's pixel pa, the other pb
                    pa, pb = p1, p2
                else:
                    pa, pb = p2, p1
                occ = fid[pa]
                ax, ay = pa % ww + 0.5, pa // ww + 0.5
                bx, by = pb % ww + 0.5, pb // ww + 0.5
                sign = -1.0 if area[occ] < 0 else 1.0
                best, kbest, ea_b, eb_b = 2.0, -1, 0.0, 0.0
                for k in range(3):  # the edge the segment a -> b leaves the occluder through
                    i, j = faces[occ, k], faces[occ, (k + 1) % 3]
                    x0, y0 = np.float64(pix[i, 0]), np.float64(pix[i, 1])
                    dx, dy = pix[j, 0] - x0, pix[j, 1] - y0
                    ea = sign * (dx * (ay - y0) - dy * (ax - x0))
                    eb = sign * (dx * (by - y0) - dy * (bx - x0))
                    if ea >= 0 and eb < 0:
                        t = ea / (ea - eb)
                        if t < best:
                            best, kbest, ea_b, eb_b = t, k, ea, eb
                if kbest < 0:
                    continue
                nb = neighbors[occ, kbest]
                if nb >= 0 and area[nb] < 0:  # the neighbour across it faces the camera: no silhouette
                    continue
                i, j = faces[occ, kbest], faces[occ, (kbest + 1) % 3]
                if (abs(pix[j, 1] - pix[i, 1]) > abs(pix[j, 0] - pix[i, 0])) != horizontal:
                    continue
                t = ea_b / (ea_b - eb_b)
                wgt = abs(t - 0.5)
                if t > 0.5:  # the occluder covers t - 1/2 of b
                    for ch in range(3):
                        acc[pb, ch] += wgt * (lin[pa, ch] - lin[pb, ch])
                else:  # it misses 1/2 - t of a
                    for ch in range(3):
                        acc[pa, ch] += wgt * (lin[pb, ch] - lin[pa, ch])


@njit(error_model="numpy")
def _byte_table(gamma, thr, lut):
    """thr (257,): the linear value from which the byte is b (thr[0] = -inf, thr[256] = inf);
    lut (2**_LUT_BITS + 1,) uint8: the byte at the lower end of each bin of [0, 1]."""
    thr[0] = -np.inf
    for b in range(1, 256):
        thr[b] = ((b - 0.5) / 255.0) ** gamma
    thr[256] = np.inf
    n = lut.shape[0] - 1
    b = 0
    for i in range(n + 1):
        v = i / n
        while v >= thr[b + 1]:
            b += 1
        lut[i] = b


@njit(error_model="numpy")
def _to_bytes(lin, acc, thr, lut, hh, ww, top, left, out):
    """out[top + r, left + c] (uint8 (H, W, 3)) = round(255 * clamp(lin + acc, 0, 1) ** (1 /
    gamma)) of the window's pixels, by the thresholds of :func:`_byte_table` (no power)."""
    n = lut.shape[0] - 1
    for r in range(hh):
        for c in range(ww):
            q = r * ww + c
            for ch in range(3):
                v = lin[q, ch] + acc[q, ch]
                if not v > 0.0:  # NaN too
                    b = 0
                elif v >= 1.0:
                    b = 255
                else:
                    b = np.int64(lut[int(v * n)])
                    while v >= thr[b + 1]:
                        b += 1
                out[top + r, left + c, ch] = b


@njit(error_model="numpy")
def _face_ids(pix, faces, draw, hh, ww, out):
    """Face ids of N images (:func:`rasterize_jit`) into out (N, hh*ww) int32."""
    nf = faces.shape[0]
    area = np.empty(nf)
    order = np.empty(nf, np.int64)
    zbuf = np.empty(hh * ww)
    geo = np.empty((nf, 7))
    for i in range(pix.shape[0]):
        p = pix[i]
        for f in range(nf):
            a, b, c = faces[f, 0], faces[f, 1], faces[f, 2]
            area[f] = ((np.float64(p[b, 0]) - p[a, 0]) * (np.float64(p[c, 1]) - p[a, 1])
                       - (np.float64(p[b, 1]) - p[a, 1]) * (np.float64(p[c, 0]) - p[a, 0]))
        m = _tile_order(p, faces, area, draw[i], hh, ww, order)
        _zbuffer(p, faces, area, order, m, hh, ww, out[i], zbuf, geo)


@njit(error_model="numpy")
def _render_chunk(verts, pix, faces, neighbors, cullable, rim, rim_loop, n_loops, rot, albedo, to_light, intensity,
                  ambient, bg_lin, gamma, top, left, hh, ww, antialias, out):
    """Draw N frames' windows into out (N, H, W, 3) uint8 (the rest is left as it is).

    verts (N, V, 3) float32 world; pix (N, V, 3) float32 window coordinates; see
    :func:`render_frames_jit` for the others."""
    n, nv = verts.shape[0], verts.shape[1]
    nf = faces.shape[0]
    thr = np.empty(257)
    lut = np.empty((1 << _LUT_BITS) + 1, np.uint8)
    _byte_table(gamma, thr, lut)
    normals = np.empty((nv, 3))
    area = np.empty(nf)
    draw = np.empty(nf, np.bool_)
    order = np.empty(nf, np.int64)
    geo = np.empty((nf, 7))
    kind = np.zeros(nf, np.uint8)
    fid = np.empty(hh * ww, np.int32)
    zbuf = np.empty(hh * ww)
    lin = np.empty((hh * ww, 3), np.float32)
    acc = np.zeros((hh * ww, 3), np.float32)
    for i in range(n):
        p = pix[i]
        _normals(verts[i], faces, rot, normals)
        _cull(p, faces, cullable, rim, rim_loop, n_loops, area, draw)
        m = _tile_order(p, faces, area, draw, hh, ww, order)
        _zbuffer(p, faces, area, order, m, hh, ww, fid, zbuf, geo)
        _shade(geo, faces, normals, albedo, fid, to_light, intensity, ambient, bg_lin, hh, ww, lin)
        if antialias:
            acc[:] = 0.0
            _silhouette_kind(p, faces, neighbors, area, kind)
            _antialias(p, faces, neighbors, area, kind, fid, zbuf, lin, hh, ww, acc)
        _to_bytes(lin, acc, thr, lut, hh, ww, top, left, out[i])


def warm_up() -> None:
    """Load (or compile) the renderer's machine code now: one call of :func:`render_frames_jit` on
    a triangle, so that a video's first frames do not wait for it (``avguide animate`` runs it in
    a thread while the animator works, or in its :class:`FrameProcess`). Nothing without numba."""
    if not available():
        return
    scene = {"faces": np.array([[0, 1, 2]], np.int64), "neighbors": np.full((1, 3), -1, np.int64),
             "cullable": np.zeros(1, np.bool_), "rim": np.zeros(0, np.int64), "rim_loop": np.zeros(0, np.int64),
             "n_loops": 0, "rot": np.eye(3), "albedo": np.full((3, 3), 0.5), "to_light": np.array([[0.0, 0.0, -1.0]]),
             "intensity": np.ones(1), "ambient": 0.25, "bg_lin": np.full(3, 0.1), "gamma": 2.2, "antialias": True,
             "bg": np.full(3, 89, np.uint8)}
    verts = np.array([[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]], np.float32)  # (1, 3, 3)
    pix = np.array([[[1.0, 1.0, 3.0], [6.0, 1.0, 3.0], [1.0, 6.0, 3.0]]], np.float32)  # window coordinates
    _draw(scene, verts, pix, (0, 0, 8, 8), (8, 8))


def rasterize_jit(pix: torch.Tensor, faces: torch.Tensor, size: tuple[int, int], *,
                  draw: torch.Tensor | None = None) -> torch.Tensor:
    """Nearest face at every pixel centre, the z-buffer of :func:`render_frames_jit` (for tests).

    A pixel centre on the inner side of (or on) a face's three edges is covered; the nearest
    covering face wins, the lower face index on an exact tie. Equal to
    :func:`avguide.render.fastraster.rasterize_video` except on pixel centres within float32
    rounding of an edge or of another face's depth.

    Args:
        pix: (N, V, 3) float projected vertices (pixel x, pixel y, depth) of an orthographic camera.
        faces: (F, 3) int64.
        size: (H, W).
        draw: optional (N, F) bool, the faces to draw in each image; default all.
    Returns:
        (N, H, W) int64 face index, -1 where no face covers the pixel centre.
    Raises:
        RuntimeError: numba is missing.
    """
    import torch

    if not available():
        raise RuntimeError("rasterize_jit needs numba (pip install numba)")
    n, (h, w) = pix.shape[0], size
    if draw is None:
        draw = torch.ones(n, faces.shape[0], dtype=torch.bool)
    out = np.empty((n, h * w), np.int32)
    _face_ids(np.ascontiguousarray(pix.detach().float().cpu().numpy()), np.ascontiguousarray(faces.cpu().numpy(),
              np.int64), np.ascontiguousarray(draw.cpu().numpy()), h, w, out)
    return torch.from_numpy(out.astype(np.int64)).view(n, h, w)


def _draw(scene: dict, verts: np.ndarray, pix: np.ndarray, window: tuple[int, int, int, int],
          size: tuple[int, int]) -> np.ndarray:
    """(N, H, W, 3) uint8 frames: the background, the window drawn by :func:`_render_chunk`."""
    n, (h, w), (top, left, hh, ww) = verts.shape[0], size, window
    out = np.empty((n, h, w, 3), np.uint8)
    bg = scene["bg"]
    if (bg == bg[0]).all():
        out.fill(bg[0])
    else:
        out[:] = bg
    if hh == 0 or ww == 0 or n == 0:
        return out
    _render_chunk(verts, pix, scene["faces"], scene["neighbors"], scene["cullable"], scene["rim"], scene["rim_loop"],
                  scene["n_loops"], scene["rot"], scene["albedo"], scene["to_light"], scene["intensity"],
                  scene["ambient"], scene["bg_lin"], scene["gamma"], top, left, hh, ww, scene["antialias"], out)
    return out


def render_frames_jit(verts: torch.Tensor, faces: torch.Tensor, cam: Camera, albedo: torch.Tensor, *,
                      plan: CullPlan, neighbors: torch.Tensor | None = None, lights: Lights | None = None,
                      background: float | tuple[float, float, float] = 0.0, gamma: float = 2.2) -> torch.Tensor:
    """:func:`avguide.render.fastframes.render_frames`, compiled (same arguments, same images up to
    rounding; the torch function itself when numba is missing).

    Args:
        as :func:`avguide.render.fastframes.render_frames` (verts (N, V, 3), faces (F, 3), albedo
        (V, 3), plan, neighbors, lights (default ``Lights()``), background, gamma), with one
        orthographic camera.
    Returns:
        (N, H, W, 3) uint8 sRGB frames (CPU).
    """
    import torch

    from avguide.render.shading import Lights

    lights = Lights() if lights is None else lights
    if not available():
        from avguide.render.fastframes import render_frames

        return render_frames(verts, faces, cam, albedo, plan=plan, neighbors=neighbors, lights=lights,
                             background=background, gamma=gamma)
    assert cam.orthographic and len(cam) == 1, "render_frames_jit draws one orthographic camera"
    from avguide.render.frameprocess import frame_arrays, scene_arrays

    scene = scene_arrays(faces, albedo, plan=plan, neighbors=neighbors, lights=lights, background=background,
                         gamma=gamma)
    scene["rot"] = cam.rotation[0].double().cpu().numpy()
    return torch.from_numpy(_draw(scene, *frame_arrays(verts, cam), cam.size))


def _caption(captions: list[str], width: int) -> tuple[str, tuple, np.ndarray]:
    from avguide.render.caption import caption_rows

    return "caption", (tuple(captions), width), caption_rows(captions, width)


def _frames(scene: dict, *args) -> tuple[str, None, np.ndarray]:
    return "frames", None, _draw(scene, *args)


def serve(workers: int) -> None:
    """The frame process's loop (:class:`avguide.render.frameprocess.FrameProcess`): load the
    kernel, say whether it runs, then draw the caption bands and chunks of frames read from stdin
    on ``workers`` threads, writing each answer to stdout in the order asked (a pickled header,
    then the raw bytes). Ends the process when stdin closes."""
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    try:
        ok = available()
        if ok:
            warm_up()
        pickle.dump(("ready", ok), out, protocol=4)
        out.flush()
        if not ok:
            return
        answers: queue.Queue = queue.Queue()

        def answer() -> None:  # the writer: answers in the order asked
            while (done := answers.get()) is not None:
                try:
                    kind, key, image = done.result()
                except Exception as e:  # noqa: BLE001  reported to the caller, who raises it
                    pickle.dump(("error", f"{type(e).__name__}: {e}"), out, protocol=4)
                    out.flush()
                    return
                pickle.dump((kind, image.shape, key), out, protocol=4)
                out.write(memoryview(np.ascontiguousarray(image)).cast("B"))
                out.flush()

        writer = threading.Thread(target=answer, daemon=True)
        writer.start()
        scene = None
        with ThreadPoolExecutor(workers) as pool:
            while True:
                try:
                    msg = pickle.load(inp)
                except EOFError:
                    break
                if msg[0] == "scene":
                    scene = msg[1]
                elif msg[0] == "caption":
                    answers.put(pool.submit(_caption, *msg[1:]))
                else:
                    answers.put(pool.submit(_frames, scene, *msg[1:]))
        answers.put(None)
        writer.join()
        out.flush()
    except (KeyboardInterrupt, BrokenPipeError):  # the caller was interrupted or stopped: it says why
        pass
    os._exit(0)  # now: the interpreter's and numba's teardown cost a few tenths of a second of CPU
