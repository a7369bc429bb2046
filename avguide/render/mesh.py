"""One call from meshes to shaded images: project -> rasterize -> interpolate -> shade -> antialias.

Everything after the (gradient-free) rasteriser runs on the compact list of covered pixels, and
vertex normals are computed only for the vertices of faces that some pixel shows.
"""

from __future__ import annotations

import torch

from avguide.render.antialias import antialias
from avguide.render.camera import Camera, project
from avguide.render.raster import covered_pixels, pixel_barycentrics, rasterize
from avguide.render.shading import Lights, shade


def _shown_vertex_normals(verts: torch.Tensor, faces: torch.Tensor, shown: torch.Tensor
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Area-weighted unit normals of the vertices of the faces ``shown`` (differentiable).

    Equal to :func:`avguide.render.shading.vertex_normals` on those vertices, computed from the
    faces around them only.

    Args:
        verts: (N, V, 3) float positions.
        faces: (F, 3) int64.
        shown: (S,) int64 faces whose corners need normals (repeats allowed).
    Returns:
        normals (N, U, 3) float of the U needed vertices and slot (V,) int64: the row of each
        vertex in ``normals`` (U for vertices that are not needed).
    """
    nv = verts.shape[1]
    need = torch.zeros(nv, dtype=torch.bool, device=verts.device)
    need[faces[shown].reshape(-1)] = True
    idx = need.nonzero().squeeze(1)  # (U,)
    u = idx.numel()
    slot = torch.full((nv,), u, dtype=torch.int64, device=verts.device)
    slot[idx] = torch.arange(u, device=verts.device)
    around = faces[need[faces].any(1)]  # (Fa, 3) faces touching a needed vertex, in face order
    a, b, c = (verts.index_select(1, around[:, k]) for k in range(3))  # (N, Fa, 3) each
    fn = torch.linalg.cross(b - a, c - a, dim=-1)  # (N, Fa, 3), length = 2 * area
    vn = verts.new_zeros(verts.shape[0], u + 1, 3)  # row U collects contributions to other vertices
    for k in range(3):
        vn = vn.index_add(1, slot[around[:, k]], fn)
    vn = vn[:, :u]
    return vn / vn.norm(dim=-1, keepdim=True).clamp_min(1e-12), slot


def render_mesh(verts: torch.Tensor, faces: torch.Tensor, cam: Camera, albedo: torch.Tensor, *,
                lights: Lights = Lights(), background: float | tuple[float, ...] = 0.0,
                neighbors: torch.Tensor | None = None, cull_backfaces: bool = True,
                face_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Render shaded images of N meshes sharing one topology (differentiable w.r.t. ``verts``).

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
    Returns:
        image (N, C, H, W) float and coverage mask (N, 1, H, W) float in [0, 1] (antialiased at
        the outer silhouette when ``neighbors`` is given, else 0/1).
    """
    n, nv, _ = verts.shape
    h, w = cam.size
    pix = project(verts, cam)  # (N, V, 3)
    face_id = rasterize(pix, faces, cam.size, orthographic=cam.orthographic,
                        cull_backfaces=cull_backfaces, face_mask=face_mask)  # (N, H, W)
    pixel, face = covered_pixels(face_id)  # (P,) each
    bary = pixel_barycentrics(pix, faces, pixel, face, cam.size, orthographic=cam.orthographic)  # (P, 3)
    img = pixel // (h * w)  # (P,)
    corners = faces[face]  # (P, 3)

    normals, slot = _shown_vertex_normals(verts, faces, face)  # (N, U, 3)
    normals = normals @ cam.rotation.transpose(-1, -2)  # camera space
    u = normals.shape[1]
    n_c = normals.reshape(n * u, 3).index_select(0, (slot[corners] + (img * u)[:, None]).reshape(-1))
    n_px = (n_c.view(-1, 3, 3) * bary[..., None]).sum(1)  # (P, 3)
    ch = albedo.shape[-1]
    if albedo.dim() == 2:
        a_c = albedo.index_select(0, corners.reshape(-1))
    else:
        a_c = albedo.reshape(n * nv, ch).index_select(0, (corners + (img * nv)[:, None]).reshape(-1))
    a_px = (a_c.view(-1, 3, ch) * bary[..., None]).sum(1)  # (P, C)
    rgb = shade(n_px, a_px, lights)  # (P, C)

    bg = torch.as_tensor(background, dtype=verts.dtype, device=verts.device).expand(ch)
    fill = torch.cat([bg, bg.new_zeros(1)])  # background colour, coverage 0
    out = fill.expand(n * h * w, ch + 1).contiguous()  # (N*H*W, C + 1)
    out = out.index_put_((pixel,), torch.cat([rgb, rgb.new_ones(rgb.shape[0], 1)], -1))
    out = out.view(n, h, w, ch + 1)
    if neighbors is not None:
        out = antialias(out, pix, faces, face_id, neighbors, orthographic=cam.orthographic)
    out = out.permute(0, 3, 1, 2)  # (N, C + 1, H, W)
    return out[:, :-1], out[:, -1:]
