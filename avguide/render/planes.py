"""Covered-pixel shading from per-face attribute planes (the fast path of ``render_mesh``).

Inside a face, barycentric interpolation of a per-vertex attribute is a plane in screen space
(orthographic), or the ratio of two planes (perspective-correct: attribute / z over 1 / z). So
the planes of the camera-space normals and the albedo are computed once per shown (image, face)
pair (:func:`shown_faces`, :func:`plane_coefficients`), and every covered pixel evaluates its
face's planes and shades (:func:`shade_planes`): the images and gradients of barycentrics +
interpolation + :func:`avguide.render.shading.shade`, with a hand-written backward pass (one
pass over the covered pixels, one ``index_add`` into the planes).
"""

from __future__ import annotations

import torch

from avguide.render.shading import Lights


def shown_faces(pixel: torch.Tensor, face: torch.Tensor, n_faces: int, hw: int
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The distinct (image, face) pairs that some pixel shows, and each pixel's pair.

    Args:
        pixel: (P,) int64 flat pixel index into N*H*W; face: (P,) int64 its face.
        n_faces: F; hw: H * W.
    Returns:
        img (S,) and face (S,) int64 of the S shown pairs (sorted by image, then face), and
        row (P,) int64: the pair of each pixel.
    """
    key = (pixel // hw) * n_faces + face  # (P,) into N*F
    used = torch.zeros(int(key.max()) + 1 if key.numel() else 0, dtype=torch.bool, device=pixel.device)
    used[key] = True
    pair = used.nonzero().squeeze(1)  # (S,)
    slot = torch.empty(used.numel(), dtype=torch.int64, device=pixel.device)
    slot[pair] = torch.arange(pair.numel(), device=pixel.device)
    img = pair // n_faces
    return img, pair - img * n_faces, slot.index_select(0, key)


def plane_coefficients(x: torch.Tensor, y: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Screen-space planes through per-corner values: ``q(px, py) = c0 + cx px + cy py``.

    Args:
        x, y: (3, S) float corner pixel coordinates of S faces (non-degenerate).
        q: (K, 3, S) float K values at the corners.
    Returns:
        (3, K, S) float: c0, cx, cy of each value's plane (differentiable).
    """
    # unbind, not indexing: one backward node per tensor (each indexing's backward would
    # allocate and fill a zero tensor of the whole input)
    (x0, x1, x2), (y0, y1, y2), (q0, q1, q2) = x.unbind(0), y.unbind(0), q.unbind(1)  # (S,), (K, S)
    d1x, d1y, d2x, d2y = x1 - x0, y1 - y0, x2 - x0, y2 - y0  # (S,) each
    inv = 1.0 / (d1x * d2y - d2x * d1y)
    dq1, dq2 = q1 - q0, q2 - q0  # (K, S)
    gx = (dq1 * d2y - dq2 * d1y) * inv
    gy = (dq2 * d1x - dq1 * d2x) * inv
    return torch.stack([q0 - gx * x0 - gy * y0, gx, gy])  # (3, K, S)


class _ShadePlanes(torch.autograd.Function):
    """Evaluate planes at pixels, Lambert-shade; backward by hand (see :func:`shade_planes`)."""

    @staticmethod
    def forward(ctx, coef, row, px, py, perspective, dirs, inten, ambient):
        k = coef.shape[0] // 3
        g = coef.index_select(1, row)  # (3K, P)
        val = torch.addcmul(g[:k], g[k:2 * k], px).addcmul_(g[2 * k:], py)  # (K, P) c0 + cx px + cy py
        den = val[-1] if perspective else None
        if perspective:
            val = val[:-1] / den
        n, a = val[:3], val[3:]  # (3, P), (C, P)
        sq = n.square().sum(0)  # (P,)
        norm = sq.clamp_min(1e-24).sqrt()  # as in shade()
        nh = n / norm
        dots = -(dirs @ nh)  # (L, P) cosine of each light
        light = ambient + inten @ dots.clamp_min(0.0)  # (P,)
        ctx.save_for_backward(row, px, py, val, den, nh, norm, sq, dots, light, dirs, inten)
        ctx.coef_shape = coef.shape
        return a * light

    @staticmethod
    def backward(ctx, grad):
        row, px, py, val, den, nh, norm, sq, dots, light, dirs, inten = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return (None,) * 8
        kv = val.shape[0]  # values after the perspective division (3 + C)
        g = grad.new_empty(3, ctx.coef_shape[0] // 3, grad.shape[1])  # (3, K, P): d/dc0, d/dcx, d/dcy
        gv = g[0]  # (K, P) gradient w.r.t. the plane values
        torch.mul(grad, light, out=gv[3:kv])  # albedo
        g_light = (grad * val[3:]).sum(0)  # (P,)
        g_dots = (dots >= 0) * (inten[:, None] * g_light)  # (L, P), clamp_min passes gradient at 0
        g_nh = -(dirs.T @ g_dots)  # (3, P)
        radial = (g_nh * nh).sum(0) * (sq >= 1e-24)  # no radial term where the norm is clamped
        torch.div(g_nh - nh * radial, norm, out=gv[:3])  # normal
        if den is not None:  # val = num / den
            torch.div(-(gv[:kv] * val).sum(0), den, out=gv[kv])
            gv[:kv] /= den
        torch.mul(gv, px, out=g[1])
        torch.mul(gv, py, out=g[2])
        grad_coef = g.new_zeros(ctx.coef_shape).index_add_(1, row, g.view(ctx.coef_shape[0], -1))
        return grad_coef, None, None, None, None, None, None, None


def shade_planes(coef: torch.Tensor, row: torch.Tensor, px: torch.Tensor, py: torch.Tensor,
                 lights: Lights = Lights(), *, perspective: bool = False) -> torch.Tensor:
    """Shaded colour of P pixels from their faces' planes of normals and albedo.

    Equal to evaluating the planes, then :func:`avguide.render.shading.shade` (Lambert with
    directional lights and ambient, normals re-normalised), with the gradient w.r.t. ``coef``
    written by hand (not twice differentiable).

    Args:
        coef: (3, K, S) float plane coefficients from :func:`plane_coefficients` of K = 3 + C
            values (camera-space normal, then albedo) or, for ``perspective``, K = 4 + C values:
            normal / z, albedo / z, 1 / z.
        row: (P,) int64 the plane set (face) of each pixel, into S.
        px, py: (P,) float pixel centre coordinates.
        lights: camera-space lights.
        perspective: planes of value / z and 1 / z (perspective-correct interpolation).
    Returns:
        (C, P) float radiance ``albedo * (ambient + sum_k I_k max(0, n . -d_k))``.
    """
    d = torch.tensor(lights.directions, dtype=coef.dtype, device=coef.device)  # (L, 3)
    d = d / d.norm(dim=-1, keepdim=True)
    inten = torch.tensor(lights.intensities, dtype=coef.dtype, device=coef.device)  # (L,)
    flat = coef.reshape(3 * coef.shape[1], coef.shape[2])  # (3K, S)
    return _ShadePlanes.apply(flat, row, px, py, perspective, d, inten, lights.ambient)
