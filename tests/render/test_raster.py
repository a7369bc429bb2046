"""Rasteriser, barycentrics, interpolation, cameras and normals against independent truth."""

import math

import numpy as np
import torch

from avguide.render import (barycentrics, interpolate, look_at, orthographic_camera, perspective_camera, project,
                            rasterize, vertex_normals)
from avguide.render.raster import pixel_centers


def _brute_inside(tri_xy: np.ndarray, h: int, w: int) -> np.ndarray:
    """(H, W) bool: pixel centre inside the 2D triangle (numpy, sign test)."""
    ys, xs = np.mgrid[0:h, 0:w] + 0.5
    s = []
    for i in range(3):
        a, b = tri_xy[i], tri_xy[(i + 1) % 3]
        s.append((b[0] - a[0]) * (ys - a[1]) - (b[1] - a[1]) * (xs - a[0]))
    s = np.stack(s)
    return (s >= 0).all(0) | (s <= 0).all(0)


def test_single_triangle_coverage_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        xy = torch.rand(3, 2, generator=g) * 40 - 4  # partly outside a 32x32 image
        pix = torch.cat([xy, torch.ones(3, 1)], -1)[None]
        fid = rasterize(pix, torch.tensor([[0, 1, 2]]), (32, 32), cull_backfaces=False)
        assert np.array_equal((fid[0] >= 0).numpy(), _brute_inside(xy.numpy(), 32, 32))


def test_nearest_face_wins_and_backfaces_are_culled():
    # two overlapping full-screen triangles, face 1 nearer
    xy = torch.tensor([[-10.0, -10.0], [50.0, -10.0], [-10.0, 50.0]])
    pix = torch.cat([torch.cat([xy, torch.full((3, 1), 2.0)], -1), torch.cat([xy, torch.full((3, 1), 1.0)], -1)])[None]
    faces = torch.tensor([[0, 2, 1], [3, 5, 4]])  # clockwise on a y-down screen = front-facing
    fid = rasterize(pix, faces, (16, 16))
    assert (fid == 1).all()
    fid = rasterize(pix, faces.flip(-1), (16, 16))  # both back-facing
    assert (fid == -1).all()
    fid = rasterize(pix, faces.flip(-1), (16, 16), cull_backfaces=False)
    assert (fid == 1).all()


def test_batched_equals_one_by_one():
    g = torch.Generator().manual_seed(1)
    pix = torch.rand(3, 30, 3, generator=g) * torch.tensor([24.0, 24.0, 1.0]) + torch.tensor([0, 0, 1.0])
    faces = torch.randint(0, 30, (40, 3), generator=g)
    batched = rasterize(pix, faces, (24, 24), cull_backfaces=False)
    for i in range(3):
        assert torch.equal(batched[i], rasterize(pix[i:i + 1], faces, (24, 24), cull_backfaces=False)[0])


def test_orthographic_barycentrics_reproduce_pixel_centres():
    g = torch.Generator().manual_seed(2)
    xy = torch.rand(2, 3, 2, generator=g, dtype=torch.float64) * 20
    pix = torch.cat([xy, torch.rand(2, 3, 1, generator=g, dtype=torch.float64) + 1], -1)
    faces = torch.tensor([[0, 1, 2]])
    fid = rasterize(pix, faces, (20, 20), cull_backfaces=False)
    bary = barycentrics(pix, faces, fid)
    xy_px = interpolate(pix[..., :2], faces, fid, bary)
    cov = fid >= 0
    centres = pixel_centers((20, 20), dtype=torch.float64).expand(2, 20, 20, 2)
    assert cov.sum() > 20
    torch.testing.assert_close(xy_px[cov], centres[cov])
    torch.testing.assert_close(bary[cov].sum(-1), torch.ones(int(cov.sum()), dtype=torch.float64))


def test_perspective_barycentrics_are_perspective_correct():
    # a slanted triangle in 3D; interpolated camera-space points must re-project to the pixel
    tri = torch.tensor([[[-0.5, -0.4, 0.0], [0.6, -0.3, -0.8], [0.0, 0.7, 0.5]]], dtype=torch.float64)
    cam = perspective_camera(torch.tensor([[0.0, 0.0, 3.0]], dtype=torch.float64),
                             torch.zeros(1, 3, dtype=torch.float64), 40.0, (32, 32))
    pix = project(tri, cam)
    faces = torch.tensor([[0, 1, 2]])
    fid = rasterize(pix, faces, cam.size, orthographic=False, cull_backfaces=False)
    bary = barycentrics(pix, faces, fid, orthographic=False)
    pts = interpolate(tri, faces, fid, bary)  # (1, H, W, 3) world points
    cov = fid >= 0
    reproj = project(pts.reshape(1, -1, 3), cam).reshape(1, 32, 32, 3)[..., :2]
    centres = pixel_centers((32, 32), dtype=torch.float64)[None].expand_as(reproj)
    assert cov.sum() > 50
    torch.testing.assert_close(reproj[cov], centres[cov], atol=1e-9, rtol=0)


def test_cameras_project_known_points():
    eye = torch.tensor([[0.0, 0.0, 5.0]])
    tgt = torch.tensor([[1.0, 2.0, 0.0]])
    rot, trans = look_at(eye, tgt)
    torch.testing.assert_close(rot[0] @ rot[0].T, torch.eye(3), atol=1e-6, rtol=0)
    assert torch.det(rot[0]) > 0
    cam = orthographic_camera(eye, tgt, 2.0, (64, 64))  # 32 px per unit
    p = project(torch.tensor([[[1.0, 2.0, 0.0], [1.5, 2.0, 0.0], [1.0, 2.5, 0.3]]]), cam)[0]
    # target at the centre; world +x goes right, +y goes up (smaller row)
    assert abs(p[0, 0] - 32) < 1e-3 and abs(p[0, 1] - 32) < 1e-3
    assert p[1, 0] > 32 + 15 and p[2, 1] < 32 - 15
    cam = perspective_camera(torch.tensor([[0.0, 0.0, 4.0]]), torch.zeros(1, 3), 90.0, (40, 40))
    p = project(torch.tensor([[[1.0, 0.0, 0.0], [0.0, 0.0, 2.0]]]), cam)[0]
    f = 20 / math.tan(math.radians(45))
    assert abs(p[0, 0] - (20 + f * 1 / 4)) < 1e-4 and abs(p[0, 2] - 4) < 1e-5 and abs(p[1, 2] - 2) < 1e-5


def test_vertex_normals_of_a_sphere_are_radial():
    # UV sphere, outward counter-clockwise faces
    nu, nv = 24, 12
    th = torch.linspace(0, math.pi, nv + 1)[1:-1]
    ph = torch.arange(nu) * 2 * math.pi / nu
    ring = torch.stack([torch.sin(th)[:, None] * torch.cos(ph), torch.cos(th)[:, None].expand(-1, nu),
                        torch.sin(th)[:, None] * torch.sin(ph)], -1).reshape(-1, 3)
    v = torch.cat([torch.tensor([[0.0, 1.0, 0.0]]), ring, torch.tensor([[0.0, -1.0, 0.0]])])
    faces = []
    for i in range(nv - 2):
        for j in range(nu):
            a, b = 1 + i * nu + j, 1 + i * nu + (j + 1) % nu
            c, d = a + nu, b + nu
            faces += [[a, b, c], [b, d, c]]
    for j in range(nu):
        faces.append([0, 1 + (j + 1) % nu, 1 + j])
        last = 1 + (nv - 2) * nu
        faces.append([len(v) - 1, last + j, last + (j + 1) % nu])
    faces = torch.tensor(faces)
    n = vertex_normals(v[None], faces)[0]
    cos = (n * v).sum(-1)
    assert cos.min() > 0.98, cos.min()
