"""Video frames without autograd: the images of :func:`avguide.render.mesh.render_mesh` as sRGB bytes.

:func:`render_frames` composes project -> :func:`avguide.render.fastraster.drawn_faces` ->
:func:`avguide.render.fastraster.rasterize_video` -> :func:`face_planes` + :func:`shade_pixels` ->
:func:`silhouette_pairs` + the blend of :mod:`avguide.render.antialias` -> gamma, for the video
writer. The shading and the antialiasing are those of ``render_mesh(..., neighbors=...)``
(Lambert shading of the interpolated, re-normalised camera-space normals; the silhouette box
filter, whose gradient-free search and blend it calls), written for pictures instead of gradients:

* every per-pixel step runs on the compact list of covered pixels, channels first, and reads
  its face's planes of normal and albedo (one table per image, computed once per frame);
* the antialiasing looks for pixel pairs only around the pixels that show a face with a
  silhouette edge (:func:`silhouette_pairs`), not over whole images, and recomputes the colours
  of the few pixels it reads and changes instead of keeping full colour images;
* gamma runs only on the pixels that are not background.
"""

from __future__ import annotations

import torch

from avguide.render.antialias import _blend, _exit_edges
from avguide.render.camera import Camera, project
from avguide.render.fastraster import CullPlan, drawn_faces, rasterize_video
from avguide.render.shading import Lights, vertex_normals


def face_planes(verts: torch.Tensor, pix: torch.Tensor, faces: torch.Tensor, cam: Camera,
                albedo: torch.Tensor) -> torch.Tensor:
    """Screen-space planes of the camera-space vertex normal and the albedo over every face.

    Inside face f of image i, attribute k at pixel (px, py) is ``t[k] + t[6 + k] px + t[12 + k]
    py`` with ``t = table[:, i * F + f]`` (barycentric interpolation, orthographic camera).

    Args:
        verts: (N, V, 3) float world positions; pix: (N, V, 3) their projection.
        faces: (F, 3) int64; cam: the orthographic camera(s); albedo: (V, 3) float.
    Returns:
        (18, N*F) float32: constant, x and y coefficients of normal x, y, z and albedo r, g, b.
        Degenerate faces get non-finite planes (the rasteriser never shows them).
    """
    n, nv, _ = verts.shape
    normals = vertex_normals(verts.float(), faces) @ cam.rotation.float().transpose(-1, -2)  # (N, V, 3) camera space
    attr = torch.cat([normals.reshape(n * nv, 3).T, albedo.float().T.repeat(1, n)])  # (6, N*V) channels first
    corner = (faces.T[:, None, :] + (torch.arange(n, device=faces.device) * nv)[None, :, None]).reshape(-1)  # (3*N*F,)
    q = attr.index_select(1, corner).view(6, 3, -1)  # (6, 3 corners, N*F)
    p = pix.detach().float()
    x = p[..., 0].reshape(-1).index_select(0, corner).view(3, -1)  # (3, N*F)
    y = p[..., 1].reshape(-1).index_select(0, corner).view(3, -1)
    d1x, d1y, d2x, d2y = x[1] - x[0], y[1] - y[0], x[2] - x[0], y[2] - y[0]
    inv = 1.0 / (d1x * d2y - d2x * d1y)  # (N*F,)
    q0 = q[:, 0]
    dq1, dq2 = q[:, 1] - q0, q[:, 2] - q0  # (6, N*F) each
    gx = (dq1 * d2y - dq2 * d1y) * inv
    gy = (dq2 * d1x - dq1 * d2x) * inv
    return torch.cat([q0 - gx * x[0] - gy * y[0], gx, gy])  # (18, N*F)


def shade_pixels(table: torch.Tensor, rows: torch.Tensor, px: torch.Tensor, py: torch.Tensor,
                 lights: Lights = Lights(), scale: float = 1.0) -> torch.Tensor:
    """Lambert shading of P covered pixels from their faces' planes (:func:`face_planes`).

    ``scale * albedo * (ambient + sum_k I_k max(0, n . -d_k))`` with the interpolated normal
    re-normalised, as :func:`avguide.render.shading.shade`.

    Args:
        table: (18, N*F) planes; rows: (P,) int (image * F + face) of each pixel; px, py: (P,)
            float32 pixel centres; lights: camera-space lights; scale: a factor on the result.
    Returns:
        (3, P) float32 linear RGB times ``scale``.
    """
    g = table.index_select(1, rows)  # (18, P)
    val = torch.addcmul(g[:6], g[6:12], px).addcmul_(g[12:], py)  # (6, P) normal, albedo
    del g
    n = val[:3]
    inv = torch.linalg.vecdot(n, n, dim=0).clamp_min_(1e-24).rsqrt_()  # (P,) 1 / |n|
    d = torch.tensor(lights.directions, dtype=torch.float32, device=table.device)
    d = d / d.norm(dim=-1, keepdim=True)  # (L, 3)
    cos = (-d @ n).clamp_min_(0.0)  # (L, P) the cosines times |n| > 0
    light = (torch.tensor(lights.intensities, dtype=torch.float32, device=table.device) * scale) @ cos  # (P,)
    return val[3:].mul_(light.mul_(inv).add_(lights.ambient * scale))


def silhouette_pairs(pix: torch.Tensor, faces: torch.Tensor, face_id: torch.Tensor, pixel: torch.Tensor,
                     rows: torch.Tensor, neighbors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The pixel pairs that :func:`avguide.render.antialias.antialias_planes` blends (orthographic).

    The same pairs: neighbours showing different faces whose segment leaves the nearer face
    through a silhouette edge (one whose neighbouring face is missing or back-facing in that
    image) that is steep for a pair along a row, shallow for a pair along a column. They are
    looked for only around the covered pixels that show a face with such an edge, instead of by
    comparing whole images.

    Args:
        pix: (N, V, 3) projected vertices; faces: (F, 3) int64; face_id: (N, H, W) int64 from
            :func:`avguide.render.fastraster.rasterize_video`; pixel: (P,) int64 the covered
            pixels; rows: (P,) int (image * F + face) of each; neighbors: (F, 3) int64 from
            :func:`avguide.render.antialias.face_neighbors`.
    Returns:
        idx (4, K) int64: the nearer face's pixel, the other pixel and the rows of N*V of the
        silhouette edge's ends; centres (4, K) float32 their pixel centres (ax, ay, bx, by); sign
        (K,) float32 (inside the nearer face >= 0), as ``avguide.render.antialias._blend`` takes them.
    """
    n, h, w = face_id.shape
    nf = faces.shape[0]
    p = pix.detach()
    x, y = (p[..., k].index_select(1, faces.T.reshape(-1)).view(n, 3, nf) for k in range(2))  # (N, 3, F)
    area = (x[:, 1] - x[:, 0]) * (y[:, 2] - y[:, 0]) - (y[:, 1] - y[:, 0]) * (x[:, 2] - x[:, 0])  # (N, F)
    front = torch.cat([area < 0, area.new_zeros(n, 1, dtype=torch.bool)], 1)  # (N, F + 1): column F = missing
    slot = torch.arange(nf + 1, device=p.device)  # front's column of each face
    nb = torch.where(neighbors >= 0, neighbors, nf)  # (F, 3)
    silhouette = ~front[:, nb.T]  # (N, 3, F) edge k (corner k -> k + 1) has a missing or back-facing neighbour
    steep = (y.roll(-1, 1) - y).abs() > (x.roll(-1, 1) - x).abs()  # (N, 3, F) as the blend's axis test
    flat = face_id.view(-1)
    found = []
    # pairs along rows blend across steep silhouette edges, pairs along columns across the others:
    # a pair is only looked at when one of its pixels shows a face with such an edge
    for step, edges in ((1, silhouette & steep), (w, silhouette & ~steep)):
        cand = pixel[edges.any(1).view(-1).index_select(0, rows)]  # (P',) pixels showing such a face
        near = torch.zeros(n * h * w, dtype=torch.bool, device=p.device)
        near[cand] = True
        pos, last = (cand % w, w - 1) if step == 1 else ((cand // w) % h, h - 1)
        # pair (a, a + step) from a near pixel a, or from a + step when a is not near itself
        fwd, bwd = cand[pos < last], cand[pos > 0] - step
        first = torch.cat([fwd, bwd[~near[bwd]]])  # (K,)
        first = first[flat[first] != flat[first + step]]
        if first.numel() == 0:
            continue
        pair = torch.stack([first // (h * w), (first // w) % h, first % w], 1)  # (K, 3) image, row, column
        keep, idx, centres, sign = _exit_edges(pair, p, faces, face_id, front, slot, neighbors,
                                               torch.tensor(step == 1, device=p.device), True)
        sel = keep.nonzero().squeeze(1)
        found.append((idx.index_select(1, sel), centres.index_select(1, sel), sign.index_select(0, sel)))
    if not found:
        return pixel.new_zeros(4, 0), p.new_zeros(4, 0), p.new_zeros(0)
    idx, centres, sign = zip(*found)
    return torch.cat(idx, 1), torch.cat(centres, 1), torch.cat(sign)


def _locate(pixel: torch.Tensor, face: torch.Tensor, size: tuple[int, int], n_faces: int
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """rows (P,) int32 image * F + face, and px, py (P,) float32 pixel centres of flat pixels."""
    h, w = size
    p32 = pixel.int()  # int32 division is cheaper (N*H*W < 2**31)
    line = p32 // w  # row of N*H
    img = line // h
    return img * n_faces + face.int(), (p32 - line * w).float() + 0.5, (line - img * h).float() + 0.5


@torch.no_grad()
def render_frames(verts: torch.Tensor, faces: torch.Tensor, cam: Camera, albedo: torch.Tensor, *, plan: CullPlan,
                  neighbors: torch.Tensor | None = None, lights: Lights = Lights(),
                  background: float | tuple[float, float, float] = 0.0, gamma: float = 2.2) -> torch.Tensor:
    """Shaded sRGB frames of N meshes sharing one topology (inference only, orthographic camera).

    The images of :func:`avguide.render.mesh.render_mesh` with the same arguments (and
    ``cull_backfaces=False``), encoded as ``round(255 * clamp(rgb, 0, 1) ** (1 / gamma))``: equal
    up to float32 rounding, except on pixel centres within rounding of an edge or of equal
    depths, and where a self-intersecting mesh shows a back face (see
    :mod:`avguide.render.fastraster`).

    Args:
        verts: (N, V, 3) float world positions.
        faces: (F, 3) int64, counter-clockwise seen from outside.
        cam: one orthographic camera (or N), image size ``cam.size = (H, W)``.
        albedo: (V, 3) float per-vertex albedo in [0, 1].
        plan: :func:`avguide.render.fastraster.cull_plan` of the mesh (a cache the caller keeps).
        neighbors: (F, 3) int64 from :func:`avguide.render.antialias.face_neighbors`: when given,
            silhouette edges are antialiased.
        lights: camera-space lights.
        background: linear background colour, scalar or RGB.
        gamma: display gamma of the bytes.
    Returns:
        (N, H, W, 3) uint8.
    """
    assert cam.orthographic, "render_frames draws orthographic cameras only"
    n, h, w = verts.shape[0], *cam.size
    nf = faces.shape[0]
    verts = verts.float()
    pix = project(verts, cam.to(dtype=torch.float32))  # (N, V, 3)
    face_id = rasterize_video(pix, faces, cam.size, draw=drawn_faces(pix, faces, plan))  # (N, H, W)
    flat = face_id.view(-1)
    pixel = (flat >= 0).nonzero().squeeze(1)  # (P,) covered pixels
    rows, px, py = _locate(pixel, flat.index_select(0, pixel), (h, w), nf)
    table = face_planes(verts, pix, faces, cam, albedo)  # (18, N*F)
    bg = torch.as_tensor(background, dtype=torch.float32, device=pix.device).expand(3)
    full = 255.0 ** gamma  # colours scaled by it: 255 * c ** (1 / gamma) = (full * c) ** (1 / gamma)
    to_byte = lambda c: c.clamp_(0, full).pow_(1 / gamma).add_(0.5).to(torch.uint8)  # noqa: E731  in place
    out = to_byte(bg * full).repeat(n * h * w, 1)  # (N*H*W, 3)
    out.index_copy_(0, pixel, to_byte(shade_pixels(table, rows, px, py, lights, full)).T)
    if neighbors is None:
        return out.view(n, h, w, 3)

    def colour(q: torch.Tensor) -> torch.Tensor:  # (3, Q) linear colour of the flat pixels q, times full
        f = flat.index_select(0, q)
        rgb = shade_pixels(table, *_locate(q, f.clamp_min(0), (h, w), nf), lights, full)
        return torch.where(f >= 0, rgb, bg[:, None] * full)

    idx, centres, sign = silhouette_pairs(pix, faces, face_id, pixel, rows, neighbors)  # (4, K), (4, K), (K,)
    if sign.numel() == 0:
        return out.view(n, h, w, 3)
    k = sign.numel()
    ends = idx[:2].reshape(-1)  # (2K,) the nearer face's pixels, then the others
    slot = torch.arange(2 * k, device=ends.device)
    # the blend of each pair reads the colours of its two pixels (gathered here: no full images)
    local, delta = _blend(pix.reshape(-1, 3), colour(ends), slot[:k], slot[k:], idx[2:], centres, sign)  # linear
    target, inverse = torch.unique(ends.index_select(0, local), return_inverse=True)  # a pixel may get several
    out.index_copy_(0, target, to_byte(colour(target).index_add_(1, inverse, delta)).T)
    return out.view(n, h, w, 3)
