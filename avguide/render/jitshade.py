"""Compiled shading for :func:`avguide.render.mesh.render_mesh` on CPU (numba), forward and backward.

Two differentiable primitives, each a ``torch.autograd.Function`` whose forward and hand-written
backward are single passes of machine code, with the torch path of ``render_mesh`` (shown-face
normals, attribute planes, :func:`avguide.render.planes.shade_planes`) as their reference:

- :func:`camera_normals`: the area-weighted unit normals, rotated into camera space, of the
  vertices of the faces some image shows (:func:`avguide.render.shading.vertex_normals` on those
  vertices: every face around them, summed corner by corner in face order).
- :func:`shade_pixels`: every covered pixel centre's barycentric coordinates in its face (as
  :func:`avguide.render.raster.barycentrics`, perspective-correct for perspective cameras), the
  interpolated normal and albedo, Lambert shading (:func:`avguide.render.shading.shade`), written
  straight into the channels-first image with its coverage channel and background.

Each pixel costs a few dozen operations and no memory traffic beyond its three corners, where the
torch path builds planes per shown (image, face) pair (about 1.5 pixels each in a lip crop), then
gathers them per pixel, and autograd's backward fills a zero tensor per gather. The arithmetic is
float64 whatever the input dtype, rounded once into the output: float32 results are within a
rounding of the torch float32 path's (which rounds at every operation), float64 results agree to
~1e-12 (``tests/render/test_jitshade.py``). Each gradient term is computed in float64 and added
into the input's dtype (as the torch path's ``index_add``).

The kernels run without the GIL (the threads of :func:`avguide.render.parallel.map_batch` shade at
the same time) and are cached on disk like :mod:`avguide.render.jitzbuf`'s. Without numba
:func:`available` is False and ``render_mesh`` keeps its torch path.
"""

from __future__ import annotations

import numpy as np
import torch

from avguide.render.shading import Lights

from avguide.render.numbajit import available, njit  # noqa: F401  (available: the switch callers ask)


# ---- normals ------------------------------------------------------------------------------------

@njit
def _normal_plan(faces, face_id, nv):
    """slot (V,) int64 row of each needed vertex (corner of a shown face; -1 for others), U, and
    the Fa faces touching a needed vertex, in face order: their corners (Fa, 3) int64 and the
    corners' slots (Fa, 3) int64."""
    nf = faces.shape[0]
    shown = np.zeros(nf, np.bool_)
    for f in face_id:
        if f >= 0:
            shown[f] = True
    need = np.zeros(nv, np.bool_)
    for f in range(nf):
        if shown[f]:
            for k in range(3):
                need[faces[f, k]] = True
    slot = np.full(nv, -1, np.int64)
    u = 0
    for v in range(nv):
        if need[v]:
            slot[v] = u
            u += 1
    keep = np.zeros(nf, np.bool_)
    for f in range(nf):
        keep[f] = need[faces[f, 0]] or need[faces[f, 1]] or need[faces[f, 2]]
    around = faces[np.nonzero(keep)[0]]  # (Fa, 3)
    around_slot = np.empty_like(around)
    for j in range(around.shape[0]):
        for k in range(3):
            around_slot[j, k] = slot[around[j, k]]
    return slot, u, around, around_slot


@njit
def _face_normal(v, i, tri, j):
    """Twice-area normal (e x g, e = b - a, g = c - a) of triangle j (corners tri[j]) in image i,
    float64, and e, g."""
    a, b, c = tri[j, 0], tri[j, 1], tri[j, 2]
    ex = np.float64(v[i, b, 0]) - np.float64(v[i, a, 0])
    ey = np.float64(v[i, b, 1]) - np.float64(v[i, a, 1])
    ez = np.float64(v[i, b, 2]) - np.float64(v[i, a, 2])
    gx = np.float64(v[i, c, 0]) - np.float64(v[i, a, 0])
    gy = np.float64(v[i, c, 1]) - np.float64(v[i, a, 1])
    gz = np.float64(v[i, c, 2]) - np.float64(v[i, a, 2])
    return ey * gz - ez * gy, ez * gx - ex * gz, ex * gy - ey * gx, ex, ey, ez, gx, gy, gz


@njit
def _normals_fwd(v, tri, tri_slot, u, rot, raw, out):
    """raw (N, U, 3) float64 summed face normals of the Fa triangles tri (Fa, 3) (tri_slot: their
    corners' rows, -1 for vertices not needed); out (N, U, 3) camera-space unit normals."""
    fn = np.empty((tri.shape[0], 3))
    for i in range(v.shape[0]):
        for j in range(tri.shape[0]):
            fn[j, 0], fn[j, 1], fn[j, 2], _, _, _, _, _, _ = _face_normal(v, i, tri, j)
        raw[i] = 0.0
        for k in range(3):  # corner by corner, faces in order (the torch path's index_add order)
            for j in range(tri.shape[0]):
                s = tri_slot[j, k]
                if s >= 0:
                    raw[i, s, 0] += fn[j, 0]
                    raw[i, s, 1] += fn[j, 1]
                    raw[i, s, 2] += fn[j, 2]
        for s in range(u):
            x, y, z = raw[i, s, 0], raw[i, s, 1], raw[i, s, 2]
            norm = np.sqrt(max(x * x + y * y + z * z, 1e-24))
            x, y, z = x / norm, y / norm, z / norm
            for r in range(3):
                out[i, s, r] = rot[i, r, 0] * x + rot[i, r, 1] * y + rot[i, r, 2] * z


@njit
def _normals_bwd(v, tri, tri_slot, u, rot, raw, grad, g_v):
    """g_v (N, V, 3) += the gradient of the vertices from grad (N, U, 3) of the output (each
    term computed in float64, added in the dtype of g_v)."""
    g_raw = np.empty((u, 3))
    for i in range(v.shape[0]):
        for s in range(u):
            gx = rot[i, 0, 0] * grad[i, s, 0] + rot[i, 1, 0] * grad[i, s, 1] + rot[i, 2, 0] * grad[i, s, 2]
            gy = rot[i, 0, 1] * grad[i, s, 0] + rot[i, 1, 1] * grad[i, s, 1] + rot[i, 2, 1] * grad[i, s, 2]
            gz = rot[i, 0, 2] * grad[i, s, 0] + rot[i, 1, 2] * grad[i, s, 1] + rot[i, 2, 2] * grad[i, s, 2]
            x, y, z = raw[i, s, 0], raw[i, s, 1], raw[i, s, 2]
            sq = x * x + y * y + z * z
            if sq >= 1e-24:  # no radial term where the norm is clamped
                norm = np.sqrt(sq)
                x, y, z = x / norm, y / norm, z / norm
                radial = x * gx + y * gy + z * gz
                gx, gy, gz = gx - x * radial, gy - y * radial, gz - z * radial
            else:
                norm = 1e-12
            g_raw[s, 0], g_raw[s, 1], g_raw[s, 2] = gx / norm, gy / norm, gz / norm
        for j in range(tri.shape[0]):
            hx = hy = hz = 0.0
            for k in range(3):
                s = tri_slot[j, k]
                if s >= 0:
                    hx += g_raw[s, 0]
                    hy += g_raw[s, 1]
                    hz += g_raw[s, 2]
            _, _, _, ex, ey, ez, gx, gy, gz = _face_normal(v, i, tri, j)
            # n = e x g: dn.h = de.(g x h) + dg.(h x e)
            dex, dey, dez = gy * hz - gz * hy, gz * hx - gx * hz, gx * hy - gy * hx
            dgx, dgy, dgz = hy * ez - hz * ey, hz * ex - hx * ez, hx * ey - hy * ex
            a, b, c = tri[j, 0], tri[j, 1], tri[j, 2]
            g_v[i, a, 0] -= dex + dgx
            g_v[i, a, 1] -= dey + dgy
            g_v[i, a, 2] -= dez + dgz
            g_v[i, b, 0] += dex
            g_v[i, b, 1] += dey
            g_v[i, b, 2] += dez
            g_v[i, c, 0] += dgx
            g_v[i, c, 1] += dgy
            g_v[i, c, 2] += dgz


class _CameraNormals(torch.autograd.Function):
    """verts -> camera-space unit normals of the needed vertices (see :func:`camera_normals`)."""

    @staticmethod
    def forward(ctx, verts, faces, face_id, rotation):
        n, nv, _ = verts.shape
        v = verts.detach().contiguous()
        fs = faces.contiguous()
        slot, u, tri, tri_slot = _normal_plan(fs.numpy(), face_id.reshape(-1).contiguous().numpy(), nv)
        rot = rotation.detach().double().expand(n, 3, 3).contiguous().numpy()
        raw = np.empty((n, u, 3))
        out = torch.empty((n, u, 3), dtype=verts.dtype)
        _normals_fwd(v.numpy(), tri, tri_slot, u, rot, raw, out.numpy())
        ctx.state = v, tri, tri_slot, u, rot, raw
        slot_t = torch.from_numpy(slot)
        ctx.mark_non_differentiable(slot_t)
        return out, slot_t

    @staticmethod
    def backward(ctx, grad, _):
        v, tri, tri_slot, u, rot, raw = ctx.state
        g_v = torch.zeros(v.shape, dtype=v.dtype)
        _normals_bwd(v.numpy(), tri, tri_slot, u, rot, raw, grad.detach().contiguous().numpy(), g_v.numpy())
        return g_v, None, None, None


def camera_normals(verts: torch.Tensor, faces: torch.Tensor, face_id: torch.Tensor,
                   rotation: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Camera-space area-weighted unit normals of the vertices of the shown faces (differentiable).

    Args:
        verts: (N, V, 3) float32/64 CPU world positions.
        faces: (F, 3) int64 CPU, counter-clockwise seen from outside.
        face_id: (N, H, W) int64 from :func:`avguide.render.raster.rasterize` (which faces show).
        rotation: (N, 3, 3) or (1, 3, 3) world -> camera rotations (no gradient).
    Returns:
        normals (N, U, 3) float (dtype of ``verts``) of the U vertices that are corners of a face
        shown in some image, ascending, and slot (V,) int64: each vertex's row in ``normals`` (-1
        for the others). Gradient flows to ``verts`` (not twice differentiable).
    """
    return _CameraNormals.apply(verts, faces, face_id, rotation)


# ---- pixels -------------------------------------------------------------------------------------

@njit
def _pixel_bary(pix, i, a, b, c, px, py, ortho):
    """Barycentrics (float64) of (px, py) in face (a, b, c) of image i: the weights w0, w1, w2 and,
    for the backward, the screen ones before the perspective correction and their sum."""
    ax, ay = np.float64(pix[i, a, 0]), np.float64(pix[i, a, 1])
    bx, by = np.float64(pix[i, b, 0]), np.float64(pix[i, b, 1])
    cx, cy = np.float64(pix[i, c, 0]), np.float64(pix[i, c, 1])
    area = (bx - ax) * (cy - ay) - (by - ay) * (cx - ax)
    s0 = ((cx - bx) * (py - by) - (cy - by) * (px - bx)) / area
    s1 = ((ax - cx) * (py - cy) - (ay - cy) * (px - cx)) / area
    s2 = 1.0 - s0 - s1
    if ortho:
        return s0, s1, s2, s0, s1, s2, 1.0, area
    q0, q1, q2 = s0 / pix[i, a, 2], s1 / pix[i, b, 2], s2 / pix[i, c, 2]
    tot = q0 + q1 + q2
    return q0 / tot, q1 / tot, q2 / tot, s0, s1, s2, tot, area


@njit
def _pixel_normal(nrm, i, sa, sb, sc, w0, w1, w2):
    """Interpolated camera-space normal (float64)."""
    x = w0 * nrm[i, sa, 0] + w1 * nrm[i, sb, 0] + w2 * nrm[i, sc, 0]
    y = w0 * nrm[i, sa, 1] + w1 * nrm[i, sb, 1] + w2 * nrm[i, sc, 1]
    z = w0 * nrm[i, sa, 2] + w1 * nrm[i, sb, 2] + w2 * nrm[i, sc, 2]
    return x, y, z


@njit
def _shade_fwd(pix, nrm, slot, alb, faces, face_id, w, dirs, inten, ambient, ortho, out):
    """out (C + 1, N*H*W) (background and coverage 0 filled in) <- colour and coverage 1 of every
    covered pixel. face_id (N, H*W); alb (1 or N, V, C) float64; dirs (L, 3) unit, float64."""
    hw = face_id.shape[1]
    ch = alb.shape[2]
    for i in range(face_id.shape[0]):
        ai = i if alb.shape[0] > 1 else 0
        for k in range(hw):
            f = face_id[i, k]
            if f < 0:
                continue
            a, b, c = faces[f, 0], faces[f, 1], faces[f, 2]
            px, py = (k % w) + 0.5, (k // w) + 0.5
            w0, w1, w2, _, _, _, _, _ = _pixel_bary(pix, i, a, b, c, px, py, ortho)
            x, y, z = _pixel_normal(nrm, i, slot[a], slot[b], slot[c], w0, w1, w2)
            norm = np.sqrt(max(x * x + y * y + z * z, 1e-24))
            x, y, z = x / norm, y / norm, z / norm
            light = ambient
            for m in range(dirs.shape[0]):
                light += inten[m] * max(-(dirs[m, 0] * x + dirs[m, 1] * y + dirs[m, 2] * z), 0.0)
            p = i * hw + k
            for q in range(ch):
                out[q, p] = (w0 * alb[ai, a, q] + w1 * alb[ai, b, q] + w2 * alb[ai, c, q]) * light
            out[ch, p] = 1.0


@njit
def _shade_bwd(pix, nrm, slot, alb, faces, face_id, w, dirs, inten, ambient, ortho, grad, g_pix, g_nrm):
    """g_pix (N, V, 3) and g_nrm (N, U, 3) += the gradients from grad (C + 1, N*H*W) (each term
    computed in float64, added in the dtype of g_pix, g_nrm)."""
    hw = face_id.shape[1]
    ch = alb.shape[2]
    for i in range(face_id.shape[0]):
        ai = i if alb.shape[0] > 1 else 0
        for k in range(hw):
            f = face_id[i, k]
            if f < 0:
                continue
            a, b, c = faces[f, 0], faces[f, 1], faces[f, 2]
            sa, sb, sc = slot[a], slot[b], slot[c]
            px, py = (k % w) + 0.5, (k // w) + 0.5
            w0, w1, w2, s0, s1, s2, tot, area = _pixel_bary(pix, i, a, b, c, px, py, ortho)
            x, y, z = _pixel_normal(nrm, i, sa, sb, sc, w0, w1, w2)
            sq = x * x + y * y + z * z
            norm = np.sqrt(max(sq, 1e-24))
            hx, hy, hz = x / norm, y / norm, z / norm
            light = ambient
            for m in range(dirs.shape[0]):
                light += inten[m] * max(-(dirs[m, 0] * hx + dirs[m, 1] * hy + dirs[m, 2] * hz), 0.0)
            p = i * hw + k
            # colour = albedo * light
            g_light = 0.0
            g0 = g1 = g2 = 0.0  # d/dw of the albedo's interpolation
            for q in range(ch):
                g = np.float64(grad[q, p])
                va, vb, vc = alb[ai, a, q], alb[ai, b, q], alb[ai, c, q]
                g_light += g * (w0 * va + w1 * vb + w2 * vc)
                g0 += g * light * va
                g1 += g * light * vb
                g2 += g * light * vc
            # light = ambient + sum_m I_m max(0, -d_m . nh); clamp_min passes the gradient at 0
            gx = gy = gz = 0.0
            for m in range(dirs.shape[0]):
                if -(dirs[m, 0] * hx + dirs[m, 1] * hy + dirs[m, 2] * hz) >= 0.0:
                    gm = inten[m] * g_light
                    gx -= gm * dirs[m, 0]
                    gy -= gm * dirs[m, 1]
                    gz -= gm * dirs[m, 2]
            if sq >= 1e-24:  # nh = n / |n|; no radial term where the norm is clamped
                radial = hx * gx + hy * gy + hz * gz
                gx, gy, gz = gx - hx * radial, gy - hy * radial, gz - hz * radial
            gx, gy, gz = gx / norm, gy / norm, gz / norm
            g0 += gx * nrm[i, sa, 0] + gy * nrm[i, sa, 1] + gz * nrm[i, sa, 2]
            g1 += gx * nrm[i, sb, 0] + gy * nrm[i, sb, 1] + gz * nrm[i, sb, 2]
            g2 += gx * nrm[i, sc, 0] + gy * nrm[i, sc, 1] + gz * nrm[i, sc, 2]
            g_nrm[i, sa, 0] += w0 * gx
            g_nrm[i, sa, 1] += w0 * gy
            g_nrm[i, sa, 2] += w0 * gz
            g_nrm[i, sb, 0] += w1 * gx
            g_nrm[i, sb, 1] += w1 * gy
            g_nrm[i, sb, 2] += w1 * gz
            g_nrm[i, sc, 0] += w2 * gx
            g_nrm[i, sc, 1] += w2 * gy
            g_nrm[i, sc, 2] += w2 * gz
            if not ortho:  # w_k = q_k / tot, q_k = s_k / z_k
                dot = g0 * w0 + g1 * w1 + g2 * w2
                za, zb, zc = np.float64(pix[i, a, 2]), np.float64(pix[i, b, 2]), np.float64(pix[i, c, 2])
                h0, h1, h2 = (g0 - dot) / tot, (g1 - dot) / tot, (g2 - dot) / tot  # d/dq_k
                g_pix[i, a, 2] -= h0 * s0 / (za * za)
                g_pix[i, b, 2] -= h1 * s1 / (zb * zb)
                g_pix[i, c, 2] -= h2 * s2 / (zc * zc)
                g0, g1, g2 = h0 / za, h1 / zb, h2 / zc
            # s0 = E(b, c, p) / A, s1 = E(c, a, p) / A, s2 = 1 - s0 - s1, A = E(a, b, c),
            # E(u, v, p) = (vx - ux)(py - uy) - (vy - uy)(px - ux)
            ax, ay = np.float64(pix[i, a, 0]), np.float64(pix[i, a, 1])
            bx, by = np.float64(pix[i, b, 0]), np.float64(pix[i, b, 1])
            cx, cy = np.float64(pix[i, c, 0]), np.float64(pix[i, c, 1])
            e0, e1 = (g0 - g2) / area, (g1 - g2) / area  # d/dE0, d/dE1
            ea = -(e0 * s0 + e1 * s1)  # d/dA
            g_pix[i, a, 0] += ea * (by - cy) + e1 * (py - cy)
            g_pix[i, a, 1] += ea * (cx - bx) + e1 * (cx - px)
            g_pix[i, b, 0] += ea * (cy - ay) + e0 * (cy - py)
            g_pix[i, b, 1] += ea * (ax - cx) + e0 * (px - cx)
            g_pix[i, c, 0] += ea * (ay - by) + e0 * (py - by) + e1 * (ay - py)
            g_pix[i, c, 1] += ea * (bx - ax) + e0 * (bx - px) + e1 * (px - ax)


def _light_arrays(lights: Lights) -> tuple[np.ndarray, np.ndarray]:
    """(L, 3) unit directions and (L,) intensities, float64."""
    d = np.asarray(lights.directions, dtype=np.float64).reshape(-1, 3)
    return d / np.linalg.norm(d, axis=1, keepdims=True), np.asarray(lights.intensities, dtype=np.float64)


class _ShadePixels(torch.autograd.Function):
    """(pix, normals) -> the channels-first image (see :func:`shade_pixels`)."""

    @staticmethod
    def forward(ctx, pix, normals, slot, albedo, faces, face_id, lights, background, orthographic):
        n, h, w = face_id.shape
        p, nrm = pix.detach().contiguous(), normals.detach().contiguous()
        alb = albedo.detach().double().reshape(-1, *albedo.shape[-2:]).contiguous().numpy()  # (1 or N, V, C)
        fid = face_id.reshape(n, h * w).contiguous()
        dirs, inten = _light_arrays(lights)
        ch = alb.shape[2]
        fill = torch.cat([torch.as_tensor(background, dtype=pix.dtype).reshape(-1).expand(ch), pix.new_zeros(1)])
        out = fill[:, None].expand(ch + 1, n * h * w).contiguous()  # (C + 1, N*H*W)
        args = (p.numpy(), nrm.numpy(), slot.numpy(), alb, faces.contiguous().numpy(), fid.numpy(), w, dirs, inten,
                float(lights.ambient), bool(orthographic))
        _shade_fwd(*args, out.numpy())
        ctx.args = args
        ctx.dtypes = pix.dtype, normals.dtype
        return out

    @staticmethod
    def backward(ctx, grad):
        p, nrm = ctx.args[0], ctx.args[1]
        g_pix, g_nrm = torch.zeros(p.shape, dtype=ctx.dtypes[0]), torch.zeros(nrm.shape, dtype=ctx.dtypes[1])
        _shade_bwd(*ctx.args, grad.detach().contiguous().numpy(), g_pix.numpy(), g_nrm.numpy())
        return g_pix, g_nrm, None, None, None, None, None, None, None


def shade_pixels(pix: torch.Tensor, normals: torch.Tensor, slot: torch.Tensor, albedo: torch.Tensor,
                 faces: torch.Tensor, face_id: torch.Tensor, lights: Lights = Lights(), *,
                 background: float | tuple[float, ...] = 0.0, orthographic: bool = True) -> torch.Tensor:
    """Shaded colour and coverage of every pixel (differentiable w.r.t. ``pix`` and ``normals``).

    Args:
        pix: (N, V, 3) float CPU projected vertices (pixel x, y, depth), with gradient.
        normals: (N, U, 3) float camera-space normals and slot (V,) int64 their rows, from
            :func:`camera_normals` (every corner of a face in ``face_id`` has a row).
        albedo: (V, C) or (N, V, C) float per-vertex albedo (no gradient).
        faces: (F, 3) int64. face_id: (N, H, W) int64 from :func:`avguide.render.raster.rasterize`.
        lights: camera-space lights.
        background: value of the uncovered pixels, scalar or one per channel.
        orthographic: False: perspective-correct barycentrics (1/z weighted).
    Returns:
        (C + 1, N*H*W) float (dtype of ``pix``): ``albedo * (ambient + sum_k I_k max(0, n . -d_k))``
        with the barycentric interpolation of the normal (renormalised) and the albedo, then the
        coverage (1 on covered pixels, 0 elsewhere). Not twice differentiable.
    """
    return _ShadePixels.apply(pix, normals, slot, albedo, faces, face_id, lights, background, orthographic)
