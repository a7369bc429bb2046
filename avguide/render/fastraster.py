"""Inference-only rasterisation for video: exact back-face culling of open meshes and a scanline
z-buffer with one reduction.

:func:`rasterize_video` finds the nearest face at every pixel centre, as
:func:`avguide.render.raster.rasterize` does, without its guarantees of bit-identical face ids (it
serves pictures, not gradients) and at a fraction of its cost:

1. **Culling that changes nothing** (:func:`cull_plan`, :func:`drawn_faces`). On a closed,
   consistently and outwardly oriented surface a back face is never the nearest one, and the
   rasteriser can skip half of the faces. The default head is not closed (the neck is open, and
   through it the inside of the neck is seen), so culling every back face would change images.
   Cap every boundary loop with a cone from its centroid: the surface becomes closed, and a ray
   from the camera that first meets a back face of it has entered the volume through a cap. A
   back face can therefore only be visible inside the screen projection of a cap, which lies in
   the bounding box of the loop's projected vertices. :func:`drawn_faces` keeps the back faces
   of such components that overlap a loop's box and drops the others; components that are not
   consistently oriented, not edge-manifold or inside out (negative capped volume) are drawn
   whole. The argument needs an embedded (not self-intersecting) surface: where an animation
   pushes one part of the skin through another, a back face the full rasteriser would show there
   can be missing.
2. **Scanline** (:func:`rasterize_video`). Each face is split at its middle corner's height into
   two trapezoids, each bounded by one left and one right edge (:func:`_trapezoids`); every
   (trapezoid, pixel row) pair gets its covered columns from the crossings of the row with those
   two edges. A crossing is computed from the edge's end with the lower vertex index, so the two
   faces along an edge compute bit-identical crossings and no pixel centre falls between them
   (no cracks); a pixel centre exactly on the edge is covered by both (the inclusive test of the
   full rasteriser).
3. **One packed reduction** (:func:`_splat_runs`). Depth is normalised per image to [4, 5]; the
   runs of covered pixels are expanded densely, by powers of two of their length, into int64 keys:
   the float64 depth's bits (positive doubles order like their bits) with ``face + 1`` in the
   lowest 24 of them. One ``scatter_reduce(amin)`` per group finds the nearest face, the lower face
   index on an exact tie.

Orthographic cameras only (depth linear in screen space), the camera of
:func:`avguide.render.video.render_video`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

_FACE_BITS = 24
_FACE_MASK = (1 << _FACE_BITS) - 1
_EMPTY = torch.iinfo(torch.int64).max & ~_FACE_MASK  # above every key, face bits 0 (-1 after the - 1)


class CullPlan(NamedTuple):
    """Which faces :func:`drawn_faces` may cull, computed once per mesh (a cache the caller keeps).

    Attributes:
        cullable: (F,) bool, the face's component is closed up to capped holes, consistently and
            outwardly oriented: its back faces are hidden outside the caps' projections.
        rim: (B,) int64 boundary vertices of the cullable components.
        rim_loop: (B,) int64 loop (connected boundary) of each, in [0, n_loops).
        n_loops: number of loops.
    """

    cullable: torch.Tensor
    rim: torch.Tensor
    rim_loop: torch.Tensor
    n_loops: int


def _labels(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Connected-component label in [0, k) of each of ``n`` nodes joined by the edges ``a``--``b``.

    Union-find in rounds: every edge between two trees hooks the larger root under the smaller,
    then every node jumps to its root (no scipy import: it would cost a video 0.4 s).
    """
    parent = np.arange(n)
    while True:
        ra, rb = parent[a], parent[b]
        apart = ra != rb
        if not apart.any():
            return np.unique(parent, return_inverse=True)[1].reshape(-1)
        np.minimum.at(parent, np.maximum(ra, rb)[apart], np.minimum(ra, rb)[apart])  # parent[i] <= i: a forest
        while True:
            up = parent[parent]
            if np.array_equal(up, parent):
                break
            parent = up


def cull_plan(verts: torch.Tensor | np.ndarray, faces: torch.Tensor | np.ndarray) -> CullPlan:
    """The faces whose back-facing copies may be culled without changing an image.

    A connected component is cullable when each of its edges is used by one face (a boundary
    edge) or by two faces in opposite directions, and its volume closed by a cone over each
    boundary loop is positive at ``verts`` (outward normals: counter-clockwise seen from outside).

    Args:
        verts: (V, 3) float positions of a typical pose (the orientation is decided here).
        faces: (F, 3) int vertex indices.
    Returns:
        A :class:`CullPlan` for :func:`drawn_faces`.
    """
    v = np.asarray(verts, np.float64).reshape(-1, 3)
    f = np.asarray(faces, np.int64).reshape(-1, 3)
    nv = v.shape[0]
    a, b = f.reshape(-1), np.roll(f, -1, 1).reshape(-1)  # (3F,) directed edge k of face i at 3i + k
    _, edge, count = np.unique(np.minimum(a, b) * nv + np.maximum(a, b), return_inverse=True, return_counts=True)
    forward = np.bincount(edge, weights=a < b, minlength=count.size)  # uses from the lower vertex
    unsound = (count > 2) | ((count == 2) & (forward != 1))  # non-manifold, or both uses in one direction
    comp = _labels(nv, a, b)  # (V,) component of each vertex
    fcomp = comp[f[:, 0]]  # (F,)
    n_comp = int(comp.max()) + 1 if nv else 0
    bad = np.zeros(n_comp, bool)
    bad[fcomp[unsound[edge].reshape(-1, 3).any(1)]] = True
    rim_edge = count[edge] == 1  # (3F,) boundary uses
    ra, rb = a[rim_edge], b[rim_edge]
    loop = _labels(nv, ra, rb)  # (V,) loops of the boundary vertices (singletons elsewhere)
    n_lab = int(loop.max()) + 1 if nv else 0
    rim_v = np.unique(np.r_[ra, rb])
    centre = np.zeros((n_lab, 3))
    np.add.at(centre, loop[rim_v], v[rim_v])
    centre /= np.maximum(np.bincount(loop[rim_v], minlength=n_lab), 1)[:, None]
    # signed volume of each component, closed by cones (b, a, centre) over its boundary edges a -> b
    det = lambda p, q, r: np.einsum("ij,ij->i", p, np.cross(q, r)) / 6  # noqa: E731
    vol = np.bincount(fcomp, weights=det(v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]), minlength=n_comp)
    vol += np.bincount(comp[ra], weights=det(v[rb], v[ra], centre[loop[ra]]), minlength=n_comp)
    ok = ~bad & (vol > 0)  # (n_comp,)
    rim_v = rim_v[ok[comp[rim_v]]]
    _, rim_loop = np.unique(loop[rim_v], return_inverse=True)
    return CullPlan(torch.from_numpy(ok[fcomp]), torch.from_numpy(rim_v), torch.from_numpy(rim_loop.reshape(-1)),
                    int(rim_loop.max()) + 1 if rim_v.size else 0)


def _corners(pix: torch.Tensor, faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x, y, z of the corners of every (image, face): (3, N, F) float32 each."""
    p = pix.detach().float()
    idx = faces.T.reshape(-1)  # (3F,)
    x, y, z = (p[..., k].index_select(1, idx).view(-1, 3, faces.shape[0]).transpose(0, 1) for k in range(3))
    return x, y, z


def _area(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Twice the signed screen area (< 0 for a face counter-clockwise seen by the camera, y down)."""
    return (x[1] - x[0]) * (y[2] - y[0]) - (y[1] - y[0]) * (x[2] - x[0])


def drawn_faces(pix: torch.Tensor, faces: torch.Tensor, plan: CullPlan) -> torch.Tensor:
    """The faces :func:`rasterize_video` must draw in each image for the images of all faces.

    Args:
        pix: (N, V, 3) float projected vertices (pixel x, y, depth).
        faces: (F, 3) int64.
        plan: :func:`cull_plan` of this mesh.
    Returns:
        (N, F) bool: front faces, faces of components that cannot be culled, and back faces
        whose pixel box overlaps the box of a boundary loop of their mesh.
    """
    x, y, _ = _corners(pix, faces)  # (3, N, F) each
    draw = (_area(x, y) < 0) | ~plan.cullable.to(pix.device)  # (N, F)
    if plan.n_loops:
        p = pix.detach().float()[:, plan.rim.to(pix.device)]  # (N, B, 3)
        n = p.shape[0]
        at = plan.rim_loop.to(pix.device)[None, :, None].expand(n, -1, 2)  # (N, B, 2) loop of each rim vertex
        box = p.new_empty(n, plan.n_loops, 2)
        lo = box.fill_(float("inf")).scatter_reduce(1, at, p[..., :2], "amin")  # (N, L, 2)
        hi = box.clone().fill_(float("-inf")).scatter_reduce(1, at, p[..., :2], "amax")
        fx0, fx1 = x.amin(0)[..., None], x.amax(0)[..., None]  # (N, F, 1)
        fy0, fy1 = y.amin(0)[..., None], y.amax(0)[..., None]
        overlap = ((fx1 >= lo[:, None, :, 0]) & (fx0 <= hi[:, None, :, 0]) &
                   (fy1 >= lo[:, None, :, 1]) & (fy0 <= hi[:, None, :, 1])).any(-1)  # (N, F)
        draw |= overlap
    return draw


def _nonzero(mask: torch.Tensor) -> torch.Tensor:
    """(K,) int64 indices of the True entries of a 1-D bool tensor (on CPU numpy's, several times
    faster than ``torch.nonzero``)."""
    if mask.device.type == "cpu":
        return torch.from_numpy(np.flatnonzero(mask.numpy()))
    return mask.nonzero().squeeze(1)


def _segment_ids(count: torch.Tensor) -> torch.Tensor:
    """``arange(M).repeat_interleave(count)`` as int32 (a +1 at every segment end, a prefix sum).

    Args:
        count: (M,) int32 >= 0, total < 2**31.
    Returns:
        (sum(count),) int32.
    """
    ends = count.cumsum(0)
    total = int(ends[-1]) if count.numel() else 0
    mark = torch.zeros(total + 1, dtype=torch.int32, device=count.device)
    mark.index_add_(0, ends, torch.ones_like(ends, dtype=torch.int32))
    return mark[:total].cumsum(0, dtype=torch.int32)


def _trapezoids(x: torch.Tensor, y: torch.Tensor, vid: torch.Tensor, h: int) -> torch.Tensor:
    """Split M faces at their middle corner's height into a top and a bottom trapezoid, each with
    one left and one right bounding edge.

    A row at height ``py`` crosses the edge (u, w) at ``x_u + (py - y_u) * (x_w - x_u) / (y_w -
    y_u)``, with u the end with the lower vertex index (bit-identical in both faces of the edge).
    Rows above the middle corner belong to the top half, rows below to the bottom half; a row
    exactly at the middle corner's height belongs to the half whose short edge is not horizontal.

    Args:
        x, y: (3, M) float32 corner pixel coordinates; vid: (3, M) int64 corner vertex ids.
        h: image height.
    Returns:
        (8, 2M) float32: x_u, y_u, slope of the left edge (rows 0, 2, 4) and the right edge (rows
        1, 3, 5), the number of rows (6) and the first row (7) of the M top halves, then of the
        M bottom halves.
    """
    x, y, vid = list(x), list(y), list(vid)
    for i, j in ((0, 1), (1, 2), (0, 1)):  # sort the corners by height: top (0), middle (1), bottom (2)
        swap = y[j] < y[i]
        for c in (x, y, vid):
            c[i], c[j] = torch.where(swap, c[j], c[i]), torch.where(swap, c[i], c[j])

    def edge(p: int, q: int) -> torch.Tensor:  # (3, M) x_u, y_u, slope of the edge p-q
        swap = vid[q] < vid[p]
        xu, yu = torch.where(swap, x[q], x[p]), torch.where(swap, y[q], y[p])
        dx, dy = torch.where(swap, x[p], x[q]) - xu, torch.where(swap, y[p], y[q]) - yu
        return torch.stack([xu, yu, (dx / torch.where(dy == 0, 1.0, dy)).clamp_(-1e30, 1e30)])

    long, upper, lower = edge(0, 2), edge(0, 1), edge(1, 2)  # (3, M) each
    # the middle corner lies right of the long edge: the long edge bounds both halves on the left
    long_left = ((x[1] - x[0]) * (y[2] - y[0]) - (x[2] - x[0]) * (y[1] - y[0]) > 0)[None]  # (1, M)
    r0 = torch.ceil(y[0] - 0.5).clamp_min(0)
    r1 = torch.floor(y[2] - 0.5).clamp_max(h - 1)
    split = torch.where(y[1] == y[2], torch.floor(y[1] - 0.5) + 1, torch.ceil(y[1] - 0.5))
    split = torch.minimum(torch.maximum(split, r0), r1 + 1)  # first row of the bottom half
    halves = []
    for short, first, n_rows in ((upper, r0, split - r0), (lower, split, r1 + 1 - split)):
        lft, rgt = torch.where(long_left, long, short), torch.where(long_left, short, long)
        halves.append(torch.stack([lft[0], rgt[0], lft[1], rgt[1], lft[2], rgt[2], n_rows.clamp_min(0), first]))
    return torch.cat(halves, 1)


def _splat_runs(zbuf: torch.Tensor, start: torch.Tensor, count: torch.Tensor, depth: torch.Tensor,
                slope: torch.Tensor, face: torch.Tensor) -> None:
    """Reduce R runs of consecutive pixels into the z-buffer of packed keys, in place.

    Run r covers pixels ``start[r] + j`` for ``j < count[r]`` at depth ``depth[r] + slope[r] * j``.
    In step k the runs longer than 2**(k-1) expand their columns [2**(k-1), 2**k) densely (no
    per-pixel gather); columns past a run's end repeat its last pixel. The key is the float64 depth's
    bits with ``face + 1`` in the lowest 24 of them (positive doubles order like their bits).

    Args:
        zbuf: (N*H*W,) int64 keys.
        start: (R,) int64; count: (R,) int32 >= 0; depth, slope: (R,) float32; face: (R,) int32.
    """
    face = face + 1  # 0 marks empty entries
    sel = _nonzero(count > 0)  # runs that cover a pixel
    width = 1  # step k expands columns [width // 2, width) of the runs longer than width // 2
    while sel.numel():
        n_pix = count.index_select(0, sel)  # (R_k,)
        first = start.index_select(0, sel)[:, None]  # (R_k, 1) int64
        z = depth.index_select(0, sel).double()[:, None]
        dz = slope.index_select(0, sel).double()[:, None]
        f = face.index_select(0, sel).long()[:, None]
        # columns past a run's end repeat its last pixel and key (no effect on the minimum)
        j = torch.minimum(torch.arange(width // 2, width, device=zbuf.device)[None], (n_pix - 1).long()[:, None]) \
            if width > 1 else first.new_zeros(1, 1)  # (R_k, c)
        key = torch.addcmul(z, dz, j).view(torch.int64) & ~_FACE_MASK
        key |= f
        zbuf.scatter_reduce_(0, (first + j).view(-1), key.view(-1), reduce="amin")
        sel = sel.index_select(0, _nonzero(n_pix > width))
        width *= 2


@torch.no_grad()
def rasterize_video(pix: torch.Tensor, faces: torch.Tensor, size: tuple[int, int], *,
                    draw: torch.Tensor | None = None) -> torch.Tensor:
    """Nearest face at every pixel centre of orthographic images (no gradient, scanline z-buffer).

    A pixel centre is covered by a face when it lies on the inner side of (or on) its three
    edges; the nearest covering face wins (the lower face index on a tie). Equal to
    :func:`avguide.render.raster.rasterize` (``orthographic=True``) except on pixel centres
    within float32 rounding of an edge or of another face's depth.

    Args:
        pix: (N, V, 3) float projected vertices (pixel x, pixel y, camera depth) of an
            orthographic camera (:func:`avguide.render.camera.project`).
        faces: (F, 3) int64, F < 2**24.
        size: (H, W), N * H * W < 2**31.
        draw: optional (N, F) bool, the faces to draw in each image (:func:`drawn_faces`);
            default all, in both orientations.
    Returns:
        (N, H, W) int64 face index, -1 where no face covers the pixel centre.
    """
    n, h, w = pix.shape[0], *size
    assert faces.shape[0] < (1 << _FACE_BITS) and n * h * w < 2 ** 31
    nf = faces.shape[0]
    x, y, z = _corners(pix, faces)  # (3, N, F) each
    # depth normalised per image to [4, 5]: far from 0, where rounding cannot make it negative
    zlo, zhi = z.amin((0, 2), keepdim=True), z.amax((0, 2), keepdim=True)  # (1, N, 1)
    z = 4.0 + (z - zlo) / (zhi - zlo).clamp_min(1e-30)
    area = _area(x, y)  # (N, F)
    row0, row1 = torch.ceil(y.amin(0) - 0.5), torch.floor(y.amax(0) - 0.5)
    col0, col1 = torch.ceil(x.amin(0) - 0.5), torch.floor(x.amax(0) - 0.5)
    keep = (row1 >= row0.clamp_min(0)) & (row0 <= h - 1) & (col1 >= col0.clamp_min(0)) & (col0 <= w - 1)
    keep &= (area != 0) & area.isfinite() & z.isfinite().all(0)
    if draw is not None:
        keep &= draw
    idx = _nonzero(keep.view(-1))  # (M,) into N*F
    if idx.numel() == 0:
        return torch.full((n, h, w), -1, dtype=torch.int64, device=pix.device)
    take = lambda t: t.reshape(-1, n * nf).index_select(1, idx)  # noqa: E731  (..., N, F) -> (..., M)
    x, y, z = take(x), take(y), take(z)  # (3, M) each
    img = idx // nf
    face = idx - img * nf
    vid = faces.to(pix.device).T.index_select(1, face)  # (3, M)
    # depth plane of each face: z = z0 + gx (px - x0) + gy (py - y0)
    d1x, d1y, d2x, d2y = x[1] - x[0], y[1] - y[0], x[2] - x[0], y[2] - y[0]
    dz1, dz2 = z[1] - z[0], z[2] - z[0]
    inv = 1.0 / (d1x * d2y - d2x * d1y)
    gx, gy = (dz1 * d2y - dz2 * d1y) * inv, (dz2 * d1x - dz1 * d2x) * inv
    traps = _trapezoids(x, y, vid, h)  # (8, 2M): the top halves, then the bottom halves
    rows = traps[6].int()  # (2M,) rows of each trapezoid
    first = rows.cumsum(0, dtype=torch.int32) - rows
    ints = torch.stack([traps[7].int() - first, (img * (h * w)).int().repeat(2), face.int().repeat(2)])  # (3, 2M)
    per_trap = torch.cat([traps[:6], torch.stack([z[0], x[0], y[0], gx, gy]).repeat(1, 2),
                          ints.view(torch.float32)])  # (14, 2M)
    per_pair = per_trap.index_select(1, _segment_ids(rows))  # (14, R)
    row_off, base, pface = per_pair[11:].view(torch.int32)  # (R,) each
    row = torch.arange(per_pair.shape[1], dtype=torch.int32, device=pix.device) + row_off  # (R,) pixel row
    py = row.float() + 0.5
    xu, yu, slope = per_pair[:6].view(3, 2, -1)  # (2, R) each: left and right edge
    cross = torch.addcmul(xu, py - yu, slope)  # (2, R) the edges' crossings of the row
    left = torch.ceil(cross[0] - 0.5).clamp_(0, w)
    right = torch.floor(cross[1] - 0.5).clamp_(-1, w - 1)
    count = (right - left + 1).clamp_min_(0).int()  # (R,) covered columns
    lo = left.int()
    z0, x0, y0, gx, gy = per_pair[6:11]
    # depth at the first covered pixel and its step along the row; a face seen edge-on can have
    # any slope, but covers at most one pixel centre per row (a step of the whole depth range
    # per pixel is as much as a covered run can have), and rounding must not take it far out
    zrow = (z0 + gx * ((left + 0.5) - x0) + gy * (py - y0)).clamp_(4.0, 5.0)
    start = (base + row * w + lo).long()  # (R,) first covered pixel
    zbuf = torch.full((n * h * w,), _EMPTY, dtype=torch.int64, device=pix.device)
    _splat_runs(zbuf, start, count, zrow, gx.clamp(-1.0, 1.0), pface)
    out = (zbuf & _FACE_MASK) - 1  # -1 where empty
    return out.view(n, h, w)
