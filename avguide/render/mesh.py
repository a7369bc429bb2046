"""One call from meshes to shaded images: project -> rasterize -> interpolate -> shade -> antialias."""

from __future__ import annotations

import torch

from avguide.render.antialias import antialias
from avguide.render.camera import Camera, project
from avguide.render.raster import barycentrics, interpolate, rasterize
from avguide.render.shading import Lights, shade, vertex_normals


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
    pix = project(verts, cam)  # (N, V, 3)
    face_id = rasterize(pix, faces, cam.size, orthographic=cam.orthographic,
                        cull_backfaces=cull_backfaces, face_mask=face_mask)  # (N, H, W)
    bary = barycentrics(pix, faces, face_id, orthographic=cam.orthographic)  # (N, H, W, 3)
    normals_cam = vertex_normals(verts, faces) @ cam.rotation.transpose(-1, -2)  # (N, V, 3)
    n_px = interpolate(normals_cam, faces, face_id, bary)  # (N, H, W, 3)
    a_px = interpolate(albedo, faces, face_id, bary)  # (N, H, W, C)
    covered = (face_id >= 0).unsqueeze(-1).to(verts.dtype)  # (N, H, W, 1)
    bg = torch.as_tensor(background, dtype=verts.dtype, device=verts.device).expand(a_px.shape[-1])
    rgb = shade(n_px, a_px, lights) * covered + bg * (1 - covered)  # (N, H, W, C)
    out = torch.cat([rgb, covered], dim=-1)  # (N, H, W, C + 1)
    if neighbors is not None:
        out = antialias(out, pix, faces, face_id, neighbors, orthographic=cam.orthographic)
    out = out.permute(0, 3, 1, 2)  # (N, C + 1, H, W)
    return out[:, :-1], out[:, -1:]
