"""The compiled antialiasing (avguide.render.jitalias) against its torch path: the same pairs, hence
identical images (torch.equal); gradients to a rounding (each term in float64, added in the
input's dtype: 1e-6 of the largest in float32, 1e-13 in float64); finite differences."""

import pytest
import torch

from avguide.render import face_neighbors, lip_camera, project, rasterize
from avguide.render import jitalias
from avguide.render.antialias import antialias_planes

pytestmark = pytest.mark.skipif(not jitalias.available(), reason="numba is not importable")


def _both(pix0, faces, face_id, nb, ortho, seed=1):
    """antialias_planes with the compiled and the torch search: (image, d pix, d planes) each."""
    n, h, w = face_id.shape
    g = torch.Generator().manual_seed(seed)
    planes0 = torch.rand(4, n * h * w, generator=g, dtype=pix0.dtype)
    weights = torch.randn(4, n * h * w, generator=g, dtype=pix0.dtype)
    out = {}
    for jit in (True, False):
        pix, planes = pix0.clone().requires_grad_(True), planes0.clone().requires_grad_(True)
        img = antialias_planes(planes, pix, faces, face_id, nb, orthographic=ortho, jit=jit)
        (img * weights).sum().backward()
        out[jit] = img.detach(), pix.grad, planes.grad, int((img != planes0).any(0).sum())
    return out[True], out[False]


def _check(fast, slow):
    """Images identical, gradients (d pix, d planes) within a rounding."""
    assert torch.equal(fast[0], slow[0])
    tol = 1e-6 if fast[0].dtype == torch.float32 else 1e-13
    for a, b in zip(fast[1:3], slow[1:3]):
        assert float(b.abs().max()) > 0
        torch.testing.assert_close(a, b, rtol=0, atol=tol * float(b.abs().max()))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("ortho", [True, False])
def test_head_pairs_images_and_gradients_are_identical(head, dtype, ortho):
    g = torch.Generator().manual_seed(2)
    v = head.vertices[None] + torch.rand(5, 1, 1, generator=g) * 0.7 * head.jaw_open[None]
    v = (v + 3e-4 * torch.randn(v.shape, generator=g)).to(dtype)
    nb = face_neighbors(head.faces)
    for size in (34, 48):
        cam = lip_camera(head.vertices.to(dtype), head.lips, size=size, orthographic=ortho)
        pix = project(v, cam)
        face_id = rasterize(pix, head.faces, cam.size, orthographic=ortho)
        fast, slow = _both(pix, head.faces, face_id, nb, ortho)
        assert fast[3] > 100  # pixels changed by the antialiasing
        _check(fast, slow)


def test_triangle_soup_with_background_and_open_edges(soup):
    """Many faces without neighbours, faces over background, overlaps, both orientations."""
    g = torch.Generator().manual_seed(3)
    for _ in range(3):
        pix, faces = soup(g)
        nb = face_neighbors(faces)
        for cull in (True, False):
            face_id = rasterize(pix, faces, (40, 40), cull_backfaces=cull)
            fast, slow = _both(pix, faces, face_id, nb, True, seed=4)
            assert fast[3] > 50
            _check(fast, slow)


def test_pairs_of_a_single_triangle():
    pix = torch.tensor([[[2.3, 1.7, 1.0], [13.6, 4.1, 1.0], [5.2, 11.8, 1.0]]])
    faces = torch.tensor([[0, 2, 1]])  # clockwise in the y-down image: front-facing
    face_id = rasterize(pix, faces, (16, 16))
    idx, centres, sign, rows = jitalias.silhouette_pairs(pix, faces, face_id, face_neighbors(faces))
    k = sign.numel()
    assert k > 10 and 0 < rows < k and bool((sign == -1).all())
    assert bool((face_id.view(-1)[idx[0]] == 0).all()) and bool((face_id.view(-1)[idx[1]] == -1).all())
    hw = 16
    assert torch.equal(centres[0], (idx[0] % hw).float() + 0.5)
    assert torch.equal(centres[3], (idx[1] // hw).float() + 0.5)
    empty = jitalias.silhouette_pairs(pix, faces, torch.full((1, 16, 16), -1), face_neighbors(faces))
    assert empty[2].numel() == 0 and empty[3] == 0


def test_blend_gradients_match_finite_differences(head):
    """The hand-written backward of the blend, with the pairs held fixed (its inputs)."""
    g = torch.Generator().manual_seed(5)
    v = (head.vertices[None] + 0.5 * head.jaw_open[None]).double()
    cam = lip_camera(head.vertices.double(), head.lips, size=24)
    pix = project(v, cam)
    face_id = rasterize(pix, head.faces, cam.size)
    idx, centres, sign, _ = jitalias.silhouette_pairs(pix, head.faces, face_id, face_neighbors(head.faces))
    assert sign.numel() >= 10
    used = idx[2:].reshape(-1).unique()  # perturb only the edge ends the blends read (a small gradcheck)
    planes = torch.rand(3, 24 * 24, generator=g, dtype=torch.float64).requires_grad_(True)
    ends = pix.reshape(-1, 3)[used].detach().requires_grad_(True)

    def fn(planes, ends):
        p = pix.detach().reshape(-1, 3).index_put((used,), ends).view_as(pix)
        return jitalias.blend(planes, p, idx, centres, sign)

    torch.autograd.gradcheck(fn, (planes, ends), eps=1e-6, atol=1e-6, rtol=1e-5)
