"""The compiled z-buffer (avguide.render.jitzbuf) gives exactly the face ids of rasterize's torch
path and of rasterize_reference; render_mesh gives the same images and gradients with either."""

import numpy as np
import pytest
import torch

from avguide.render import (albedo_from_parts, face_neighbors, lip_camera, lip_face_mask, orthographic_camera,
                            perspective_camera, project, raster, render_mesh)
from avguide.render.jitzbuf import available, zbuffer
from avguide.render.raster import rasterize, rasterize_reference

pytestmark = pytest.mark.skipif(not available(), reason="numba is not importable")


def _all_equal(pix, faces, size, ref: bool = True, **kw) -> torch.Tensor:
    """Face ids of the three paths, asserted identical; returns them."""
    jit = rasterize(pix, faces, size, jit=True, **kw)
    assert torch.equal(jit, zbuffer(pix, faces, size, **kw))
    assert torch.equal(jit, rasterize(pix, faces, size, jit=False, **kw))
    if ref:
        assert torch.equal(jit, rasterize_reference(pix, faces, size, **kw))
    return jit


def _grid(n: int, pitch: float, g: torch.Generator, jitter: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(n*n, 2) vertices of a grid whose lines pass through pixel centres (half-integers), and its
    2 (n-1)^2 faces, back-facing (clockwise in the y-down image): every inner edge shared, with a
    pixel centre exactly on many of them."""
    ij = torch.stack(torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij"), -1).view(-1, 2).float()
    xy = ij * pitch + 0.5 + jitter * torch.randint(-1, 2, ij.shape, generator=g).float() / 4
    k = torch.arange(n * n).view(n, n)
    a, b, c, d = k[:-1, :-1].reshape(-1), k[:-1, 1:].reshape(-1), k[1:, :-1].reshape(-1), k[1:, 1:].reshape(-1)
    return xy, torch.cat([torch.stack([a, c, b], 1), torch.stack([b, c, d], 1)])


def test_soups_with_ties(soup):
    g = torch.Generator().manual_seed(0)
    for _ in range(4):
        pix, faces = soup(g, 3, 70, 36)  # faces[-5:] repeat the first five: exact depth ties
        pix[1, :30, 2] = pix[1, 0, 2]  # flat: many equal depths between different faces
        for cull in (True, False):
            for ortho in (True, False):
                fid = _all_equal(pix, faces, (36, 41), cull_backfaces=cull, orthographic=ortho)
                assert (fid >= 0).sum() > 100
        mask = torch.rand(faces.shape[0], generator=g) < 0.6
        _all_equal(pix, faces, (36, 41), cull_backfaces=False, face_mask=mask)


def test_shared_edges_and_flat_ties():
    g = torch.Generator().manual_seed(1)
    for pitch, jitter in ((3.0, 0.0), (4.0, 1.0), (1.0, 0.0), (7.5, 1.0)):
        xy, faces = _grid(9, pitch, g, jitter)
        z = torch.ones(xy.shape[0], 1)
        pix = torch.stack([torch.cat([xy, z], -1), torch.cat([xy.flip(-1), 2 - z], -1),  # mirrored: back faces
                           torch.cat([xy + 0.25, z + xy[:, :1] / 8], -1)])  # (3, V, 3)
        both = torch.cat([faces, faces.flip(-1)])  # front and back copies of every face
        for f in (faces, both):
            for cull in (True, False):
                _all_equal(pix, f, (30, 33), cull_backfaces=cull)
                _all_equal(pix, f, (30, 33), cull_backfaces=cull, orthographic=False)


def test_big_faces_and_huge_coordinates():
    # boxes larger than the image, corners far off screen, near-horizontal edges, huge depths
    pix = torch.tensor([[[-50.0, -40.0, 1.0], [90.0, 5.0, 2.0], [3.0, 70.0, 1.5], [1e7, 3.0, 1.0],
                         [-1e7, 3.2, 1.0], [5.0, 20.0, 3e38], [15.5, 12.5, 1.0], [0.5, 12.5 + 1e-6, 1.0],
                         [8.0, 1e9, 0.5]]])
    faces = torch.tensor([[0, 1, 2], [3, 4, 6], [4, 3, 6], [5, 6, 7], [7, 6, 5], [6, 7, 8], [8, 7, 6], [0, 2, 1]])
    for ortho in (True, False):
        _all_equal(pix, faces, (24, 20), ref=False, cull_backfaces=False, orthographic=ortho)
        _all_equal(pix, faces, (24, 20), ref=False, orthographic=ortho)


def test_non_finite_vertices():
    g = torch.Generator().manual_seed(2)
    pix = torch.rand(2, 30, 3, generator=g) * torch.tensor([24.0, 24.0, 1.0]) + torch.tensor([0.0, 0.0, 1.0])
    pix[0, 3, 0] = float("nan")
    pix[0, 4, 2] = float("inf")
    pix[1, 5, 1] = -float("inf")
    pix[1, 6, 2] = float("nan")
    faces = torch.randint(0, 30, (80, 3), generator=g)
    for ortho in (True, False):
        _all_equal(pix, faces, (24, 24), cull_backfaces=False, orthographic=ortho)


def test_everything_culled():
    g = torch.Generator().manual_seed(3)
    pix, faces = (torch.rand(2, 12, 3, generator=g) * 20, torch.randint(0, 12, (20, 3), generator=g))
    empty = torch.full((2, 20, 20), -1)
    for kw in ({"face_mask": torch.zeros(20, dtype=torch.bool)},  # nothing to draw
               {"orthographic": False, "cull_backfaces": False}):  # all behind a perspective camera
        p = pix.clone()
        p[..., 2] = -1.0
        assert torch.equal(_all_equal(p, faces, (20, 20), **kw), empty)
    off = pix + torch.tensor([100.0, 0.0, 0.0])  # off screen
    assert torch.equal(_all_equal(off, faces, (20, 20), cull_backfaces=False), empty)
    flat = pix.clone()
    flat[..., 1] = 5.0  # degenerate: zero area
    assert torch.equal(_all_equal(flat, faces, (20, 20), cull_backfaces=False), empty)
    xy, grid = _grid(5, 4.0, g, 0.0)
    back = torch.cat([xy, torch.ones(25, 1)], -1)[None]
    assert torch.equal(_all_equal(back, grid, (20, 20)), torch.full((1, 20, 20), -1))  # all back faces
    assert (_all_equal(back, grid.flip(-1), (20, 20)) >= 0).sum() == 17 * 17  # from the front: edges inclusive
    assert _all_equal(pix[:0], faces, (20, 20)).shape == (0, 20, 20)
    assert torch.equal(_all_equal(pix, faces[:0], (20, 20)), empty)


def _speech_frames(head, n: int, seed: int) -> torch.Tensor:
    """(n, V, 3) float32 head meshes opening the jaw, with 0.2 mm of noise."""
    g = torch.Generator().manual_seed(seed)
    w = torch.rand(n, 1, 1, generator=g) * 0.6
    return head.vertices + w * head.jaw_open + 2e-4 * torch.randn(n, *head.vertices.shape, generator=g)


@pytest.mark.parametrize("ortho", [True, False])
def test_head_lip_and_face_cameras(head, ortho):
    verts = _speech_frames(head, 4, 0)
    faces = head.faces
    lip = lip_camera(verts, head.lips, size=34, orthographic=ortho)  # one per frame
    mask = lip_face_mask(head.vertices, faces, lip_camera(head.vertices, head.lips, size=34, orthographic=ortho))
    pix = project(verts, lip)
    fid = _all_equal(pix, faces, lip.size, orthographic=ortho, face_mask=mask)
    assert (fid >= 0).float().mean() > 0.7 and fid.unique().numel() > 300
    assert torch.equal(fid, _all_equal(pix, faces, lip.size, ref=False, orthographic=ortho))  # the mask drops none
    c = head.vertices.mean(0, keepdim=True)
    eye = c + torch.tensor([[0.1, 0.05, 0.6]])
    cam = (orthographic_camera(eye, c, 0.3, (72, 64)) if ortho else perspective_camera(eye, c, 30.0, (72, 64)))
    pix = project(verts[:2], cam)
    fid = _all_equal(pix, faces, cam.size, orthographic=ortho)
    assert fid.unique().numel() > 1000
    _all_equal(pix, faces, cam.size, ref=False, orthographic=ortho, cull_backfaces=False)  # back of the head too


def test_render_mesh_same_images_and_gradients(head, monkeypatch):
    verts = _speech_frames(head, 3, 1)
    alb = albedo_from_parts(torch.from_numpy(head.vertex_part.astype(np.int64)), head.part_names)
    nb = face_neighbors(head.faces)
    cam = lip_camera(verts, head.lips, size=32)
    weight = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    out = {}
    for jit in (True, False):
        monkeypatch.setattr(raster, "USE_JIT", jit)
        v = verts.clone().requires_grad_()
        img, cov = render_mesh(v, head.faces, cam, alb, neighbors=nb, jit=False)  # the torch shading: bitwise
        (img * weight).sum().backward()
        out[jit] = img.detach(), cov.detach(), v.grad
    assert out[True][0].std() > 0.05 and float(out[True][2].abs().max()) > 0
    for a, b in zip(out[True], out[False]):
        assert torch.equal(a, b)


def test_without_numba_the_torch_path_runs(monkeypatch):
    from avguide.render import jitzbuf

    g = torch.Generator().manual_seed(5)
    pix, faces = torch.rand(2, 12, 3, generator=g) * 20, torch.randint(0, 12, (20, 3), generator=g)
    want = rasterize(pix, faces, (20, 20), cull_backfaces=False)
    monkeypatch.setattr(jitzbuf, "available", lambda: False)
    monkeypatch.setattr(jitzbuf, "zbuffer", lambda *a, **k: pytest.fail("zbuffer called without numba"))
    assert torch.equal(rasterize(pix, faces, (20, 20), cull_backfaces=False), want)


def test_bad_face_index_raises():
    with pytest.raises(IndexError):
        zbuffer(torch.rand(1, 3, 3), torch.tensor([[0, 1, 3]]), (8, 8))
