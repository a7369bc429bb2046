"""Rasterisation: a z-buffer without gradient, then differentiable barycentrics.

The pipeline is the nvdiffrast one, in plain PyTorch (CPU or CUDA):

1. :func:`rasterize` (no gradient) finds, for every pixel centre, the nearest covering face:
   every candidate face enumerates the pixel centres inside its bounding box (exactly, with
   ``repeat_interleave``; no fixed window), keeps those inside the triangle and resolves
   visibility with one ``scatter_reduce(amin)`` of a packed ``(depth << 24) | face`` key.
2. :func:`barycentrics` recomputes the barycentric coordinates of each pixel centre in its
   visible face from the *differentiable* projected vertices, so gradients flow from pixels to
   vertex positions (perspective-correct for perspective cameras).
3. :func:`interpolate` blends any per-vertex attribute with them.

Visibility changes (which face covers a pixel) carry no gradient here; edge gradients come from
:func:`avguide.render.antialias.antialias` and :func:`avguide.render.silhouette.soft_silhouette`.
"""

from __future__ import annotations

import torch

_FACE_BITS = 24  # face index bits in the packed z-buffer key
_DEPTH_LEVELS = (1 << 30) - 1  # depth quantisation levels (30 bits; 54 bits in all)


def pixel_centers(size: tuple[int, int], device: torch.device | str | None = None,
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Pixel centre coordinates.

    Args:
        size: (H, W).
    Returns:
        (H, W, 2) float: (x, y) = (column + 0.5, row + 0.5).
    """
    h, w = size
    ys = torch.arange(h, device=device, dtype=dtype) + 0.5
    xs = torch.arange(w, device=device, dtype=dtype) + 0.5
    return torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)  # (H, W, 2)


def _edge(ax, ay, bx, by, px, py):
    """Twice the signed area of (a, b, p); > 0 when p is left of a->b in a y-up frame."""
    return (bx - ax) * (py - ay) - (by - ay) * (px - ax)


@torch.no_grad()
def rasterize(pix: torch.Tensor, faces: torch.Tensor, size: tuple[int, int], *, orthographic: bool = True,
              cull_backfaces: bool = True, face_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Nearest visible face at every pixel centre (hard z-buffer, no gradient).

    Args:
        pix: (N, V, 3) float, projected vertices from :func:`avguide.render.camera.project`
            (pixel x, pixel y, camera depth z). Detached internally.
        faces: (F, 3) int64 vertex indices, F < 2**24. A face is front-facing when its vertices
            run counter-clockwise seen from the camera (the usual outward orientation).
        size: (H, W) image size.
        orthographic: depth is interpolated linearly in screen space (orthographic) or as 1/z
            (perspective: faces with a vertex at z <= 0 are dropped).
        cull_backfaces: skip back-facing faces (halves the work on closed, consistently
            oriented meshes; turn off for open or inconsistently oriented ones).
        face_mask: optional (F,) bool, only these faces are drawn (a caller-side cache, e.g.
            faces near the lips for a lip camera).
    Returns:
        (N, H, W) int64: index into ``faces`` of the visible face, -1 where no face covers the
        pixel centre.
    """
    n, _, _ = pix.shape
    h, w = size
    nf = faces.shape[0]
    assert nf < (1 << _FACE_BITS), "too many faces for the packed z-buffer key"
    dev = pix.device
    p = pix.detach().float()
    tri = p[:, faces]  # (N, F, 3 corners, 3)
    x, y, z = tri[..., 0], tri[..., 1], tri[..., 2]  # (N, F, 3) each
    # screen area in a y-down image: counter-clockwise in the world seen by the camera is
    # clockwise on screen, so front faces have area < 0
    area = _edge(x[..., 0], y[..., 0], x[..., 1], y[..., 1], x[..., 2], y[..., 2])  # (N, F)
    x0 = torch.ceil(x.amin(-1) - 0.5).clamp_min(0)
    x1 = torch.floor(x.amax(-1) - 0.5).clamp_max(w - 1)
    y0 = torch.ceil(y.amin(-1) - 0.5).clamp_min(0)
    y1 = torch.floor(y.amax(-1) - 0.5).clamp_max(h - 1)
    keep = (x1 >= x0) & (y1 >= y0) & (area != 0) & torch.isfinite(area)
    if cull_backfaces:
        keep &= area < 0
    if not orthographic:
        keep &= (z > 0).all(-1)
    if face_mask is not None:
        keep &= face_mask.to(dev)[None, :]
    img_idx, face_idx = keep.nonzero(as_tuple=True)  # (M,) each
    out = torch.full((n * h * w,), -1, dtype=torch.int64, device=dev)
    if img_idx.numel() == 0:
        return out.view(n, h, w)

    # enumerate the pixel centres of each kept face's bounding box
    bx0 = x0[img_idx, face_idx].long()
    by0 = y0[img_idx, face_idx].long()
    bw = x1[img_idx, face_idx].long() - bx0 + 1
    counts = bw * (y1[img_idx, face_idx].long() - by0 + 1)  # (M,)
    frag_face = torch.repeat_interleave(torch.arange(img_idx.numel(), device=dev), counts)  # (Q,)
    starts = torch.cumsum(counts, 0) - counts
    local = torch.arange(frag_face.numel(), device=dev) - starts[frag_face]
    fx = bx0[frag_face] + local % bw[frag_face]  # (Q,) pixel column
    fy = by0[frag_face] + local // bw[frag_face]  # (Q,) pixel row

    t = tri[img_idx, face_idx][frag_face]  # (Q, 3, 3)
    px = fx.float() + 0.5
    py = fy.float() + 0.5
    a = area[img_idx, face_idx][frag_face]  # (Q,)
    w0 = _edge(t[:, 1, 0], t[:, 1, 1], t[:, 2, 0], t[:, 2, 1], px, py) / a
    w1 = _edge(t[:, 2, 0], t[:, 2, 1], t[:, 0, 0], t[:, 0, 1], px, py) / a
    w2 = 1.0 - w0 - w1
    inside = (w0 >= 0) & (w1 >= 0) & (w2 >= 0)
    if not orthographic:  # 1/z is linear in screen space; compare 1/z (larger = nearer)
        depth = -(w0 / t[:, 0, 2] + w1 / t[:, 1, 2] + w2 / t[:, 2, 2])
    else:
        depth = w0 * t[:, 0, 2] + w1 * t[:, 1, 2] + w2 * t[:, 2, 2]
    depth = depth[inside]
    if depth.numel() == 0:
        return out.view(n, h, w)
    dmin, dmax = depth.min(), depth.max()
    q = ((depth - dmin) / (dmax - dmin).clamp_min(1e-30) * _DEPTH_LEVELS).long()
    key = (q << _FACE_BITS) | face_idx[frag_face[inside]]
    pixel = (img_idx[frag_face[inside]] * h + fy[inside]) * w + fx[inside]
    zbuf = torch.full((n * h * w,), torch.iinfo(torch.int64).max, dtype=torch.int64, device=dev)
    zbuf.scatter_reduce_(0, pixel, key, reduce="amin")
    covered = zbuf != torch.iinfo(torch.int64).max
    out[covered] = zbuf[covered] & ((1 << _FACE_BITS) - 1)
    return out.view(n, h, w)


def barycentrics(pix: torch.Tensor, faces: torch.Tensor, face_id: torch.Tensor, *,
                 orthographic: bool = True) -> torch.Tensor:
    """Differentiable barycentric coordinates of each pixel centre in its visible face.

    Args:
        pix: (N, V, 3) float projected vertices (pixel x, y, depth z), with gradient.
        faces: (F, 3) int64.
        face_id: (N, H, W) int64 from :func:`rasterize` (-1 = background).
        orthographic: False gives perspective-correct (3D) barycentrics.
    Returns:
        (N, H, W, 3) float, weights of the face's three corners (sum 1; zeros on background).
        Gradient flows to ``pix`` (hence to the vertices) through the corner positions.
    """
    n, h, w = face_id.shape
    covered = face_id >= 0
    corners = faces[face_id.clamp_min(0)]  # (N, H, W, 3)
    batch = torch.arange(n, device=pix.device).view(n, 1, 1, 1)
    t = pix[batch, corners]  # (N, H, W, 3 corners, 3)
    c = pixel_centers((h, w), pix.device, pix.dtype)
    px, py = c[..., 0], c[..., 1]  # (H, W)
    ax, ay, bx, by, cx, cy = t[..., 0, 0], t[..., 0, 1], t[..., 1, 0], t[..., 1, 1], t[..., 2, 0], t[..., 2, 1]
    area = _edge(ax, ay, bx, by, cx, cy)
    area = torch.where(covered, area, torch.ones_like(area))  # no 0/0 on background
    w0 = _edge(bx, by, cx, cy, px, py) / area
    w1 = _edge(cx, cy, ax, ay, px, py) / area
    w2 = 1.0 - w0 - w1
    bary = torch.stack([w0, w1, w2], dim=-1)  # (N, H, W, 3)
    if not orthographic:
        inv_z = 1.0 / torch.where(covered.unsqueeze(-1), t[..., 2], torch.ones_like(t[..., 2]))
        bary = bary * inv_z
        bary = bary / bary.sum(-1, keepdim=True)
    return bary * covered.unsqueeze(-1).to(bary.dtype)


def interpolate(attr: torch.Tensor, faces: torch.Tensor, face_id: torch.Tensor, bary: torch.Tensor) -> torch.Tensor:
    """Interpolate per-vertex attributes at the pixel centres.

    Args:
        attr: (N, V, D) or (V, D) float per-vertex attribute (shared by all images if 2-D).
        faces: (F, 3) int64.
        face_id: (N, H, W) int64 from :func:`rasterize`.
        bary: (N, H, W, 3) from :func:`barycentrics`.
    Returns:
        (N, H, W, D) float; zeros on background pixels. Differentiable w.r.t. ``attr`` and
        ``bary``.
    """
    corners = faces[face_id.clamp_min(0)]  # (N, H, W, 3)
    if attr.dim() == 2:
        vals = attr[corners]  # (N, H, W, 3, D)
    else:
        batch = torch.arange(attr.shape[0], device=attr.device).view(-1, 1, 1, 1)
        vals = attr[batch, corners]  # (N, H, W, 3, D)
    return (vals * bary.unsqueeze(-1)).sum(-2)
