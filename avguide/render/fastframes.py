"""Video frames without autograd: the images of :func:`avguide.render.mesh.render_mesh` as sRGB bytes.

:func:`render_frames` composes project -> :func:`avguide.render.fastraster.drawn_faces` ->
:func:`avguide.render.fastraster.rasterize_video` -> :func:`face_planes` + :func:`shade_pixels` ->
:func:`silhouette_pairs` + the blend of :mod:`avguide.render.antialias` -> gamma, for the video
writer. The shading and the antialiasing are those of ``render_mesh(..., neighbors=...)``
(Lambert shading of the interpolated, re-normalised camera-space normals; the silhouette box
filter, whose gradient-free search and blend it calls), written for pictures instead of gradients:

* only the window the meshes can reach (their pixel box and a one-pixel ring) is rasterised and
  shaded, in coordinates shifted by its integer offset; the rest of the frames is a fill;
* shading runs over bands of whole window rows of about :data:`_BLOCK` pixels (the band's
  temporaries stay in a core's cache), channels first: each pixel reads its face's planes of
  normal and albedo (one table per image, computed once per frame; a zero column for "no face");
* the antialiasing looks for pixel pairs only around the pixels that show a face with a
  silhouette edge (:func:`silhouette_pairs`), not over whole images, and recomputes the colours
  of the few pixels it reads and changes instead of keeping full colour images.
"""

from __future__ import annotations

import math

import torch

from avguide.render.antialias import _blend, _exit_edges
from avguide.render.camera import Camera, project
from avguide.render.fastraster import CullPlan, _nonzero, drawn_faces, rasterize_video
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
        (18, N*F + 1) float32: constant, x and y coefficients of normal x, y, z and albedo r, g, b;
        the last column, all zeros, stands for "no face" (it shades to black). Degenerate faces get
        non-finite planes (the rasteriser never shows them).
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
    table = torch.zeros(18, q.shape[-1] + 1, dtype=torch.float32, device=verts.device)
    torch.cat([q0 - gx * x[0] - gy * y[0], gx, gy], out=table[:, :-1])  # (18, N*F)
    return table


def shade_pixels(table: torch.Tensor, rows: torch.Tensor, px: torch.Tensor, py: torch.Tensor,
                 lights: Lights = Lights(), scale: float = 1.0) -> torch.Tensor:
    """Lambert shading of pixels from their faces' planes (:func:`face_planes`).

    ``scale * albedo * (ambient + sum_k I_k max(0, n . -d_k))`` with the interpolated normal
    re-normalised, as :func:`avguide.render.shading.shade`.

    Args:
        table: (18, N*F + 1) planes; rows: (...) int (image * F + face, or N*F for no face) of
            each pixel; px, py: float32 pixel centres, broadcastable to ``rows``' shape (a row of
            columns and a column of rows shade a band of an image without materialising them);
            lights: camera-space lights; scale: a factor on the result.
    Returns:
        (3, P) float32 linear RGB times ``scale`` of the P = ``rows.numel()`` pixels (0 where the
        row is N*F), channels first.
    """
    return _shade(table, rows, px, py, *_light_terms(lights, scale, table.device))


def _light_terms(lights: Lights, scale: float, device) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(L, 3) negated unit light directions, (L,) intensities times ``scale``, ambient times ``scale``."""
    d = torch.tensor(lights.directions, dtype=torch.float32, device=device)
    intensity = torch.tensor(lights.intensities, dtype=torch.float32, device=device) * scale
    return -d / d.norm(dim=-1, keepdim=True), intensity, lights.ambient * scale


def _shade(table: torch.Tensor, rows: torch.Tensor, px: torch.Tensor, py: torch.Tensor, to_light: torch.Tensor,
           intensity: torch.Tensor, ambient: float) -> torch.Tensor:
    """:func:`shade_pixels` with the lights' terms of :func:`_light_terms`."""
    g = table.index_select(1, rows.reshape(-1)).view(18, *rows.shape)  # (18, ...)
    val = torch.addcmul(g[:6], g[6:12], px).addcmul_(g[12:], py).view(6, -1)  # (6, P) normal, albedo
    del g
    n = val[:3]
    inv = torch.linalg.vecdot(n, n, dim=0).clamp_min_(1e-24).rsqrt_()  # (P,) 1 / |n|
    cos = (to_light @ n).clamp_min_(0.0)  # (L, P) the cosines times |n| > 0
    return val[3:].mul_((intensity @ cos).mul_(inv).add_(ambient))


def silhouette_pairs(pix: torch.Tensor, faces: torch.Tensor, face_id: torch.Tensor, rows: torch.Tensor,
                     neighbors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The pixel pairs that :func:`avguide.render.antialias.antialias_planes` blends (orthographic).

    The same pairs: neighbours showing different faces whose segment leaves the nearer face
    through a silhouette edge (one whose neighbouring face is missing or back-facing in that
    image) that is steep for a pair along a row, shallow for a pair along a column. They are
    looked for only around the pixels that show a face with such an edge, instead of by
    comparing whole images.

    Args:
        pix: (N, V, 3) projected vertices; faces: (F, 3) int64; face_id: (N, H, W) int64 from
            :func:`avguide.render.fastraster.rasterize_video`; rows: (N*H*W,) int (image * F +
            face, N*F where no face) of every pixel; neighbors: (F, 3) int64 from
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
    # per (image, face) row of the table: 1 = a steep silhouette edge, 2 = a shallow one (row N*F: none)
    kind = torch.zeros(n * nf + 1, dtype=torch.uint8, device=p.device)
    kind[:-1] = ((silhouette & steep).any(1).view(-1).to(torch.uint8)
                 | ((silhouette & ~steep).any(1).view(-1).to(torch.uint8) << 1))
    near_kind = kind.index_select(0, rows)  # (N*H*W,)
    flat = face_id.view(-1)
    found = []
    # pairs along rows blend across steep silhouette edges, pairs along columns across the others:
    # a pair is only looked at when one of its pixels shows a face with such an edge
    for step, bit in ((1, 1), (w, 2)):
        near = (near_kind & bit).bool()
        cand = _nonzero(near)  # (P',) pixels showing such a face
        pos, last = (cand % w, w - 1) if step == 1 else ((cand // w) % h, h - 1)
        # pair (a, a + step) from a near pixel a, or from a + step when a is not near itself
        fwd, bwd = cand.index_select(0, _nonzero(pos < last)), cand.index_select(0, _nonzero(pos > 0)) - step
        first = torch.cat([fwd, bwd.index_select(0, _nonzero(~near.index_select(0, bwd)))])  # (K,)
        first = first.index_select(0, _nonzero(flat.index_select(0, first) != flat.index_select(0, first + step)))
        if first.numel() == 0:
            continue
        pair = torch.stack([first // (h * w), (first // w) % h, first % w], 1)  # (K, 3) image, row, column
        keep, idx, centres, sign = _exit_edges(pair, p, faces, face_id, front, slot, neighbors,
                                               torch.tensor(step == 1, device=p.device), True)
        sel = _nonzero(keep)
        found.append((idx.index_select(1, sel), centres.index_select(1, sel), sign.index_select(0, sel)))
    if not found:
        return flat.new_zeros(4, 0), p.new_zeros(4, 0), p.new_zeros(0)
    idx, centres, sign = zip(*found)
    return torch.cat(idx, 1), torch.cat(centres, 1), torch.cat(sign)


def _window(pix: torch.Tensor, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """top, left, height, width of the pixels that may differ from the background: the pixel box of
    every vertex of every image plus a one-pixel ring (where the antialiasing blends), in the image."""
    h, w = size
    p = pix.detach()[..., :2].reshape(-1, 2)
    finite = p.isfinite().all(1)
    if not bool(finite.any()):
        return 0, 0, 0, 0
    lo, hi = p[finite].amin(0), p[finite].amax(0)  # (2,) x, y
    left, top = (max(0, min(s, math.floor(float(v)) - 1)) for v, s in zip(lo, (w, h)))
    right, bottom = (max(0, min(s, math.ceil(float(v)) + 1)) for v, s in zip(hi, (w, h)))
    return top, left, max(0, bottom - top), max(0, right - left)


_BLOCK = 16384
"""Pixels shaded per step: the step's temporaries stay in a core's cache."""


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

    Only the window of pixels the meshes can reach (their pixel box and a one-pixel ring) is
    rasterised and shaded, in coordinates shifted by the window's integer offset (exact for
    vertices inside the image); the rest of the frames is background.

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
    n, (h, w) = verts.shape[0], cam.size
    nf = faces.shape[0]
    verts = verts.float()
    full = 255.0 ** gamma  # colours scaled by it: 255 * c ** (1 / gamma) = (full * c) ** (1 / gamma)
    to_byte = lambda c: c.clamp_(0, full).pow_(1 / gamma).add_(0.5).to(torch.uint8)  # noqa: E731  in place
    bg = to_byte(torch.as_tensor(background, dtype=torch.float32, device=verts.device).expand(3) * full)  # (3,)
    out = torch.empty(n, h, w, 3, dtype=torch.uint8, device=verts.device)
    if bool((bg == bg[0]).all()):
        out.fill_(int(bg[0]))  # grey: a memset
    else:
        out.copy_(bg.expand_as(out))
    pix = project(verts, cam.to(dtype=torch.float32))  # (N, V, 3)
    top, left, hh, ww = _window(pix, (h, w))
    if hh == 0 or ww == 0:
        return out
    pix = pix - torch.tensor([left, top, 0.0], device=pix.device)  # window coordinates
    face_id = rasterize_video(pix, faces, (hh, ww), draw=drawn_faces(pix, faces, plan))  # (N, hh, ww)
    table = face_planes(verts, pix, faces, cam, albedo)  # (18, N*F + 1)
    img_row = (torch.arange(n, device=pix.device) * nf)[:, None, None]
    rows = torch.where(face_id >= 0, face_id + img_row, n * nf).view(-1)  # (N*hh*ww,) table column of each pixel
    px = torch.arange(ww, dtype=torch.float32, device=pix.device) + 0.5  # (ww,) pixel centres
    py = (torch.arange(n * hh, dtype=torch.float32, device=pix.device) % hh)[:, None] + 0.5  # (N*hh, 1)
    planar = torch.empty(3, n * hh * ww, dtype=torch.uint8, device=pix.device)  # the windows' bytes, channels first
    band = max(1, _BLOCK // ww)  # rows shaded per step
    light = _light_terms(lights, full, pix.device)
    for r0 in range(0, n * hh, band):
        rr = rows[r0 * ww: (r0 + band) * ww]
        rgb = to_byte(_shade(table, rr.view(-1, ww), px, py[r0: r0 + band], *light))  # (3, b), no face black
        rgb += (rr == n * nf).to(torch.uint8) * bg[:, None]
        planar[:, r0 * ww: r0 * ww + rr.numel()] = rgb
    if neighbors is not None:
        bg_lin = torch.as_tensor(background, dtype=torch.float32, device=pix.device).expand(3) * full  # (3,)
        _antialias(planar, pix, faces, face_id, rows, neighbors, table, lights, full, gamma, bg_lin)
    out[:, top: top + hh, left: left + ww] = planar.view(3, n, hh, ww).permute(1, 2, 3, 0)
    return out


def _antialias(planar: torch.Tensor, pix: torch.Tensor, faces: torch.Tensor, face_id: torch.Tensor, rows: torch.Tensor,
               neighbors: torch.Tensor, table: torch.Tensor, lights: Lights, full: float, gamma: float,
               bg_lin: torch.Tensor) -> None:
    """Blend the silhouette pairs (:func:`silhouette_pairs`) into the bytes ``planar`` (3, N*H*W) of
    the images of ``face_id`` (N, H, W), in place. ``rows``: the table row of every pixel (as in
    :func:`render_frames`); ``bg_lin``: (3,) the background's linear colour times ``full``."""
    h, w = face_id.shape[1:]
    none = table.shape[1] - 1  # the table's column of "no face"
    idx, centres, sign = silhouette_pairs(pix, faces, face_id, rows, neighbors)  # (4, K), (4, K), (K,)
    k = sign.numel()
    if k == 0:
        return

    def colour(q: torch.Tensor) -> torch.Tensor:  # (3, Q) linear colour of the flat pixels q, times full
        r = rows.index_select(0, q)
        rgb = shade_pixels(table, r, (q % w).float() + 0.5, ((q // w) % h).float() + 0.5, lights, full)  # (3, Q)
        return rgb.addcmul_(bg_lin[:, None], (r == none).float()[None])  # background: 0 + its colour

    ends = idx[:2].reshape(-1)  # (2K,) the nearer face's pixels, then the others
    slot = torch.arange(2 * k, device=ends.device)
    # the blend of each pair reads the colours of its two pixels (gathered here: no full images)
    local, delta = _blend(pix.reshape(-1, 3), colour(ends), slot[:k], slot[k:], idx[2:], centres, sign)  # linear
    target, inverse = torch.unique(ends.index_select(0, local), return_inverse=True)  # a pixel may get several
    lin = colour(target).index_add_(1, inverse, delta)  # (3, T)
    planar.index_copy_(1, target, lin.clamp_(0, full).pow_(1 / gamma).add_(0.5).to(torch.uint8))
