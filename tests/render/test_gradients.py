"""Gradients from pixels to vertices: finite differences, edge gradients, recovery, magnitude."""

import numpy as np
import torch

from avguide.render import (albedo_from_parts, expert_crop, face_neighbors, lip_camera, orthographic_camera,
                            render_mesh)


def _setup(h, dtype=torch.float64, size=96):
    alb = albedo_from_parts(torch.from_numpy(h.vertex_part.astype(np.int64)), h.part_names).to(dtype)
    cam = lip_camera(h.vertices.to(dtype), h.lips, size=size)
    return h, alb, cam, face_neighbors(h.faces)


def test_image_gradient_matches_finite_differences_on_jittered_mesh(head):
    h, alb, cam, nb = _setup(head, size=48)
    g = torch.Generator().manual_seed(0)
    v0 = (h.vertices + 0.4 * h.jaw_open).double()
    v0 = v0 + 3e-4 * torch.randn(v0.shape, generator=g, dtype=torch.float64)  # jitter (0.3 mm)
    weights = torch.rand(1, 3, 48, 48, generator=g, dtype=torch.float64)

    def loss(v):
        img, mask = render_mesh(v[None], h.faces, cam, alb, neighbors=nb)
        return (img * weights).sum() + mask.sum()

    v = v0.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(loss(v), v)
    assert grad[h.lips].abs().sum() > 0
    eps = 1e-7  # metres (~1e-4 pixel)
    for k in range(4):
        u = torch.zeros_like(v0)
        idx = h.lips[torch.randperm(len(h.lips), generator=g)[:40]]
        u[idx] = torch.randn(40, 3, generator=g, dtype=torch.float64)
        fd = (loss(v0 + eps * u) - loss(v0 - eps * u)) / (2 * eps)
        an = (grad * u).sum()
        assert abs(fd - an) <= 1e-4 * abs(an) + 1e-6, (k, float(fd), float(an))


def test_silhouette_edge_gradient_equals_analytic_area_derivative():
    # one triangle over background: with antialiasing, the mask sum is the triangle's area in
    # pixels and its derivative w.r.t. a corner is the analytic area derivative
    tri = torch.tensor([[0.11, 0.07, 0.0], [0.83, 0.21, 0.0], [0.37, 0.91, 0.0]], dtype=torch.float64)
    faces = torch.tensor([[0, 1, 2]])  # counter-clockwise seen from +z: front-facing
    cam = orthographic_camera(torch.tensor([[0.5, 0.5, 2.0]], dtype=torch.float64),
                              torch.tensor([[0.5, 0.5, 0.0]], dtype=torch.float64), 1.0, (64, 64))
    nb = face_neighbors(faces)
    v = tri.clone().requires_grad_(True)
    _, mask = render_mesh(v[None], faces, cam, torch.ones(3, 1, dtype=torch.float64), neighbors=nb)
    area_px = mask.sum()
    (g_img,) = torch.autograd.grad(area_px, v)
    w = tri.clone().requires_grad_(True)
    e1, e2 = w[1] - w[0], w[2] - w[0]
    area = 0.5 * (e1[0] * e2[1] - e1[1] * e2[0]).abs() * 64 * 64
    (g_true,) = torch.autograd.grad(area, w)
    assert abs(float(area_px.detach()) - float(area.detach())) < 0.01 * float(area.detach())
    torch.testing.assert_close(g_img[:, :2], g_true[:, :2], rtol=0.08, atol=0.08 * float(g_true.abs().max()))
    # without antialiasing the hard mask has no gradient at all
    v2 = tri.clone().requires_grad_(True)
    _, hard = render_mesh(v2[None], faces, cam, torch.ones(3, 1, dtype=torch.float64))
    (g_hard,) = torch.autograd.grad(hard.sum(), v2, allow_unused=True)
    assert g_hard is None or float(g_hard.abs().max()) == 0.0


def test_recover_jaw_open_from_a_target_render(head):
    h, alb, cam, nb = _setup(head, dtype=torch.float32)
    target_w = 0.6
    with torch.no_grad():
        target, _ = render_mesh((h.vertices + target_w * h.jaw_open)[None], h.faces, cam, alb, neighbors=nb)
    w = torch.zeros(1, requires_grad=True)
    opt = torch.optim.Adam([w], lr=0.05)
    for _ in range(60):
        img, _ = render_mesh((h.vertices + w * h.jaw_open)[None], h.faces, cam, alb, neighbors=nb)
        loss = ((img - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert abs(w.item() - target_w) < 0.03, w.item()


def test_expert_input_gradient_reaches_lip_vertices_with_useful_magnitude(head):
    """A loss on the 88x88 expert input moves the lips towards the target and is not tiny.

    Prediction: jawOpen 0.3, target jawOpen 0.5. Compared with the vertex MSE (mean over all
    V*3 coordinates, the animator's loss) on the lip vertices.
    """
    h, alb, cam, nb = _setup(head, dtype=torch.float32)
    pred = (h.vertices + 0.3 * h.jaw_open).requires_grad_(True)
    gt = h.vertices + 0.5 * h.jaw_open
    with torch.no_grad():
        target = expert_crop(render_mesh(gt[None], h.faces, cam, alb, neighbors=nb)[0])
    x = expert_crop(render_mesh(pred[None], h.faces, cam, alb, neighbors=nb)[0])
    (g_img,) = torch.autograd.grad(((x - target) ** 2).mean(), pred)
    (g_mse,) = torch.autograd.grad(((pred - gt) ** 2).mean(), pred)
    lips = h.lips
    assert torch.isfinite(g_img).all()
    ratio = float(g_img[lips].norm() / g_mse[lips].norm())
    assert ratio > 1e-2, ratio
    # descending the image loss opens the mouth (same direction as descending the MSE)
    assert float((-g_img[lips] * h.jaw_open[lips]).sum()) > 0
