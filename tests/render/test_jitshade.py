"""The compiled shading (avguide.render.jitshade) against the torch path of render_mesh, the full-image
reference and finite differences.

Tolerances: the kernels compute in float64 and round once, the torch path rounds every float32
operation, so in float64 both agree to ~1e-12, and in float32 within a few float32 roundings
(measured: 5e-6 on images in [0, 1], 1.3e-5 of the largest vertex gradient), 4x and 40x below
what separates either float32 render from the float64 one (2e-5 and 5e-4: the float32 inputs).
"""

import numpy as np
import pytest
import torch

from avguide.render import (albedo_from_parts, face_neighbors, lip_camera, orthographic_camera, perspective_camera,
                            project, rasterize, render_mesh, vertex_normals)
from avguide.render import jitshade
from avguide.render.mesh import render_mesh_reference

pytestmark = pytest.mark.skipif(not jitshade.available(), reason="numba is not importable")


def _head_frames(head, dtype, n=2, seed=3):
    g = torch.Generator().manual_seed(seed)
    v = head.vertices[None] + torch.linspace(0.1, 0.7, n).view(n, 1, 1) * head.jaw_open[None]
    return (v.double() + 3e-4 * torch.randn(v.shape, generator=g, dtype=torch.float64)).to(dtype)


def _render_both(verts, faces, cam, alb, weights, **kw):
    """Images and vertex gradients of render_mesh with the compiled and the torch shading."""
    out = {}
    for jit in (True, False):
        v = verts.clone().requires_grad_(True)
        img = torch.cat(render_mesh(v, faces, cam, alb, jit=jit, **kw), 1)
        (img * weights).sum().backward()
        out[jit] = img.detach(), v.grad
    return out[True], out[False]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("ortho", [True, False])
def test_render_mesh_equals_the_torch_shading(head, dtype, ortho):
    """float64: within 1e-12 (images) and 1e-10 of the largest vertex gradient. float32: within
    2e-5 and 1e-4 of the torch float32 path, and closer to it than half its own distance to the
    float64 render (the error both float32 paths share, from the float32 inputs)."""
    g = torch.Generator().manual_seed(1)
    alb = albedo_from_parts(torch.from_numpy(head.vertex_part.astype(np.int64)), head.part_names).double()
    verts = _head_frames(head, torch.float64)
    cam = lip_camera(head.vertices.double(), head.lips, size=40, orthographic=ortho)
    per_image = torch.stack([alb, alb.flip(0)])  # (N, V, C) albedo
    for kw in [dict(neighbors=face_neighbors(head.faces)), dict(background=(0.2, 0.5, 0.1)), dict()]:
        for albedo in (alb, per_image):
            weights = torch.rand(2, 4, 40, 40, generator=g, dtype=torch.float64)
            (img, grad), (img_t, grad_t) = _render_both(verts.to(dtype), head.faces, cam.to(dtype=dtype),
                                                        albedo.to(dtype), weights.to(dtype), **kw)
            gmax = float(grad_t.abs().max())
            assert gmax > 1
            if dtype == torch.float64:
                torch.testing.assert_close(img, img_t, rtol=0, atol=1e-12)
                torch.testing.assert_close(grad, grad_t, rtol=0, atol=1e-10 * gmax)
                continue
            torch.testing.assert_close(img, img_t, rtol=0, atol=2e-5)
            torch.testing.assert_close(grad, grad_t, rtol=0, atol=1e-4 * gmax)
            (ref, ref_grad), _ = _render_both(verts, head.faces, cam, albedo, weights, **kw)  # float64
            for fast, slow, truth in ((img, img_t, ref), (grad, grad_t, ref_grad)):
                diff, err = float((fast - slow).abs().max()), float((slow.double() - truth).abs().max())
                assert diff <= 0.5 * err, (diff, err)


def test_render_mesh_equals_the_full_image_reference(head):
    alb = albedo_from_parts(torch.from_numpy(head.vertex_part.astype(np.int64)), head.part_names).double()
    nb = face_neighbors(head.faces)
    verts = _head_frames(head, torch.float64, seed=5)
    cam = lip_camera(head.vertices.double(), head.lips, size=32, orthographic=False)
    weights = torch.rand(2, 4, 32, 32, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    out = []
    for fn in (lambda v: render_mesh(v, head.faces, cam, alb, neighbors=nb, jit=True),
               lambda v: render_mesh_reference(v, head.faces, cam, alb, neighbors=nb)):
        v = verts.clone().requires_grad_(True)
        img = torch.cat(fn(v), 1)
        (img * weights).sum().backward()
        out.append((img.detach(), v.grad))
    torch.testing.assert_close(out[0][0], out[1][0], rtol=0, atol=1e-12)
    torch.testing.assert_close(out[0][1], out[1][1], rtol=0, atol=1e-10 * float(out[1][1].abs().max()))


def test_camera_normals_equal_vertex_normals_and_their_gradient(head):
    verts = _head_frames(head, torch.float64, n=3)
    cam = lip_camera(head.vertices.double(), head.lips, size=40)
    rot = torch.linalg.qr(torch.randn(3, 3, 3, generator=torch.Generator().manual_seed(6), dtype=torch.float64))[0]
    face_id = rasterize(project(verts, cam), head.faces, cam.size)
    weights = torch.randn(3, head.vertices.shape[0], 3, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    v = verts.clone().requires_grad_(True)
    normals, slot = jitshade.camera_normals(v, head.faces, face_id, rot)
    need = (slot >= 0).nonzero().squeeze(1)
    assert torch.equal(need, head.faces[face_id[face_id >= 0].unique()].unique())
    (normals * weights[:, need]).sum().backward()
    w = verts.clone().requires_grad_(True)
    ref = (vertex_normals(w, head.faces) @ rot.transpose(1, 2))[:, need]  # (N, U, 3)
    (ref * weights[:, need]).sum().backward()
    torch.testing.assert_close(normals.detach(), ref.detach(), rtol=0, atol=1e-13)
    assert float(w.grad.abs().max()) > 1
    torch.testing.assert_close(v.grad, w.grad, rtol=0, atol=1e-10 * float(w.grad.abs().max()))


def _bumpy_grid(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(n*n, 3) float64 vertices of a bumpy unit square facing +z and its 2 (n-1)^2 faces."""
    ij = torch.stack(torch.meshgrid(torch.linspace(0, 1, n), torch.linspace(0, 1, n), indexing="ij"), -1).view(-1, 2)
    xy = ij.double() + 0.03 * torch.randn(n * n, 2, generator=g, dtype=torch.float64)
    z = 0.15 * torch.randn(n * n, 1, generator=g, dtype=torch.float64)
    k = torch.arange(n * n).view(n, n)
    a, b, c, d = k[:-1, :-1].reshape(-1), k[:-1, 1:].reshape(-1), k[1:, :-1].reshape(-1), k[1:, 1:].reshape(-1)
    return torch.cat([xy, z], 1), torch.cat([torch.stack([a, c, b], 1), torch.stack([b, c, d], 1)])


@pytest.mark.parametrize("ortho", [True, False])
def test_gradients_match_finite_differences(ortho):
    """Normals and shading of a small bumpy grid, with the face ids held fixed (the kernels' inputs)."""
    g = torch.Generator().manual_seed(8)
    verts, faces = _bumpy_grid(4, g)
    eye, at = torch.tensor([[0.5, 0.5, 3.0]], dtype=torch.float64), torch.tensor([[0.5, 0.5, 0.0]], dtype=torch.float64)
    cam = orthographic_camera(eye, at, 1.2, (12, 12)) if ortho else perspective_camera(eye, at, 30.0, (12, 12))
    verts = torch.stack([verts, verts + 0.02 * torch.randn(verts.shape, generator=g, dtype=torch.float64)])
    face_id = rasterize(project(verts, cam), faces, cam.size, orthographic=ortho, cull_backfaces=False)
    assert (face_id >= 0).sum() > 100
    albedo = torch.rand(verts.shape[1], 2, generator=g, dtype=torch.float64)
    weights = torch.randn(3, 2 * 12 * 12, generator=g, dtype=torch.float64)

    def loss(v):
        normals, slot = jitshade.camera_normals(v, faces, face_id, cam.rotation)
        out = jitshade.shade_pixels(project(v, cam), normals, slot, albedo, faces, face_id, orthographic=ortho)
        return (out * weights).sum()

    torch.autograd.gradcheck(loss, (verts.clone().requires_grad_(True),), eps=1e-6, atol=1e-6, rtol=1e-5)


def test_nothing_in_view_and_without_numba(head, monkeypatch):
    v = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [0, 1, 0]]], requires_grad=True)
    f = torch.tensor([[0, 1, 2]])
    cam = orthographic_camera(torch.tensor([[100.0, 100, 105]]), torch.tensor([[100.0, 100, 100]]), 1.0, (8, 8))
    img, cov = render_mesh(v, f, cam, torch.ones(3, 3), background=0.5, jit=True)
    (img.sum() + cov.sum()).backward()
    assert torch.equal(img, torch.full_like(img, 0.5)) and not bool(cov.any())
    assert torch.equal(v.grad, torch.zeros_like(v))
    monkeypatch.setattr(jitshade, "available", lambda: False)  # available() is False: render_mesh shades with torch
    monkeypatch.setattr(jitshade, "shade_pixels", lambda *a, **k: pytest.fail("shade_pixels called without numba"))
    alb = albedo_from_parts(torch.from_numpy(head.vertex_part.astype(np.int64)), head.part_names)
    cam = lip_camera(head.vertices, head.lips, size=24)
    img, _ = render_mesh(head.vertices[None], head.faces, cam, alb, jit=True)
    assert img.std() > 0.05
