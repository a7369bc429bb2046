"""Fixture ``head``: ``avguide.assets.head.load_head()`` when it exists, else the shared CC0 extraction;
fixture ``soup``: random triangle soups for the rasteriser's equivalence tests; fixture ``jaw_batch``:
batches of jittered jaw-opening sequences with their lip cameras and render assets.

The fallback labels parts from the mesh itself: the largest connected component is skin, the
small ones eyes (off-centre), tongue (largest centred) and teeth; the shared lip indices are
lips; body vertices near the mouth that no outside camera sees are the mouth cavity.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

NPZ = Path(__file__).resolve().parents[2].parent / "shared" / "assets" / "makehuman_head" / "mh_head_cc0.npz"
PARTS = ("skin", "lips", "teeth", "tongue", "eyes", "cavity")


@dataclass
class HeadData:
    vertices: torch.Tensor  # (V, 3) float32 metres
    faces: torch.Tensor  # (F, 3) int64
    jaw_open: torch.Tensor  # (V, 3) float32 blendshape delta
    lips: torch.Tensor  # (Lv,) int64
    vertex_part: np.ndarray  # (V,) uint8
    part_names: tuple[str, ...]


def _components(n_verts: int, faces: np.ndarray) -> np.ndarray:
    parent = np.arange(n_verts)

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in np.r_[faces[:, [0, 1]], faces[:, [1, 2]]]:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[ra] = rb
    return np.array([find(i) for i in range(n_verts)])


def _outer_vertices(v: torch.Tensor, f: torch.Tensor) -> np.ndarray:
    from avguide.render import orthographic_camera, project, rasterize

    seen = np.zeros(v.shape[0], bool)
    c = v.mean(0)
    for d in [(0, 0, 1), (1, 0, 1), (-1, 0, 1), (0, -1, 1), (0, 1, 1), (0, -1, 0.3)]:
        dt = torch.tensor([d], dtype=torch.float32)
        cam = orthographic_camera(c[None] + dt, c[None], 0.3, (400, 400))
        fid = rasterize(project(v[None], cam), f, cam.size)
        vis = fid[fid >= 0].unique()
        seen[f[vis].reshape(-1).numpy()] = True
    return seen


@functools.lru_cache(maxsize=1)
def load_test_head() -> HeadData:
    try:
        from avguide.assets.head import load_head  # the project's head, once it exists

        h = load_head()
        from avguide.assets.arkit import ARKIT_INDEX

        return HeadData(torch.tensor(np.array(h.vertices, np.float32)), torch.tensor(np.array(h.faces, np.int64)),
                        torch.tensor(np.array(h.blendshapes[ARKIT_INDEX["jawOpen"]], np.float32)),
                        torch.tensor(np.array(h.regions["lips"], np.int64)),
                        np.asarray(h.vertex_part, np.uint8), tuple(h.part_names))
    except ImportError:
        pass
    d = np.load(NPZ)
    v = torch.tensor(d["vertices"].astype(np.float32) * 0.1)  # decimetres -> metres
    f = torch.tensor(d["faces"].astype(np.int64))
    comp = _components(len(v), d["faces"].astype(np.int64))
    labels, counts = np.unique(comp, return_counts=True)
    part = np.zeros(len(v), np.uint8)
    for lab, cnt in zip(labels, counts):
        if cnt == counts.max():
            continue
        m = comp == lab
        part[m] = 4 if abs(float(v[m, 0].mean())) > 0.01 else (3 if cnt > 150 else 2)
    lips = np.r_[d["upper_lip"], d["lower_lip"]].astype(np.int64)
    part[lips] = 1
    outer = _outer_vertices(v, f)
    lo, hi = v[lips].amin(0).numpy(), v[lips].amax(0).numpy()
    near = (np.abs(v[:, 0].numpy()) < hi[0]) & (v[:, 1].numpy() > lo[1] - 0.03) & (v[:, 1].numpy() < hi[1] + 0.01)
    part[(part == 0) & ~outer & near] = 5
    return HeadData(v, f, torch.tensor(d["bs_jawOpen"].astype(np.float32) * 0.1), torch.tensor(lips), part, PARTS)


@pytest.fixture(scope="session")
def head() -> HeadData:
    """The test head (metres; parts skin, lips, teeth, tongue, eyes, cavity)."""
    if not NPZ.is_file():
        try:
            import avguide.assets.head  # noqa: F401
        except ImportError:
            pytest.skip("no head asset and no ../shared head extraction")
    return load_test_head()


def triangle_soup(g: torch.Generator, n_img: int = 3, n_faces: int = 60, size: int = 40
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Random triangles of many sizes, partly off screen, both orientations, with exact ties.

    Returns:
        pix (n_img, 3 * n_faces, 3) float32 screen coordinates and depth, faces (n_faces + 5, 3)
        int64 (the first 5 repeated: equal depth, the lower index must win).
    """
    n_v = 3 * n_faces
    scale = torch.exp(torch.rand(n_img, n_faces, 1, 1, generator=g) * 4) / 2  # 0.5 .. 27 px
    centre = torch.rand(n_img, n_faces, 1, 2, generator=g) * (size + 10) - 5
    xy = centre + scale * torch.randn(n_img, n_faces, 3, 2, generator=g)
    z = 1 + torch.rand(n_img, n_faces, 1, 1, generator=g) + 0.1 * torch.randn(n_img, n_faces, 3, 1, generator=g)
    faces = torch.arange(n_v).view(n_faces, 3)
    return torch.cat([xy, z], -1).reshape(n_img, n_v, 3), torch.cat([faces, faces[:5]])


@pytest.fixture
def soup():
    """:func:`triangle_soup`."""
    return triangle_soup


def jaw_batch_of(head: HeadData, g: torch.Generator, t: int):
    """Two sequences of ``t`` frames opening the jaw (0..0.6) with 0.2 mm jitter.

    Returns:
        verts (2, t, V, 3) float32, albedo (V, 3), neighbors (F, 3), and the two lip cameras.
    """
    from avguide.render import albedo_from_parts, face_neighbors, lip_camera

    alb = albedo_from_parts(torch.from_numpy(head.vertex_part.astype(np.int64)), head.part_names)
    w = torch.rand(2, t, 1, 1, generator=g) * 0.6  # (B, T, 1, 1) jaw opening
    v0 = head.vertices + w * head.jaw_open + 2e-4 * torch.randn(2, t, *head.vertices.shape, generator=g)
    cam = lip_camera(torch.stack([head.vertices, head.vertices + 1e-3]), head.lips)
    return v0, alb, face_neighbors(head.faces), cam


@pytest.fixture
def jaw_batch():
    """:func:`jaw_batch_of`."""
    return jaw_batch_of
