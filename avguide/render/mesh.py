"""One call from meshes to shaded images: project -> rasterize -> interpolate -> shade -> antialias.

Everything after the (gradient-free) rasteriser runs on the compact list of covered pixels and of
the faces they show: attribute planes per shown face, a few operations per pixel, and vertex
normals only for the vertices of shown faces.
"""

from __future__ import annotations

import torch

from avguide.render.antialias import antialias, antialias_planes
from avguide.render.camera import Camera, project
from avguide.render.planes import plane_coefficients, shade_planes, shown_faces
from avguide.render import raster
from avguide.render.raster import barycentrics, covered_pixels, interpolate, rasterize, rasterize_reference
from avguide.render.shading import Lights, shade, vertex_normals


def _shown_vertex_normals(verts: torch.Tensor, faces: torch.Tensor, shown: torch.Tensor
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Area-weighted unit normals of the vertices of the faces ``shown`` (differentiable), channels-first.

    Equal to :func:`avguide.render.shading.vertex_normals` on those vertices, computed from the
    faces around them only, on (N, F) planes per coordinate (the fast layout on CPU).

    Args:
        verts: (N, V, 3) float positions.
        faces: (F, 3) int64.
        shown: (S,) int64 faces whose corners need normals (repeats allowed).
    Returns:
        normals (3, N, U) float of the U needed vertices and slot (V,) int64: the column of each
        vertex in ``normals`` (U for vertices that are not needed).
    """
    n, nv, _ = verts.shape
    need = torch.zeros(nv, dtype=torch.bool, device=verts.device)
    need[faces[shown].reshape(-1)] = True
    idx = need.nonzero().squeeze(1)  # (U,)
    u = idx.numel()
    slot = torch.full((nv,), u, dtype=torch.int64, device=verts.device)
    slot[idx] = torch.arange(u, device=verts.device)
    around = faces[need[faces].any(1)]  # (Fa, 3) faces touching a needed vertex, in face order
    planes = verts.permute(2, 0, 1).reshape(3 * n, nv)  # (3N, V) x, y, z planes
    a, b, c = (planes.index_select(1, around[:, k]).view(3, n, -1) for k in range(3))  # (3, N, Fa) each
    (ex, ey, ez), (fx, fy, fz) = (b - a).unbind(0), (c - a).unbind(0)  # (N, Fa) each
    fn = torch.stack([ey * fz - ez * fy, ez * fx - ex * fz, ex * fy - ey * fx])  # (3, N, Fa) length = 2 * area
    fn = fn.view(3 * n, -1)  # (3N, Fa)
    vn = verts.new_zeros(3 * n, u + 1)  # column U collects contributions to other vertices
    for k in range(3):
        vn = vn.index_add(1, slot[around[:, k]], fn)
    vn = vn[:, :u].view(3, n, u)  # (3, N, U)
    return vn / vn.square().sum(0, keepdim=True).clamp_min(1e-24).sqrt(), slot  # = norm.clamp_min(1e-12)


def _use_jit(jit: bool | None, compile: bool, verts: torch.Tensor, albedo: torch.Tensor, cam: Camera) -> bool:
    """Whether :func:`render_mesh` shades with :mod:`avguide.render.jitshade`."""
    if not (raster.USE_JIT if jit is None else jit) or compile or verts.device.type != "cpu":
        return False
    if albedo.requires_grad or cam.rotation.requires_grad:
        return False
    from avguide.render import jitshade

    return jitshade.available()


def _shade_torch(verts: torch.Tensor, pix: torch.Tensor, faces: torch.Tensor, face_id: torch.Tensor, cam: Camera,
                 albedo: torch.Tensor, lights: Lights, background, shade_fn) -> tuple[torch.Tensor, int]:
    """The torch path of :func:`render_mesh`'s shading: (C + 1, N*H*W) colours and coverage, and C."""
    n, nv, _ = verts.shape
    h, w = cam.size
    pixel, face = covered_pixels(face_id)  # (P,) each
    s_img, s_face, prow = shown_faces(pixel, face, faces.shape[0], h * w)  # (S,), (S,), (P,)
    fv = faces.index_select(0, s_face).T  # (3, S) corner vertex of each shown face
    rows = (fv + s_img * nv).reshape(-1)  # (3S,) rows of N*V
    x, y, z = pix.reshape(n * nv, 3).index_select(0, rows).view(3, -1, 3).unbind(-1)  # (3, S) each

    normals, slot = _shown_vertex_normals(verts, faces, s_face)  # (3, N, U)
    u = normals.shape[2]
    rot = cam.rotation.expand(n, 3, 3)[..., None]  # (N, 3, 3, 1)
    nx, ny, nz = normals.unbind(0)  # (N, U) each (one backward node, not three)
    normals = torch.stack([rot[:, i, 0] * nx + rot[:, i, 1] * ny + rot[:, i, 2] * nz for i in range(3)])  # (3, N, U) camera space
    nrows = (slot.index_select(0, fv.reshape(-1)).view(3, -1) + s_img * u).reshape(-1)  # (3S,) columns of N*U
    ch = albedo.shape[-1]
    arows = fv.reshape(-1) if albedo.dim() == 2 else rows  # (3S,) rows of V or N*V
    corner_vals = torch.cat([normals.view(3, n * u).index_select(1, nrows),
                             albedo.reshape(-1, ch).index_select(0, arows).T])  # (3 + C, 3S)
    q = corner_vals.view(3 + ch, 3, -1)  # (3 + C, 3 corners, S)
    if not cam.orthographic:  # perspective-correct: planes of q / z and 1 / z
        q = torch.cat([q, q.new_ones(1, *q.shape[1:])]) / z
    coef = plane_coefficients(x, y, q)  # (3, K, S)
    p32 = pixel.int()  # (P,) int32 division is ~2x cheaper than int64 (rasterize asserts N*H*W < 2**31)
    line = p32 // w  # (P,) image row of N*H
    px = (p32 - line * w).to(verts.dtype) + 0.5  # (P,)
    py = (line % h).to(verts.dtype) + 0.5
    rgb = shade_fn(coef, prow, px, py, lights, perspective=not cam.orthographic)  # (C, P)

    bg = torch.as_tensor(background, dtype=verts.dtype, device=verts.device).expand(ch)
    fill = torch.cat([bg, bg.new_zeros(1)])  # background colour, coverage 0
    out = fill[:, None].expand(ch + 1, n * h * w).contiguous()  # (C + 1, N*H*W)
    out.index_copy_(1, pixel, torch.cat([rgb, rgb.new_ones(1, rgb.shape[1])]))  # a fresh tensor: in place
    return out, ch


def render_mesh(verts: torch.Tensor, faces: torch.Tensor, cam: Camera, albedo: torch.Tensor, *,
                lights: Lights = Lights(), background: float | tuple[float, ...] = 0.0,
                neighbors: torch.Tensor | None = None, cull_backfaces: bool = True,
                face_mask: torch.Tensor | None = None, compile: bool = False,
                jit: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Render shaded images of N meshes sharing one topology (differentiable w.r.t. ``verts``).

    On CPU (``jit``) the normals and the covered pixels are shaded by the compiled kernels of
    :mod:`avguide.render.jitshade`. Otherwise the planes of the camera-space normals and the
    albedo are computed once per shown (image, face) pair and every covered pixel evaluates and
    shades them (:mod:`avguide.render.planes`):
    the same images and gradients as barycentrics + :func:`avguide.render.raster.interpolate` +
    :func:`avguide.render.shading.shade` (:func:`render_mesh_reference`).

    Args:
        verts: (N, V, 3) float world positions.
        faces: (F, 3) int64, counter-clockwise seen from outside.
        cam: N (or 1) cameras, image size ``cam.size = (H, W)``.
        albedo: (V, C) or (N, V, C) float per-vertex albedo in [0, 1] (e.g. from
            :func:`avguide.render.shading.albedo_from_parts`).
        lights: directional lights + ambient in camera space.
        background: background value, scalar or one per channel.
        neighbors: (F, 3) int64 from :func:`avguide.render.antialias.face_neighbors`; when given,
            silhouette edges are antialiased (smooth images, gradients at occlusion edges).
        cull_backfaces: see :func:`avguide.render.raster.rasterize`.
        face_mask: optional (F,) bool subset of faces to draw (cache, e.g. faces near the lips).
        compile: rasterise, shade and antialias with ``torch.compile``'d kernels (:mod:`avguide.render.compiled`):
            the same face ids, images and gradients up to float32 rounding, ~1.3x faster after a
            first call that compiles (~50 s, ~6 s with inductor's disk cache); needs a C++
            compiler (else a warning, and eager).
        jit: on CPU, shade with the compiled kernels of :mod:`avguide.render.jitshade` (normals and
            covered pixels, forward and backward in single passes; the same images and gradients up
            to float rounding) and find the antialiased pairs with :mod:`avguide.render.jitalias`
            (the same pairs) when numba imports, the albedo and cameras need no gradient and
            ``compile`` is off; False keeps the torch path (the reference). None:
            :data:`avguide.render.raster.USE_JIT`, which also picks the rasteriser's z-buffer.
    Returns:
        image (N, C, H, W) float and coverage mask (N, 1, H, W) float in [0, 1] (antialiased at
        the outer silhouette when ``neighbors`` is given, else 0/1).
    """
    if compile:
        from avguide.render import compiled

        rasterize_fn, shade_fn, antialias_fn = compiled.rasterize, compiled.shade_planes, compiled.antialias_planes
    else:
        rasterize_fn, shade_fn, antialias_fn = rasterize, shade_planes, antialias_planes
    n = verts.shape[0]
    h, w = cam.size
    pix = project(verts, cam)  # (N, V, 3)
    face_id = rasterize_fn(pix, faces, cam.size, orthographic=cam.orthographic,
                           cull_backfaces=cull_backfaces, face_mask=face_mask)  # (N, H, W)
    if _use_jit(jit, compile, verts, albedo, cam):
        from avguide.render import jitshade  # imports numba: only when rendering

        normals, slot = jitshade.camera_normals(verts, faces, face_id, cam.rotation)  # (N, U, 3), (V,)
        out = jitshade.shade_pixels(pix, normals, slot, albedo, faces, face_id, lights, background=background,
                                    orthographic=cam.orthographic)  # (C + 1, N*H*W)
        ch = albedo.shape[-1]
    else:
        out, ch = _shade_torch(verts, pix, faces, face_id, cam, albedo, lights, background, shade_fn)
    if neighbors is not None:
        out = antialias_fn(out, pix, faces, face_id, neighbors, orthographic=cam.orthographic,
                           **({} if compile else {"jit": jit}))
    out = out.view(ch + 1, n, h, w).permute(1, 0, 2, 3)  # (N, C + 1, H, W)
    return out[:, :-1], out[:, -1:]


def render_mesh_reference(verts: torch.Tensor, faces: torch.Tensor, cam: Camera, albedo: torch.Tensor, *,
                          lights: Lights = Lights(), neighbors: torch.Tensor | None = None
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Slow, simple :func:`render_mesh` (black background, all faces) for tests and benchmarks.

    Full-image primitives: :func:`avguide.render.raster.rasterize_reference`, per-pixel
    barycentrics and interpolation over the whole image, normals of every vertex.

    Returns:
        image (N, C, H, W) and coverage (N, 1, H, W), as :func:`render_mesh`.
    """
    pix = project(verts, cam)  # (N, V, 3)
    fid = rasterize_reference(pix, faces, cam.size, orthographic=cam.orthographic)  # (N, H, W)
    bary = barycentrics(pix, faces, fid, orthographic=cam.orthographic)  # (N, H, W, 3)
    normals = vertex_normals(verts, faces) @ cam.rotation.transpose(-1, -2)  # (N, V, 3) camera space
    covered = (fid >= 0).unsqueeze(-1).to(verts.dtype)  # (N, H, W, 1)
    rgb = shade(interpolate(normals, faces, fid, bary), interpolate(albedo, faces, fid, bary), lights) * covered
    out = torch.cat([rgb, covered], -1)  # (N, H, W, C + 1)
    if neighbors is not None:
        out = antialias(out, pix, faces, fid, neighbors, orthographic=cam.orthographic, jit=False)
    out = out.permute(0, 3, 1, 2)  # (N, C + 1, H, W)
    return out[:, :-1], out[:, -1:]
