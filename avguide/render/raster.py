"""Rasterisation: a z-buffer without gradient, then differentiable barycentrics.

The pipeline is the nvdiffrast one, in plain PyTorch (CPU or CUDA):

1. :func:`rasterize` (no gradient) finds, for every pixel centre, the nearest covering face.
   Faces are culled per image *before* any pixel is looked at (back-facing, degenerate, off
   screen, outside ``face_mask``). The coverage test is separable: each edge test
   ``B (py - y_k) >= A (px - x_k)`` compares a per-row term with a per-column term, so along a
   pixel row each edge keeps a prefix or a suffix of the columns. The rasteriser works in
   scanline order: it finds the exact covered column interval of every (face, row) pair and
   expands only the covered pixels (faces with a box of at most 2 x 2 pixels simply test them).
   Visibility takes two ``scatter_reduce(amin)``, of the float32 depths, then of the faces at
   exactly the nearest depth: the exact float32 depth decides, ties go to the lower face index
   (the order of the packed ``(depth bits << 24) | face`` keys of :func:`rasterize_reference`).
   Faces outside the image in every image of the batch are dropped before any per-image work.
   On CPU tensors, when numba is importable, :func:`rasterize` runs the compiled z-buffer of
   :mod:`avguide.render.jitzbuf` instead (the same float32 arithmetic per face and pixel, hence
   the same face ids; ``jit=False`` or :data:`USE_JIT` = False keeps the torch path).
2. :func:`barycentrics` recomputes the barycentric coordinates of each pixel centre in its
   visible face from the *differentiable* projected vertices, so gradients flow from pixels to
   vertex positions (perspective-correct for perspective cameras).
3. :func:`interpolate` blends any per-vertex attribute with them.

:func:`rasterize_reference` is the slow, simple definition (every kept face against every
pixel of its image, in small chunks) used by the tests and the benchmark; it shares the
per-face set-up and the per-pixel arithmetic with :func:`rasterize`, so both give identical
face ids. Visibility changes (which face covers a pixel) carry no gradient here; edge gradients
come from :func:`avguide.render.antialias.antialias`.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

_FACE_BITS = 24  # face index bits in the packed z-buffer key (32 depth bits above them)
_NO_FACE = torch.iinfo(torch.int64).max  # empty z-buffer entry

USE_JIT = True
"""Default of :func:`rasterize`'s ``jit``: CPU tensors go through the compiled z-buffer of
:mod:`avguide.render.jitzbuf` (the same face ids) when numba is importable. Set it to False to
run the torch path everywhere (the reference; ``bench/train_step.py --torch-raster`` compares both)."""


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


class _Drawn(NamedTuple):
    """The M (image, face) pairs that survive culling, structure-of-arrays (faces last)."""

    img: torch.Tensor  # (M,) int64 image index
    face: torch.Tensor  # (M,) int64 face index into ``faces``
    box: torch.Tensor  # (4, M) int64 pixel bounding box: x0, y0, width, height (>= 1)
    corner: torch.Tensor  # (2, 3, M) float32 corner x and y
    slope: torch.Tensor  # (2, 3, M) float32 sign(area) * (dx, dy) of edge k: corner k -> k + 1
    depth: torch.Tensor  # (3, M) float32 depth plane: value at corner 0, d/dx, d/dy

    def select(self, index: torch.Tensor | slice) -> "_Drawn":
        """The pairs at ``index`` (a slice or an (M',) int64 tensor)."""
        if isinstance(index, slice):
            return _Drawn(*(t[..., index] for t in self))
        return _Drawn(*(_take_last(t, index) for t in self))


def _take_last(t: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``t[..., index]`` as one ``index_select`` over the last dim (faster than one gather per row)."""
    return t.reshape(t.shape[:-1].numel(), t.shape[-1]).index_select(1, index).view(*t.shape[:-1], index.numel())


def _seen_faces(p: torch.Tensor, fs: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(F',) bool: face ``fs`` (F', 3) reaches into the image in some image of ``p`` (N, V, 3).

    O(N V + F) work that spares the O(N F) culling below the faces outside every image; a NaN
    corner counts as 0 here and is culled per image by :func:`_cull`.
    """
    xy = p[..., :2].nan_to_num(0.0)  # (N, V, 2)
    lo, hi = xy.amin(0), xy.amax(0)  # (V, 2) over the images
    flo = torch.minimum(torch.minimum(lo[fs[:, 0]], lo[fs[:, 1]]), lo[fs[:, 2]])  # (F', 2)
    fhi = torch.maximum(torch.maximum(hi[fs[:, 0]], hi[fs[:, 1]]), hi[fs[:, 2]])
    return (fhi[:, 0] >= 0.5) & (flo[:, 0] <= w - 0.5) & (fhi[:, 1] >= 0.5) & (flo[:, 1] <= h - 0.5)


def _cull(planes: torch.Tensor, fs: torch.Tensor, h: int, w: int, cull_backfaces: bool
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """keep (N, F') bool: (image, face) pairs covering some pixel centre's box, front-facing when
    culling back faces; and boxes (4, N*F') float32 x0, y0, x1, y1 (pixel bounds, inclusive).
    ``planes``: (3, N, V) float32 projected x, y, depth planes (contiguous)."""
    # corner coordinates of every (image, face), one contiguous (N, F') tensor each, from one gather
    n = planes.shape[1]
    xy = planes[:2].reshape(2 * n, planes.shape[2]).index_select(1, fs.T.reshape(-1)).view(2, n, 3, fs.shape[0])  # (2, N, 3, F')
    (x0, x1, x2), (y0, y1, y2) = xy[0].unbind(1), xy[1].unbind(1)
    # twice the signed screen area; a counter-clockwise face (seen by the camera) is clockwise
    # in the y-down image, so front faces have area < 0
    area = _edge(x0, y0, x1, y1, x2, y2)  # (N, F')
    bx0 = torch.ceil(torch.minimum(torch.minimum(x0, x1), x2) - 0.5).clamp_min(0)
    bx1 = torch.floor(torch.maximum(torch.maximum(x0, x1), x2) - 0.5).clamp_max(w - 1)
    by0 = torch.ceil(torch.minimum(torch.minimum(y0, y1), y2) - 0.5).clamp_min(0)
    by1 = torch.floor(torch.maximum(torch.maximum(y0, y1), y2) - 0.5).clamp_max(h - 1)
    keep = (bx1 >= bx0) & (by1 >= by0) & (area != 0) & torch.isfinite(area)
    if cull_backfaces:
        keep = keep & (area < 0)
    return keep, torch.stack([bx0, by0, bx1, by1]).view(4, -1)


def _face_planes(planes: torch.Tensor, fs: torch.Tensor, boxf: torch.Tensor, idx: torch.Tensor, orthographic: bool):
    """Edges and depth plane of the kept pairs ``idx`` (M,) into N*F' (``planes``: (3, N, V) as
    in :func:`_cull`).

    Returns:
        img, j (M,) int64 (image, row of ``fs``), box (4, M) int64 x0, y0, width, height, and the
        :class:`_Drawn` ``corner``, ``slope``, ``depth`` fields; ok (M,) bool (finite depth, and in
        front of a perspective camera).
    """
    nf, v = fs.shape[0], planes.shape[2]
    img = idx // nf
    j = idx - img * nf
    box = boxf.index_select(1, idx).long()  # (4, M)
    box = torch.cat([box[:2], box[2:] - box[:2] + 1])  # x1, y1 -> width, height
    corners = fs.index_select(0, j).T + img * v  # (3, M) columns of the planes as (3, N*V)
    xyz = planes.view(3, -1).index_select(1, corners.reshape(-1)).view(3, 3, -1)  # (3 coords, 3 corners, M)
    x, y, z = xyz.unbind(0)  # (3 corners, M) each, contiguous
    ok = torch.isfinite(z).all(0)
    if not orthographic:
        ok = ok & (z > 0).all(0)
    a = _edge(x[0], y[0], x[1], y[1], x[2], y[2])  # (M,) same values as the culling's area
    s = torch.where(a < 0, -1.0, 1.0)  # inside: sign(area) * edge >= 0 for all edges
    slope = torch.stack([(x.roll(-1, 0) - x) * s, (y.roll(-1, 0) - y) * s])  # (2, 3, M)
    val = z if orthographic else -1.0 / z  # linear in screen space, smaller = nearer
    d1x, d1y, d2x, d2y = x[1] - x[0], y[1] - y[0], x[2] - x[0], y[2] - y[0]
    dz1, dz2 = val[1] - val[0], val[2] - val[0]
    gx = (dz1 * d2y - dz2 * d1y) / a
    gy = (dz2 * d1x - dz1 * d2x) / a
    return img, j, box, xyz[:2], slope, torch.stack([val[0], gx, gy]), ok


def _setup(pix: torch.Tensor, faces: torch.Tensor, size: tuple[int, int], orthographic: bool,
           cull_backfaces: bool, face_mask: torch.Tensor | None, kernel=lambda fn: fn) -> _Drawn:
    """Cull faces per image and precompute each survivor's bounding box, edges and depth plane.

    ``kernel(fn)`` returns what runs each pure piece (:mod:`avguide.render.compiled` passes its
    compiled versions); the ``nonzero`` calls between them stay here.
    """
    n = pix.shape[0]
    h, w = size
    dev = pix.device
    p = pix.detach().float()
    fidx = torch.arange(faces.shape[0], device=dev)
    if face_mask is not None:
        fidx = face_mask.to(dev).nonzero(as_tuple=True)[0]
    fs = faces.to(dev).index_select(0, fidx)  # (F', 3)
    if n > 1:
        seen = kernel(_seen_faces)(p, fs, h, w).nonzero().squeeze(1)
        fidx, fs = fidx.index_select(0, seen), fs.index_select(0, seen)
    planes = p.permute(2, 0, 1).contiguous()  # (3, N, V) x, y, depth: the gathers below read rows
    keep, boxf = kernel(_cull)(planes, fs, h, w, cull_backfaces)
    idx = keep.view(-1).nonzero().squeeze(1)  # (M,) into N*F'
    img, j, box, corner, slope, depth, ok = kernel(_face_planes)(planes, fs, boxf, idx, orthographic)
    drawn = _Drawn(img, fidx.index_select(0, j), box, corner, slope, depth)
    return drawn if bool(ok.all()) else drawn.select(ok.nonzero().squeeze(1))


def _row_col_terms(d: _Drawn, py: torch.Tensor, px: torch.Tensor, row_ok: torch.Tensor, col_ok: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Separable edge and depth terms of M faces at R pixel rows and C pixel columns.

    Edge k covers pixel (py, px) when ``rows[k, r] >= cols[k, c]``; the depth there is
    ``zrow[r] + zcol[c]``. Rows/columns outside the face's box never pass edge 0.

    Args:
        d: M drawn faces.
        py: (R, M) float32 pixel centre rows; px: (C, M) pixel centre columns.
        row_ok: (R, M) bool, row inside the box; col_ok: (C, M) bool.
    Returns:
        rows (3, R, M), cols (3, C, M), zrow (R, M), zcol (C, M), float32.
    """
    cx, cy = d.corner[0], d.corner[1]  # (3, M)
    rows = d.slope[0, :, None] * (py[None] - cy[:, None])  # (3, R, M)
    cols = d.slope[1, :, None] * (px[None] - cx[:, None])  # (3, C, M)
    rows[0] = torch.where(row_ok, rows[0], float("-inf"))
    cols[0] = torch.where(col_ok, cols[0], float("inf"))
    zrow = d.depth[2] * (py - cy[0]) + d.depth[0]  # (R, M)
    zcol = d.depth[1] * (px - cx[0])  # (C, M)
    return rows, cols, zrow, zcol


def _keys(depth: torch.Tensor, face: torch.Tensor) -> torch.Tensor:
    """Packed z-buffer keys: order-preserving int of the float32 depth, then the face index.

    Args:
        depth: (Q,) float32 (smaller = nearer); face: (Q,) int64 < 2**24.
    Returns:
        (Q,) int64 in [0, 2**56), ordered by (depth, face).
    """
    bits = (depth + 0.0).view(torch.int32).long()  # + 0.0 turns -0.0 into +0.0
    bits = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits) + (1 << 31)  # monotone in depth
    return (bits << _FACE_BITS) | face


def _face_of(zbuf: torch.Tensor) -> torch.Tensor:
    """Face index from z-buffer keys, -1 for empty entries."""
    return torch.where(zbuf == _NO_FACE, -1, zbuf & ((1 << _FACE_BITS) - 1))


def _check(pix: torch.Tensor, faces: torch.Tensor) -> None:
    assert pix.dim() == 3 and pix.shape[-1] == 3, f"pix must be (N, V, 3), got {tuple(pix.shape)}"
    assert faces.shape[0] < (1 << _FACE_BITS), "too many faces for the packed z-buffer key"


def _edge_bounds(edge: torch.Tensor, row: torch.Tensor, x0: torch.Tensor, x1: torch.Tensor,
                 far: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact covered column interval of R (face, pixel row) pairs: the test of :func:`_row_col_terms`.

    For a fixed row, edge k covers column c when ``a_k * (px_c - cx_k) <= r_k`` (float32, ``a_k =
    slope[1, k]``, ``r_k`` the row term). ``px_c - cx_k`` is monotone in c and so is the product,
    hence each edge keeps a prefix (a > 0), a suffix (a < 0) or all/none (a = 0) of the row. While
    corner coordinates stay below 2**16 px and |a| >= 2**-20, the float32 crossing ``cx_k + r_k /
    a_k - 1/2`` (relative error ~2**-23) is within 1/32 px of the real one, the exact float32 test
    flips within 1/64 px of it, so the rounded crossing is within one column of the exact bound
    and testing two columns next to it gives that bound (column indices are small integers, exact
    in float32). A crossing far outside the box stays outside, where the bound is clipped. Rows
    of the other faces (huge coordinates, horizontal or nearly horizontal edges) are tested column
    by column.

    Args:
        edge: (6, 3, R) float32, per pair the corner x, corner y, ``slope[0]``, ``slope[1]`` (a),
            ``1 / a`` (0 on the faces tested column by column) and ``-inf`` if a > 0 else ``inf``
            of its face's edges k.
        row: (R,) int32 pixel row; x0, x1: (R,) int32 first and last column of the face's box.
        far: (R',) int64 the pairs whose face is tested column by column.
    Returns:
        lo, hi: (R,) int32 first and last covered column (hi < lo: none).
    """
    cx, cy, sx, a, inv_a, cap = edge  # (3, R) each
    r = ((row.float() + 0.5) - cy).mul_(sx)  # (3, R) float32, as ``rows`` in _row_col_terms

    def covers(col: torch.Tensor) -> torch.Tensor:  # (3, R) bool, edge k covers column col[k]
        return (col + 0.5).sub_(cx).mul_(a) <= r  # the float32 ops of a * ((col + 0.5) - cx)

    sg = torch.sign(a)  # (3, R), +-1 (0 only on far faces)
    est = torch.addcmul(cx - 0.5, r, inv_a).round_()  # within one column of the bound (finite: |r| < 2**40)
    # covers() is monotone along the row and flips within one column of est: the last covered
    # column (a > 0) or the first (a < 0) is est - sg + sg * (covers(est) + covers(est + sg))
    # (bool -> int32 is several times cheaper than bool -> float32; the sum is exact)
    step = covers(est).int()  # (3, R) int32
    step += covers(est + sg).int()
    bound = est.add_(sg * step.sub_(1))  # (3, R) in place: fewer (3, R) temporaries alive at once
    del step
    lo_k = torch.minimum(bound, cap)  # a > 0: no lower bound from this edge (-inf)
    hi_k = torch.maximum(bound, cap, out=bound)  # a < 0: no upper bound (inf)
    f0, f1 = x0.float(), x1.float()
    lo = torch.maximum(torch.maximum(lo_k[0], lo_k[1]), lo_k[2]).clamp_(f0, f1 + 1).int()
    hi = torch.minimum(torch.minimum(hi_k[0], hi_k[1]), hi_k[2]).clamp_(f0 - 1, f1).int()
    if far.numel() > 0:
        cols = x0[far][:, None] + torch.arange(int((x1 - x0)[far].max()) + 1, device=row.device)  # (R', W')
        px = (cols.float() + 0.5)[None]  # (1, R', W')
        inside = (a[:, far, None] * (px - cx[:, far, None]) <= r[:, far, None]).all(0)  # (R', W') an interval
        inside &= cols <= x1[far][:, None]
        n_in = inside.sum(1, dtype=torch.int32)
        first = inside.int().argmax(1).int()
        lo[far] = x0[far] + torch.where(n_in > 0, first, 1)
        hi[far] = x0[far] + first + n_in - 1
    return lo, hi


def _small_boxes(d: _Drawn, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Covered pixels of faces whose box is at most 2 x 2 (4 candidates each).

    Returns:
        pixel (Q,) int64 flat index into N*H*W, depth (Q,) float32 and face (Q,) int32.
    """
    off = torch.arange(2, device=d.img.device)[:, None]  # (2, 1)
    row, col = d.box[1] + off, d.box[0] + off  # (2, Ms) each; outside the box: never covered
    rows, cols, zrow, zcol = _row_col_terms(d, row.float() + 0.5, col.float() + 0.5, off < d.box[3], off < d.box[2])
    inside = (rows[0, :, None] >= cols[0, None]) & (rows[1, :, None] >= cols[1, None])
    inside &= rows[2, :, None] >= cols[2, None]  # (2, 2, Ms)
    idx = inside.view(-1).nonzero().squeeze(1)  # (Q,)
    m = d.img.numel()
    depth = (zrow[:, None] + zcol[None]).view(-1).index_select(0, idx)
    pixel = (((d.img * h + row) * w)[:, None] + col[None]).view(-1).index_select(0, idx)
    return pixel, depth, d.face.index_select(0, idx % m).int()


def _segment_ids(count: torch.Tensor) -> torch.Tensor:
    """``repeat_interleave(count)`` as int32 (segment ``i`` repeated ``count[i]`` times).

    A +1 at every segment end and an int32 prefix sum: ~2.5x faster than ``repeat_interleave``
    on CPU.

    Args:
        count: (M,) int32 or int64 >= 0, total < 2**31.
    Returns:
        (sum(count),) int32.
    """
    ends = count.cumsum(0)  # (M,)
    total = int(ends[-1]) if count.numel() else 0
    mark = torch.zeros(total + 1, dtype=torch.int32, device=count.device)  # slot total: ends of empty tails
    mark.index_add_(0, ends, torch.ones_like(ends, dtype=torch.int32))
    return mark[:total].cumsum(0, dtype=torch.int32)


def _row_intervals(d: _Drawn, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The covered columns of every (face, box row) pair of M >= 1 faces (:func:`_edge_bounds`).

    A function of its own so that its (face, row) temporaries are freed before the covered
    pixels are expanded (a lower peak of memory per call: fewer fresh pages to fault in).

    Returns:
        per_pair (6, R) float32: column offset (int32 bits; the first covered column minus the
        pair's first pixel in the output), first pixel of the row in N*H*W (int32 bits), face
        (int32 bits), depth at the row, depth d/dx, corner 0 x; and count (R,) int32 covered
        pixels of each pair.
    """
    dev = d.img.device
    sx, a = d.slope  # (3, M) each
    # faces the estimate cannot handle: horizontal edges (a = 0), huge coordinates, tiny slopes
    far = (d.corner.abs() >= 2.0 ** 16).flatten(0, 1).any(0) | (a.abs() < 2.0 ** -20).any(0)  # (M,)
    inv_a = torch.where(far, 0.0, 1.0 / a)  # (3, M)
    cap = torch.where(a > 0, float("-inf"), float("inf"))  # (3, M)
    # (face, row) pairs: every row of every box
    height = d.box[3]
    pair = _segment_ids(height)  # (R,) face of each pair
    first_pair = height.cumsum(0) - height  # (M,)
    x0, y0, bw = d.box[0], d.box[1], d.box[2]
    ints = torch.stack([y0 - first_pair, x0, x0 + bw - 1, d.img * (h * w), d.face]).int()  # (5, M)
    # two gathers: no single (26, R) tensor (at batch 32 it passes glibc's 32 MiB mmap threshold,
    # and every call would page-fault all of it in afresh)
    edge = torch.cat([d.corner[0], d.corner[1], sx, a, inv_a, cap]).index_select(1, pair).view(6, 3, -1)  # (6, 3, R)
    per_pair = torch.cat([d.depth, ints.view(torch.float32)]).index_select(1, pair)  # (8, R)
    depth = per_pair[:3]  # (3, R)
    row_off, px0, px1, base, face = per_pair[3:].view(torch.int32)  # (R,) each
    row = row_off + torch.arange(pair.numel(), device=dev, dtype=torch.int32)  # (R,)
    far_pairs = far.index_select(0, pair).nonzero().squeeze(1) if bool(far.any()) else pair[:0]
    lo, hi = _edge_bounds(edge, row, px0, px1, far_pairs)  # (R,) each
    count = (hi - lo + 1).clamp_min_(0)  # (R,)
    zrow = depth[2] * ((row.float() + 0.5) - edge[1, 0]) + depth[0]  # (R,) as in _row_col_terms
    first_px = count.cumsum(0, dtype=torch.int32) - count  # (R,)
    return torch.stack([(lo - first_px).view(torch.float32), (base + row * w).view(torch.float32),
                        face.view(torch.float32), zrow, depth[1], edge[0, 0]]), count


def _scanline(d: _Drawn, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Covered pixels of M >= 1 faces, row by row (:func:`_row_intervals`).

    The per-face values reach the (face, row) pairs, and the per-pair values the covered
    pixels, in one float32 ``index_select`` each (integers travel as the bits of int32: the
    float32 kernel is several times faster than the integer ones).

    Returns:
        pixel (Q,) int64 flat index into N*H*W, depth (Q,) float32 and face (Q,) int32.
    """
    per_pair, count = _row_intervals(d, h, w)  # (6, R), (R,)
    owner = _segment_ids(count)  # (Q,) pair of each covered pixel
    col_off, px_base, face, zrow, dzdx, cx0 = per_pair.index_select(1, owner)  # (Q,) each
    # the covered columns of each pair are consecutive; depth as in _row_col_terms: zrow + zcol
    col = col_off.view(torch.int32) + torch.arange(owner.numel(), device=d.img.device, dtype=torch.int32)  # (Q,)
    z = zrow + dzdx * ((col.float() + 0.5) - cx0)
    return (px_base.view(torch.int32) + col).long(), z, face.view(torch.int32)


@torch.no_grad()
def rasterize(pix: torch.Tensor, faces: torch.Tensor, size: tuple[int, int], *, orthographic: bool = True,
              cull_backfaces: bool = True, face_mask: torch.Tensor | None = None,
              jit: bool | None = None) -> torch.Tensor:
    """Nearest visible face at every pixel centre (hard z-buffer, no gradient).

    A pixel centre is covered by a face when it lies in the face's pixel bounding box and on
    the inner side of (or on) its three edges; the nearest covering face wins (exact float32
    depth; the lower face index on a tie). Identical to :func:`rasterize_reference`.

    Faces whose pixel box is at most 2 x 2 test their (up to) four candidate pixels
    (:func:`_small_boxes`); for the others, every (face, box row) pair gets its exact covered
    column interval in a few vectorised steps (:func:`_edge_bounds`) and the intervals are
    expanded into the covered pixels only (scanline order). Two ``scatter_reduce(amin)`` (depth,
    then face among the nearest) resolve visibility. The number of tensor operations does not depend on the
    batch size or the face sizes.

    Args:
        pix: (N, V, 3) float, projected vertices from :func:`avguide.render.camera.project`
            (pixel x, pixel y, camera depth z). Detached internally, tested in float32.
        faces: (F, 3) int64 vertex indices, F < 2**24. A face is front-facing when its vertices
            run counter-clockwise seen from the camera (the usual outward orientation).
        size: (H, W) image size.
        orthographic: depth is interpolated linearly in screen space (orthographic) or as 1/z
            (perspective: faces with a vertex at z <= 0 are dropped).
        cull_backfaces: skip back-facing faces (halves the work on closed, consistently
            oriented meshes; turn off for open or inconsistently oriented ones).
        face_mask: optional (F,) bool, only these faces are drawn (a caller-side cache, e.g.
            faces near the lips for a lip camera).
        jit: CPU tensors run :func:`avguide.render.jitzbuf.zbuffer` (numba: the same face ids, the
            same float32 arithmetic per pixel, several times faster) when numba is importable;
            False runs the torch path below. None: :data:`USE_JIT`.
    Returns:
        (N, H, W) int64: index into ``faces`` of the visible face, -1 where no face covers the
        pixel centre.
    """
    _check(pix, faces)
    n, h, w = pix.shape[0], *size
    assert n * h * w < 2 ** 31, "the scanline's int32 pixel indices need N*H*W < 2**31"
    dev = pix.device
    if (USE_JIT if jit is None else jit) and dev.type == "cpu":
        from avguide.render import jitzbuf  # imports numba: only when rasterising

        if jitzbuf.available():
            return jitzbuf.zbuffer(pix, faces, size, orthographic=orthographic, cull_backfaces=cull_backfaces,
                                   face_mask=face_mask)
    d = _setup(pix, faces, size, orthographic, cull_backfaces, face_mask)
    face_id = torch.full((n * h * w,), _NO_FACE, dtype=torch.int64, device=dev)
    if d.img.numel() == 0:
        return _face_of(face_id).view(n, h, w)
    # faces with at most 2 x 2 candidate pixels: test them all; the others in scanline order
    small = (d.box[2] <= 2) & (d.box[3] <= 2)
    parts = [_small_boxes(d.select(small.nonzero().squeeze(1)), h, w)]
    large = (~small).nonzero().squeeze(1)
    if large.numel() > 0:
        parts.append(_scanline(d.select(large), h, w))
    pixel, depth, face = (torch.cat(t) for t in zip(*parts))  # (Q,) each
    # visibility in two passes, the order of the packed keys of rasterize_reference: the
    # nearest depth at each pixel, then the lowest face among the fragments at exactly that depth
    zbuf = torch.full((n * h * w,), float("inf"), device=dev).scatter_reduce_(0, pixel, depth, reduce="amin")
    front = (depth == zbuf.index_select(0, pixel)).nonzero().squeeze(1)  # (Q',)
    face_id.scatter_reduce_(0, pixel.index_select(0, front), face.index_select(0, front).long(), reduce="amin")
    return _face_of(face_id).view(n, h, w)


@torch.no_grad()
def rasterize_reference(pix: torch.Tensor, faces: torch.Tensor, size: tuple[int, int], *,
                        orthographic: bool = True, cull_backfaces: bool = True,
                        face_mask: torch.Tensor | None = None, chunk: int = 256) -> torch.Tensor:
    """Slow, simple :func:`rasterize`: every kept face against every pixel of its image.

    For tests and benchmarks only. Same arguments and result as :func:`rasterize` (it shares
    the culling, bounding boxes, edge and depth arithmetic), but enumerates no candidates:
    chunks of ``chunk`` faces of one image are tested against the whole image and reduced with
    ``amin``.

    Returns:
        (N, H, W) int64 face index, -1 on background.
    """
    _check(pix, faces)
    n, h, w = pix.shape[0], *size
    dev = pix.device
    d = _setup(pix, faces, size, orthographic, cull_backfaces, face_mask)
    zbuf = torch.full((n, h, w), _NO_FACE, dtype=torch.int64, device=dev)
    ys = torch.arange(h, device=dev)[:, None]  # (H, 1)
    xs = torch.arange(w, device=dev)[:, None]  # (W, 1)
    for k in range(n):
        dk = d.select((d.img == k).nonzero().squeeze(1))
        for s in range(0, dk.img.numel(), chunk):
            db = dk.select(slice(s, s + chunk))
            x0, y0, bw, bh = db.box
            rows, cols, zrow, zcol = _row_col_terms(db, (ys.float() + 0.5).expand(h, x0.numel()),
                                                    (xs.float() + 0.5).expand(w, x0.numel()),
                                                    (ys >= y0) & (ys < y0 + bh), (xs >= x0) & (xs < x0 + bw))
            inside = (rows[:, :, None] >= cols[:, None]).all(0)  # (H, W, m)
            key = _keys((zrow[:, None] + zcol[None]).reshape(-1), db.face.repeat(h * w)).view(h, w, -1)
            key = torch.where(inside, key, _NO_FACE)
            zbuf[k] = torch.minimum(zbuf[k], key.amin(-1))
    return _face_of(zbuf)


def covered_pixels(face_id: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The covered pixels of a face-id image, as a compact list.

    Args:
        face_id: (N, H, W) int64 from :func:`rasterize`.
    Returns:
        pixel (P,) int64 flat index into N*H*W of each covered pixel (ascending) and face (P,)
        int64 its face index.
    """
    flat = face_id.reshape(-1)
    pixel = (flat >= 0).nonzero(as_tuple=True)[0]
    return pixel, flat[pixel]


def corner_index(faces: torch.Tensor, pixel: torch.Tensor, face: torch.Tensor, n_verts: int,
                 size: tuple[int, int]) -> torch.Tensor:
    """Rows of the three corners of each pixel's face in per-image vertex data flattened to N*V.

    Args:
        faces: (F, 3) int64; pixel: (P,) flat pixel index into N*H*W; face: (P,) face index.
        n_verts: V; size: (H, W).
    Returns:
        (3, P) int64: corner k of pixel p is row ``img(p) * V + faces[face[p], k]``.
    """
    img = pixel // (size[0] * size[1])
    return faces.index_select(0, face).T + img * n_verts  # (3, P)


def bary_planes(pix_planes: torch.Tensor, corners: torch.Tensor, pixel: torch.Tensor, size: tuple[int, int], *,
                orthographic: bool = True) -> torch.Tensor:
    """Differentiable barycentrics of pixel centres, channels-first (the fast layout on CPU).

    Args:
        pix_planes: (3, N*V) float projected vertices (x, y, depth rows), with gradient.
        corners: (3, P) int64 from :func:`corner_index`.
        pixel: (P,) int64 flat pixel index into N*H*W.
        size: (H, W).
        orthographic: False gives perspective-correct (3D) barycentrics.
    Returns:
        (3, P) float weights of the three corners (sum 1).
    """
    h, w = size
    flat = corners.reshape(-1)
    x = pix_planes[0].index_select(0, flat).view(3, -1)  # (3 corners, P)
    y = pix_planes[1].index_select(0, flat).view(3, -1)
    px = (pixel % w).to(pix_planes.dtype) + 0.5
    py = ((pixel // w) % h).to(pix_planes.dtype) + 0.5
    ax, ay, bx, by, cx, cy = x[0], y[0], x[1], y[1], x[2], y[2]
    area = _edge(ax, ay, bx, by, cx, cy)
    w0 = _edge(bx, by, cx, cy, px, py) / area
    w1 = _edge(cx, cy, ax, ay, px, py) / area
    w2 = 1.0 - w0 - w1
    bary = torch.stack([w0, w1, w2])  # (3, P)
    if not orthographic:
        bary = bary / pix_planes[2].index_select(0, flat).view(3, -1)
        bary = bary / bary.sum(0, keepdim=True)
    return bary


def pixel_barycentrics(pix: torch.Tensor, faces: torch.Tensor, pixel: torch.Tensor, face: torch.Tensor,
                       size: tuple[int, int], *, orthographic: bool = True) -> torch.Tensor:
    """Differentiable barycentric coordinates of a list of pixel centres in given faces.

    Args:
        pix: (N, V, 3) float projected vertices, with gradient.
        faces: (F, 3) int64.
        pixel: (P,) int64 flat pixel index into N*H*W (e.g. from :func:`covered_pixels`).
        face: (P,) int64 face covering each pixel.
        size: (H, W) image size.
        orthographic: False gives perspective-correct (3D) barycentrics.
    Returns:
        (P, 3) float weights of the face's three corners (sum 1). Gradient flows to ``pix``.
    """
    n, v, _ = pix.shape
    planes = pix.reshape(n * v, 3).T.contiguous()  # (3, N*V)
    return bary_planes(planes, corner_index(faces, pixel, face, v, size), pixel, size, orthographic=orthographic).T


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
    pixel, face = covered_pixels(face_id)
    bary = pixel_barycentrics(pix, faces, pixel, face, (h, w), orthographic=orthographic)  # (P, 3)
    out = bary.new_zeros(n * h * w, 3).index_put((pixel,), bary)
    return out.view(n, h, w, 3)


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
