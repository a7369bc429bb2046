"""Analytic antialiasing of silhouette edges: the gradient at occlusion boundaries.

Hard rasterisation is piecewise constant in *which* face covers a pixel, so moving a lip edge
over the dark mouth cavity changes nothing until a pixel centre flips. This module blends, for
every pair of neighbouring pixels showing different faces, the two colours by how far the
occluding face's silhouette edge lies between the two pixel centres (a one-pixel box filter,
the method of nvdiffrast's ``antialias``, written here in plain PyTorch). The blend weight is a
differentiable function of the edge's projected vertices, so pixels now change smoothly as the
edge moves and the gradient reaches the vertices. It covers the outer silhouette (face against
background) and the internal occlusion contours (lips against cavity, teeth).

A silhouette edge is an edge of the occluding (front-facing) face whose neighbour across the
edge is back-facing on screen or missing; :func:`face_neighbors` precomputes the adjacency once
per mesh topology (a cache the caller keeps and passes in).
"""

from __future__ import annotations

import torch

from avguide.render import raster
from avguide.render.raster import _edge, bary_planes, corner_index


def face_neighbors(faces: torch.Tensor) -> torch.Tensor:
    """Face adjacency across edges (computed once per topology, passed to :func:`antialias`).

    Args:
        faces: (F, 3) int64. Edge k of a face joins its corners k and (k + 1) % 3.
    Returns:
        (F, 3) int64: the face on the other side of edge k, or -1 for a boundary edge. On a
        non-manifold edge (shared by more than two faces) faces are paired in index order.
    """
    f = faces.long()
    nf = f.shape[0]
    a = f  # (F, 3) edge start
    b = f.roll(-1, dims=1)  # (F, 3) edge end
    lo, hi = torch.minimum(a, b), torch.maximum(a, b)
    key = (lo * (int(f.max()) + 1) + hi).reshape(-1)  # (3F,)
    order = torch.argsort(key, stable=True)
    ks = key[order]
    same = ks[1:] == ks[:-1]  # consecutive equal keys -> a shared edge
    # pair positions i, i + 1 of equal keys; in a run of 3+ (non-manifold edge) a position
    # already paired with its predecessor does not pair again
    pair_fwd = same & ~torch.cat([same.new_zeros(1), same[:-1]])
    out = torch.full((3 * nf,), -1, dtype=torch.int64, device=f.device)
    i = pair_fwd.nonzero(as_tuple=True)[0]
    out[order[i]] = order[i + 1] // 3
    out[order[i + 1]] = order[i] // 3
    return out.view(nf, 3)


def _screen_area(pix: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """(N, F') twice the signed screen area of ``faces`` (F', 3) (< 0 for front faces, y-down)."""
    x = [pix[..., 0].index_select(1, faces[:, k]) for k in range(3)]  # (N, F') each
    y = [pix[..., 1].index_select(1, faces[:, k]) for k in range(3)]
    return _edge(x[0], y[0], x[1], y[1], x[2], y[2])


def _contour_faces(pix: torch.Tensor, faces: torch.Tensor, face_id: torch.Tensor, neighbors: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Front-facing flags where :func:`antialias` needs them, and the pixels that may need it.

    Returns:
        front (N, R + 1) bool for the R faces that are visible in some image or neighbour one
        (column R, False, stands for a missing face), slot (F + 1,) int64 column of each face in
        ``front`` (R for the others; index F is the "no neighbour" entry), and near (N, H, W) bool: the pixel shows a face with at least one
        silhouette edge in its image (a neighbour across the edge that is missing or back-facing).
        A pixel pair can only be antialiased if one of its two pixels is ``near``.
    """
    n = face_id.shape[0]
    nf = faces.shape[0]
    dev = face_id.device
    visible = torch.zeros(nf + 1, dtype=torch.bool, device=dev)
    visible[face_id.reshape(-1)] = True  # -1 (background) lands on the extra entry nf
    visible = visible[:nf]
    rel = visible.clone()
    vis_idx = visible.nonzero().squeeze(1)  # (U,)
    nb_vis = neighbors.index_select(0, vis_idx).reshape(-1)
    rel[nb_vis[nb_vis >= 0]] = True
    rel_idx = rel.nonzero().squeeze(1)  # (R,)
    r = rel_idx.numel()
    slot = torch.full((nf + 1,), r, dtype=torch.int64, device=dev)
    slot[rel_idx] = torch.arange(r, device=dev)
    front = _screen_area(pix, faces.index_select(0, rel_idx)) < 0  # (N, R)
    front = torch.cat([front, front.new_zeros(n, 1)], 1)  # (N, R + 1): column R = missing face
    nb = slot[neighbors.index_select(0, vis_idx)]  # (U, 3) column of each neighbour (R if none or not relevant)
    # neighbours of visible faces are all relevant, so column R here only means "no neighbour"
    sil = ~(front[:, nb].all(-1))  # (N, U) some edge has a missing or back-facing neighbour
    sil_face = torch.zeros(n, nf + 1, dtype=torch.bool, device=dev)
    sil_face[:, vis_idx] = sil
    near = sil_face.gather(1, face_id.reshape(n, -1).where(face_id.reshape(n, -1) >= 0, nf)).view_as(face_id)
    return front, slot, near


def _inside(p0: torch.Tensor, p1: torch.Tensor, px: torch.Tensor, py: torch.Tensor, sign: torch.Tensor
            ) -> torch.Tensor:
    """Edge function of the edge p0 -> p1 (``(..., 2)`` ends) at (px, py), >= 0 on the occluder's side."""
    return sign * ((p1[..., 0] - p0[..., 0]) * (py - p0[..., 1]) - (p1[..., 1] - p0[..., 1]) * (px - p0[..., 0]))


def _blend(pix: torch.Tensor, planes: torch.Tensor, pa: torch.Tensor, pb: torch.Tensor, ends: torch.Tensor,
           centres: torch.Tensor, sign: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The differentiable end of the antialiasing on its K' selected pairs.

    Args:
        pix: (N*V, 3) float projected vertices, with gradient; planes: (C, N*H*W) colours.
        pa, pb: (K',) int64 occluder's and other pixel; ends: (2, K') int64 rows of ``pix`` of
            the exit edge's ends; centres: (4, K') float ax, ay, bx, by; sign: (K',) float.
    Returns:
        target (K',) int64 pixels and delta (C, K') to add there.
    """
    c = planes.shape[0]
    ax, ay, bx, by = centres.unbind(0)
    p = pix.index_select(0, ends.reshape(-1)).view(2, -1, 3)  # (2, K', 3) with gradient
    ea, eb = _inside(p[0], p[1], ax, ay, sign), _inside(p[0], p[1], bx, by, sign)
    t = ea / (ea - eb)  # (K',) crossing of the silhouette edge, 0 at a, 1 at b
    ca, cb = planes.index_select(1, torch.cat([pa, pb])).view(c, 2, -1).unbind(1)  # (C, K') each
    # box filter: the occluder covers a fraction t - 1/2 of b, or misses 1/2 - t of a
    into_b = t > 0.5
    wgt = (t - 0.5).abs()
    return torch.where(into_b, pb, pa), torch.where(into_b, wgt * (ca - cb), wgt * (cb - ca))


def _exit_edges(pair: torch.Tensor, p: torch.Tensor, faces: torch.Tensor, face_id: torch.Tensor,
                front: torch.Tensor, slot: torch.Tensor, neighbors: torch.Tensor, horizontal: torch.Tensor,
                orthographic: bool):
    """The gradient-free part of the antialiasing for K candidate pixel pairs: the visible depth
    at both pixels, the occluder, and the edge the segment between them exits through.

    Args:
        pair: (K, 3) int64 image, row, column of each pair's first pixel.
        p: (N, V, 3) float projected vertices, detached. faces: (F, 3) int64.
        face_id: (N, H, W) int64. front, slot: from :func:`_contour_faces`.
        neighbors: (F, 3) int64 from :func:`face_neighbors`.
        horizontal: () bool, pairs along rows (else along columns); a tensor, so that both
            directions share one compiled graph (:mod:`avguide.render.compiled`).
        orthographic: camera kind (depth test).

    Returns:
        keep (K,) bool (the pair straddles a silhouette edge it handles), idx (4, K) int64: the
        occluder's pixel pa, the other pixel pb and the rows of N*V of the exit edge's ends,
        centres (4, K) float (ax, ay, bx, by) and sign (K,) float (inside the occluder >= 0).
    """
    n, h, w = face_id.shape
    v = p.shape[1]
    nf = faces.shape[0]
    k2 = pair.shape[0]
    first = (pair[:, 0] * h + pair[:, 1]) * w + pair[:, 2]  # (K,) flat
    xyz = p.reshape(-1, 3)  # (N*V, 3)
    flat_id = face_id.view(-1)
    # the visible depth at both pixels
    pixel = torch.cat([first, first + torch.where(horizontal, 1, w)])  # (2K,)
    face = flat_id.index_select(0, pixel)
    corners = corner_index(faces, pixel, face.clamp_min(0), v, (h, w))  # (3, 2K)
    bary = bary_planes(xyz.T, corners, pixel, (h, w), orthographic=orthographic)  # (3, 2K)
    z = xyz[:, 2].index_select(0, corners.reshape(-1)).view(3, -1)  # (3 corners, 2K)
    depth = torch.where(face >= 0, (z * bary).sum(0), float("inf"))
    # the occluder, and the edge the segment from its pixel to the other one exits through
    occ_first = depth[:k2] <= depth[k2:]
    pa = torch.where(occ_first, pixel[:k2], pixel[k2:])
    pb = torch.where(occ_first, pixel[k2:], pixel[:k2])
    occ = flat_id.index_select(0, pa)  # (K,) never background (its depth is inf)
    img = pa // (h * w)
    ay, ax = ((pa % (h * w)) // w).to(p.dtype) + 0.5, (pa % w).to(p.dtype) + 0.5
    by, bx = ((pb % (h * w)) // w).to(p.dtype) + 0.5, (pb % w).to(p.dtype) + 0.5
    fr, r1 = front.view(-1), front.shape[1]  # (N * (R + 1),)
    sign = torch.where(fr.index_select(0, img * r1 + slot.index_select(0, occ)), -1.0, 1.0).to(p.dtype)
    corner_rows = faces.index_select(0, occ) + (img * v)[:, None]  # (K, 3)
    p0 = xyz.index_select(0, corner_rows.reshape(-1)).view(-1, 3, 3)[..., :2]  # (K, 3, 2)
    p1 = p0.roll(-1, dims=1)
    ea = _inside(p0, p1, ax[:, None], ay[:, None], sign[:, None])  # (K, 3)
    eb = _inside(p0, p1, bx[:, None], by[:, None], sign[:, None])
    exits = (ea >= 0) & (eb < 0)
    t_all = torch.where(exits, ea / torch.where(exits, ea - eb, torch.ones_like(ea)), 2.0)
    k = t_all.argmin(-1, keepdim=True)  # (K, 1) the exit edge
    d = (p1 - p0).gather(1, k[..., None].expand(-1, 1, 2)).squeeze(1)  # (K, 2) its direction
    nb = neighbors.view(-1).index_select(0, occ * 3 + k.squeeze(1))
    silhouette = ~fr.index_select(0, img * r1 + slot.index_select(0, torch.where(nb >= 0, nb, nf)))
    steep = (d[:, 1].abs() > d[:, 0].abs()) == horizontal  # horizontal pairs take the steep edges
    keep = exits.gather(1, k).squeeze(1) & silhouette & steep
    ends = corner_rows.gather(1, torch.cat([k, (k + 1) % 3], 1)).T  # (2, K)
    return keep, torch.cat([torch.stack([pa, pb]), ends]), torch.stack([ax, ay, bx, by]), sign


def antialias_planes(planes: torch.Tensor, pix: torch.Tensor, faces: torch.Tensor, face_id: torch.Tensor,
                     neighbors: torch.Tensor, *, orthographic: bool = True, kernel=lambda fn: fn,
                     jit: bool | None = None) -> torch.Tensor:
    """:func:`antialias` on channels-first colours (C, N*H*W), the fast layout on CPU.

    ``kernel(fn)`` returns what runs the pure exit-edge search (:mod:`avguide.render.compiled`
    passes its compiled version); the pair masks and ``nonzero`` calls stay here. ``jit``: on CPU
    the gradient-free search (silhouettes, pairs, exit edges) runs in
    :func:`avguide.render.jitalias.silhouette_pairs` and the blend in :func:`avguide.render.jitalias.blend`
    when numba imports (the same images bit for bit, gradients to a rounding); False keeps the
    torch path. None: :data:`avguide.render.raster.USE_JIT`.

    Returns:
        (C, N*H*W) float antialiased colours (``planes`` itself when nothing changes).
    """
    n, v, _ = pix.shape
    h, w = face_id.shape[1:]
    if (raster.USE_JIT if jit is None else jit) and pix.device.type == "cpu":
        from avguide.render import jitalias  # imports numba: only when rendering

        if jitalias.available():
            idx, centres, sign, _ = jitalias.silhouette_pairs(pix, faces, face_id, neighbors,
                                                              orthographic=orthographic)
            return jitalias.blend(planes, pix, idx, centres, sign) if sign.numel() else planes
    p = pix.detach()
    with torch.no_grad():
        front, slot, near = _contour_faces(p, faces, face_id, neighbors)
    targets, deltas = [], []
    for axis in (2, 1):  # pairs along rows, then along columns
        dy, dx = (0, 1) if axis == 2 else (1, 0)
        fa, fb = face_id[:, : h - dy, : w - dx], face_id[:, dy:, dx:]
        pair = ((fa != fb) & (near[:, : h - dy, : w - dx] | near[:, dy:, dx:])).nonzero()  # (K, 3)
        if pair.shape[0] == 0:
            continue
        horizontal = torch.tensor(axis == 2, device=pix.device)
        with torch.no_grad():
            keep, idx, centres, sign = kernel(_exit_edges)(pair, p, faces, face_id, front, slot, neighbors,
                                                           horizontal, orthographic)
        sel = keep.nonzero().squeeze(1)  # (K',)
        if sel.numel() == 0:
            continue
        idx, centres = idx.index_select(1, sel), centres.index_select(1, sel)  # (4, K'), (4, K')
        target, delta = _blend(pix.reshape(n * v, 3), planes, idx[0], idx[1], idx[2:], centres,
                               sign.index_select(0, sel))
        targets.append(target)
        deltas.append(delta)
    if not targets:
        return planes
    return planes.index_add(1, torch.cat(targets), torch.cat(deltas, 1))


def antialias(color: torch.Tensor, pix: torch.Tensor, faces: torch.Tensor, face_id: torch.Tensor,
              neighbors: torch.Tensor, *, orthographic: bool = True, jit: bool | None = None) -> torch.Tensor:
    """Blend colours across silhouette edges so that images vary smoothly with vertices.

    Only pixel pairs with different faces where one of the two faces has a silhouette edge in
    that image are examined (a cheap exact pre-filter; every other pair is an interior edge).

    Args:
        color: (N, H, W, C) float shaded image (background already filled in).
        pix: (N, V, 3) float projected vertices (pixel x, y, depth), with gradient.
        faces: (F, 3) int64.
        face_id: (N, H, W) int64 from :func:`avguide.render.raster.rasterize`.
        neighbors: (F, 3) int64 from :func:`face_neighbors` (cache per topology).
        orthographic: camera kind (for the depth test choosing the occluder of a pixel pair).
        jit: the compiled pair search on CPU (see :func:`antialias_planes`); False: the torch path.
    Returns:
        (N, H, W, C) float antialiased image. Differentiable w.r.t. ``color`` and, through the
        silhouette-edge crossing positions, w.r.t. ``pix``. Images with no silhouette edge are
        returned unchanged.
    """
    c = color.shape[-1]
    planes = color.reshape(-1, c).T  # (C, N*H*W) view
    out = antialias_planes(planes, pix, faces, face_id, neighbors, orthographic=orthographic, jit=jit)
    return out.T.reshape(color.shape) if out is not planes else color
