"""lip_gray renders only the part of the mesh its crops can show (window_submesh): the same crops
and vertex gradients as the whole mesh, bit for bit."""

import numpy as np
import pytest
import torch

from avguide.assets.arkit import ARKIT_INDEX
from avguide.assets.head import load_head
from avguide.lipreader.lipvideo import lip_cameras, lip_gray, make_assets
from avguide.render import lip_face_mask
from avguide.render.shading import head_albedo


@pytest.fixture(scope="module")
def head():
    h = load_head()
    return h, make_assets(h.faces, h.regions["lips"], head_albedo(h).numpy())


def _speech(h, t: int, seed: int) -> torch.Tensor:
    """(2, t, V, 3) float32: two sequences opening the jaw, with 0.2 mm of noise on every vertex."""
    g = torch.Generator().manual_seed(seed)
    jaw = torch.from_numpy(np.array(h.blendshapes[ARKIT_INDEX["jawOpen"]], np.float32))
    base = torch.from_numpy(np.array(h.vertices, np.float32))
    w = torch.rand(2, t, 1, 1, generator=g) * 0.7
    return base + w * jaw + 2e-4 * torch.randn(2, t, *base.shape, generator=g)


@pytest.mark.parametrize("crop, dtype, masked", [(32, torch.float32, True), (44, torch.float32, False),
                                                 (16, torch.float32, True), (32, torch.float64, True)])
def test_submesh_equals_whole_mesh(head, crop, dtype, masked):
    h, assets = head
    verts = _speech(h, 9, crop).to(dtype)
    lengths = torch.tensor([9, 6])
    tmpl = torch.from_numpy(np.array(h.vertices, np.float32))[None].repeat(2, 1, 1).to(dtype)
    cam = lip_cameras(tmpl, assets, crop)
    mask = lip_face_mask(tmpl, assets.faces, cam) if masked else None
    weight = torch.randn(2, 8, crop, crop, generator=torch.Generator().manual_seed(1), dtype=dtype)
    out = {}
    for sub in (False, True):
        v = verts.clone().requires_grad_()
        gray, len25 = lip_gray(v, lengths, 30.0, assets, cam, crop, face_mask=mask, workers=2, chunk=3, submesh=sub)
        (gray * weight).sum().backward()
        out[sub] = gray.detach(), len25, v.grad
    assert out[True][0].std() > 0.05 and float(out[True][2].abs().max()) > 0  # images, and a gradient
    for a, b in zip(out[True], out[False]):
        assert torch.equal(a, b)
