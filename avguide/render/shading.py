"""Shading: vertex normals from the vertices, Lambert lighting, albedo from part labels.

Everything is differentiable: normals are recomputed from the (moving) vertices, so a vertex
that tilts a lip surface changes its brightness and the gradient says so (the paper's code
detached the normals; docs/design.md section 2, point 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import torch


PART_COLORS: dict[str, tuple[float, float, float]] = {
    "skin": (0.80, 0.62, 0.52),
    "lips": (0.66, 0.38, 0.38),
    "teeth": (0.96, 0.94, 0.88),
    "tongue": (0.40, 0.15, 0.16),  # in the mouth's shadow: darker than the lips, lighter than the cavity
    "eyes": (0.92, 0.92, 0.92),
    "cavity": (0.16, 0.07, 0.07),
}
"""Linear RGB albedo per part: lips darker than skin, teeth bright, tongue (shaded by the mouth,
which Lambert shading cannot do) and cavity dark, so a lip reader sees the opening as in video."""


@dataclass(frozen=True)
class Lights:
    """Directional lights plus ambient, in camera space (x right, y down, z forward).

    Attributes:
        directions: one (x, y, z) per light, the direction the light *travels* (from the light
            towards the scene); normalised when used.
        intensities: one scalar per light.
        ambient: ambient intensity added to every lit pixel.
    """

    directions: tuple[tuple[float, float, float], ...] = ((0.35, 0.45, 1.0), (-0.6, 0.1, 0.8))
    intensities: tuple[float, ...] = (0.65, 0.25)
    ambient: float = 0.25


def vertex_normals(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Area-weighted unit vertex normals (differentiable).

    Args:
        verts: (N, V, 3) float positions.
        faces: (F, 3) int64, counter-clockwise seen from outside (normals point outwards).
    Returns:
        (N, V, 3) float unit normals (a vertex used by no face gets a zero vector).
    """
    a, b, c = verts[:, faces[:, 0]], verts[:, faces[:, 1]], verts[:, faces[:, 2]]  # (N, F, 3)
    fn = torch.linalg.cross(b - a, c - a, dim=-1)  # (N, F, 3), length = 2 * area
    vn = torch.zeros_like(verts)
    for k in range(3):
        vn = vn.index_add(1, faces[:, k], fn)
    return vn / vn.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def shade(normals: torch.Tensor, albedo: torch.Tensor, lights: Lights = Lights(), *, dim: int = -1) -> torch.Tensor:
    """Lambert shading with directional lights and ambient.

    Args:
        normals: (..., 3) float normals in camera space (need not be unit: they are normalised).
        albedo: (..., C) float albedo in [0, 1].
        lights: :class:`Lights` (camera space).
        dim: the vector / channel dimension of ``normals`` and ``albedo`` (0 for channels-first
            planes such as (3, P), the fast layout on CPU).
    Returns:
        (..., C) float radiance ``albedo * (ambient + sum_k I_k * max(0, n . -d_k))`` (channels
        along ``dim``).
    """
    n = normals / normals.square().sum(dim, keepdim=True).clamp_min(1e-24).sqrt()  # = norm.clamp_min(1e-12)
    d = torch.tensor(lights.directions, dtype=n.dtype, device=n.device)  # (K, 3)
    d = d / d.norm(dim=-1, keepdim=True)
    inten = torch.tensor(lights.intensities, dtype=n.dtype, device=n.device)  # (K,)
    if dim in (0, -n.dim()):
        lambert = torch.tensordot(-d, n, dims=([1], [0])).clamp_min(0.0)  # (K, ...)
        return albedo * (lights.ambient + torch.tensordot(inten, lambert, dims=([0], [0])))
    n = n.movedim(dim, -1)
    lambert = (n @ (-d).T).clamp_min(0.0)  # (..., K)
    return albedo * (lights.ambient + (lambert * inten).sum(-1, keepdim=True)).movedim(-1, dim)


def albedo_from_parts(vertex_part: torch.Tensor, part_names: tuple[str, ...] | list[str],
                      colors: dict[str, tuple[float, float, float]] | None = None) -> torch.Tensor:
    """Per-vertex albedo from a per-vertex part label.

    Args:
        vertex_part: (V,) integer part index per vertex, into ``part_names``.
        part_names: name of each part index, e.g. ("skin", "lips", "teeth", "tongue", "eyes",
            "cavity").
        colors: name -> RGB in [0, 1]; defaults to :data:`PART_COLORS`.
    Returns:
        (V, 3) float32 albedo.
    Raises:
        ValueError: a label is out of range or a part name has no colour.
    """
    colors = PART_COLORS if colors is None else colors
    missing = [p for p in part_names if p not in colors]
    if missing:
        raise ValueError(f"albedo_from_parts: no colour for part(s) {missing}; known: {sorted(colors)}")
    vp = torch.as_tensor(vertex_part).long()
    if vp.numel() and (int(vp.min()) < 0 or int(vp.max()) >= len(part_names)):
        raise ValueError(f"albedo_from_parts: part labels must be in [0, {len(part_names)}), "
                         f"got [{int(vp.min())}, {int(vp.max())}]")
    table = torch.tensor([colors[p] for p in part_names], dtype=torch.float32)  # (P, 3)
    return table[vp]


def head_albedo(head) -> torch.Tensor:
    """Per-vertex albedo of a head asset (anything with ``vertex_part`` and ``part_names``).

    Args:
        head: e.g. ``avguide.assets.head.load_head()``; ``head.vertex_part`` (V,) uint8 and
            ``head.part_names`` tuple of str.
    Returns:
        (V, 3) float32 albedo, see :func:`albedo_from_parts`.
    """
    return albedo_from_parts(torch.from_numpy(np.asarray(head.vertex_part, dtype=np.int64)), tuple(head.part_names))
