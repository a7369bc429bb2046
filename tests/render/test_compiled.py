"""``compile=True`` (torch.compile'd kernels) against the eager renderer: identical face ids, the
same images and gradients up to float32 rounding, and a clean eager fallback without a C++
compiler. The comparisons compile (about a minute on 2 cores): marked slow."""

import numpy as np
import pytest
import torch

from avguide.render import albedo_from_parts, expert_input, face_neighbors, lip_camera, project, rasterize, render_mesh
from avguide.render import compiled


@pytest.mark.slow
def test_compiled_rasterize_gives_identical_face_ids(soup):
    g = torch.Generator().manual_seed(0)
    pix, faces = soup(g)
    mask = torch.rand(faces.shape[0], generator=g) < 0.8
    for kw in [dict(), dict(cull_backfaces=False), dict(face_mask=mask), dict(orthographic=False)]:
        for p in (pix, pix[:1]):  # a single image: the size-1 specialisation
            eager = rasterize(p, faces, (40, 36), **kw)
            assert (eager >= 0).sum() > 100, kw
            assert torch.equal(compiled.rasterize(p, faces, (40, 36), **kw), eager), kw
    huge = pix.clone()
    huge[0, :3, :2] = torch.tensor([[-1e6, 5.0], [1e6, 6.0], [3.0, 30.0]])  # the scanline's eager fallback
    assert torch.equal(compiled.rasterize(huge, faces, (40, 36)), rasterize(huge, faces, (40, 36)))


@pytest.mark.slow
def test_compiled_render_mesh_equals_eager_images_and_gradients(head):
    g = torch.Generator().manual_seed(3)
    alb = albedo_from_parts(torch.from_numpy(head.vertex_part.astype(np.int64)), head.part_names)
    nb = face_neighbors(head.faces)
    v0 = head.vertices[None] + torch.tensor([[[0.2]], [[0.6]], [[0.4]]]) * head.jaw_open[None]
    v0 = v0 + 3e-4 * torch.randn(v0.shape, generator=g)
    for cam in [lip_camera(head.vertices, head.lips, size=48),
                lip_camera(head.vertices, head.lips, size=40, orthographic=False)]:
        weights = torch.rand(3, 4, *cam.size, generator=g)
        out = []
        for flag in (False, True):
            v = v0.clone().requires_grad_(True)
            img = torch.cat(render_mesh(v, head.faces, cam, alb, neighbors=nb, compile=flag, jit=False), 1)
            (img * weights).sum().backward()
            out.append((img.detach(), v.grad))
        assert torch.equal(rasterize(project(v0, cam), head.faces, cam.size, orthographic=cam.orthographic),
                           compiled.rasterize(project(v0, cam), head.faces, cam.size, orthographic=cam.orthographic))
        (img, grad), (img_c, grad_c) = out
        assert grad.abs().max() > 1
        torch.testing.assert_close(img_c, img, rtol=0, atol=1e-5)
        torch.testing.assert_close(grad_c, grad, rtol=1e-3, atol=1e-5 * float(grad.abs().max()))


@pytest.mark.slow
def test_compiled_expert_input_in_worker_threads_equals_eager(head, jaw_batch, monkeypatch):
    """torch.compile's render against the eager torch one (the numba kernels are the default eager
    path on CPU and have their own tests against the same reference)."""
    from avguide.render import raster

    monkeypatch.setattr(raster, "USE_JIT", False)
    g = torch.Generator().manual_seed(4)
    v0, alb, nb, cam = jaw_batch(head, g, 6)
    weights = torch.randn(2, 6, 1, 88, 88, generator=g)
    out = []
    for flag in (False, True):
        v = v0.clone().requires_grad_(True)
        video, _ = expert_input(v, torch.tensor([6, 5]), 25.0, head.faces, cam, alb, neighbors=nb, workers=2,
                                compile=flag)
        (video * weights).sum().backward()
        out.append((video.detach(), v.grad))
    (video, grad), (video_c, grad_c) = out
    torch.testing.assert_close(video_c, video, rtol=0, atol=1e-4)  # normalised luma: x6 the colour scale
    torch.testing.assert_close(grad_c, grad, rtol=1e-3, atol=1e-5 * float(grad.abs().max()))


@pytest.mark.slow
def test_compiled_antialias_equals_eager_bitwise(head):
    """The compiled exit-edge search picks the same pixel pairs and edges: the antialiased
    colours and both gradients (colours, projected vertices) are bitwise the eager ones."""
    from avguide.render.antialias import antialias_planes

    g = torch.Generator().manual_seed(5)
    nb = face_neighbors(head.faces)
    v0 = head.vertices[None] + torch.tensor([[[0.1]], [[0.5]]]) * head.jaw_open[None]
    for cam in [lip_camera(head.vertices, head.lips, size=48),
                lip_camera(head.vertices, head.lips, size=40, orthographic=False)]:
        pix0 = project(v0 + 3e-4 * torch.randn(v0.shape, generator=g), cam)
        fid = rasterize(pix0, head.faces, cam.size, orthographic=cam.orthographic)
        planes0 = torch.rand(4, fid.numel(), generator=g)
        weights = torch.randn(4, fid.numel(), generator=g)
        out = []
        for fn in (antialias_planes, compiled.antialias_planes):
            pix, planes = pix0.clone().requires_grad_(True), planes0.clone().requires_grad_(True)
            img = fn(planes, pix, head.faces, fid, nb, orthographic=cam.orthographic)
            (img * weights).sum().backward()
            out.append((img.detach(), pix.grad, planes.grad))
        assert (out[0][0] != planes0).any(dim=0).sum() > 20  # pairs were blended
        assert out[0][1].abs().max() > 0
        for eager, comp in zip(*out):
            assert torch.equal(comp, eager)


def test_compile_without_a_cpp_compiler_warns_and_renders_eagerly(head, monkeypatch):
    import torch._inductor.cpp_builder as cpp_builder

    def no_compiler():
        raise RuntimeError("no g++ here")

    monkeypatch.setattr(cpp_builder, "get_cpp_compiler", no_compiler)
    with pytest.warns(RuntimeWarning, match="C\\+\\+ compiler"):
        assert compiled.available.__wrapped__() is False
    monkeypatch.setattr(compiled, "available", lambda: False)
    alb = albedo_from_parts(torch.from_numpy(head.vertex_part.astype(np.int64)), head.part_names)
    cam = lip_camera(head.vertices, head.lips, size=32)
    v = head.vertices[None]
    eager = render_mesh(v, head.faces, cam, alb, jit=False)  # the torch path, which compile=True falls back to
    fallback = render_mesh(v, head.faces, cam, alb, compile=True)
    assert all(torch.equal(a, b) for a, b in zip(eager, fallback))
