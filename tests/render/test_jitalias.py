"""The compiled silhouette search (avguide.render.jitalias) gives antialias_planes exactly the pairs of
its torch path: identical images and gradients (torch.equal)."""

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
        for a, b in zip(fast[:3], slow[:3]):
            assert torch.equal(a, b)


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
            for a, b in zip(fast[:3], slow[:3]):
                assert torch.equal(a, b)


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
