"""The compiled video renderer against the torch one (:func:`avguide.render.fastframes.render_frames`,
itself tested against the differentiable renderer), on the real head and on hand-made meshes.

What is compared: face ids pixel for pixel (a pixel may differ only where its centre lies within
1e-3 px of an edge of one of the two faces, or where the two faces' depths there are equal to
1e-6 of the depth range: float32 rounding decides those), and the sRGB bytes: at most 2 levels
of 255 apart anywhere, less than 0.05 levels on average.
"""

import numpy as np
import pytest
import torch

from avguide.render import albedo_from_parts, face_neighbors, project
from avguide.render import jitraster
from avguide.render.fastframes import _window, render_frames
from avguide.render.fastraster import cull_plan, drawn_faces, rasterize_video
from avguide.render.raster import rasterize_reference
from avguide.render.video import video_camera

pytestmark = pytest.mark.skipif(not jitraster.available(), reason="numba is not installed")

EDGE_TOL = 1e-3
"""Pixel centres closer than this (pixels) to an edge of either face may go to either."""
DEPTH_TOL = 1e-6
"""Depths closer than this fraction of the image's depth range may go to either face."""


def _poses(head, n: int, seed: int) -> torch.Tensor:
    """(n, V, 3): the jaw opening (0..0.8), the head turned up to 10 degrees about y, 0.2 mm jitter."""
    g = torch.Generator().manual_seed(seed)
    v = head.vertices + torch.rand(n, 1, 1, generator=g) * 0.8 * head.jaw_open
    a = (torch.rand(n, generator=g) - 0.5) * 0.35
    c, s, z, o = torch.cos(a), torch.sin(a), torch.zeros(n), torch.ones(n)
    rot = torch.stack([torch.stack([c, z, s], -1), torch.stack([z, o, z], -1), torch.stack([-s, z, c], -1)], 1)
    mid = head.vertices.mean(0)
    return (v - mid) @ rot.transpose(1, 2) + mid + 2e-4 * torch.randn(v.shape, generator=g)


def _edge_distance(pix: np.ndarray, faces: np.ndarray, img: np.ndarray, face: np.ndarray, px: np.ndarray,
                   py: np.ndarray) -> np.ndarray:
    """(K,) float64 distance (pixels) of each point to the nearest edge line of its face (inf for -1)."""
    out = np.full(face.shape, np.inf)
    ok = face >= 0
    corners = pix[img[ok][:, None], faces[face[ok]], :2].astype(np.float64)  # (K', 3, 2)
    p, q = corners, np.roll(corners, -1, 1)
    d = q - p
    cross = d[..., 0] * (py[ok, None] - p[..., 1]) - d[..., 1] * (px[ok, None] - p[..., 0])
    out[ok] = (np.abs(cross) / np.maximum(np.hypot(d[..., 0], d[..., 1]), 1e-30)).min(1)
    return out


def _depth(pix: np.ndarray, faces: np.ndarray, img: np.ndarray, face: np.ndarray, px: np.ndarray,
           py: np.ndarray) -> np.ndarray:
    """(K,) float64 depth of each face's plane at the points (inf for -1)."""
    out = np.full(face.shape, np.inf)
    ok = face >= 0
    c = pix[img[ok][:, None], faces[face[ok]]].astype(np.float64)  # (K', 3, 3)
    d1, d2 = c[:, 1] - c[:, 0], c[:, 2] - c[:, 0]
    det = d1[:, 0] * d2[:, 1] - d2[:, 0] * d1[:, 1]
    ex, ey = px[ok] - c[:, 0, 0], py[ok] - c[:, 0, 1]
    w1 = (ex * d2[:, 1] - ey * d2[:, 0]) / det
    w2 = (ey * d1[:, 0] - ex * d1[:, 1]) / det
    out[ok] = c[:, 0, 2] + w1 * d1[:, 2] + w2 * d2[:, 2]
    return out


def _untied_mismatches(pix: torch.Tensor, faces: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> tuple[int, int]:
    """(all mismatches, mismatches that are no edge or depth tie) between face ids a and b (N, H, W)."""
    p, f = pix.detach().double().numpy(), faces.numpy()
    img, row, col = np.nonzero((a != b).numpy())
    px, py = col + 0.5, row + 0.5
    fa, fb = a.numpy()[img, row, col], b.numpy()[img, row, col]
    edge = np.minimum(_edge_distance(p, f, img, fa, px, py), _edge_distance(p, f, img, fb, px, py)) < EDGE_TOL
    span = float(p[..., 2].max() - p[..., 2].min())
    depth = np.abs(_depth(p, f, img, fa, px, py) - _depth(p, f, img, fb, px, py)) <= DEPTH_TOL * span
    return len(img), int((~edge & ~depth).sum())


@pytest.mark.parametrize("view", ["three_quarter", "front"])
def test_face_ids_equal_the_torch_rasteriser_on_the_head(head, view):
    v = _poses(head, 3, seed=11)
    cam = video_camera(head.vertices, view, 256)
    pix = project(v, cam)
    draw = drawn_faces(pix, head.faces, cull_plan(head.vertices, head.faces))
    ours = jitraster.rasterize_jit(pix, head.faces, cam.size, draw=draw)
    torch_ids = rasterize_video(pix, head.faces, cam.size, draw=draw)
    assert int((ours >= 0).sum()) > 0.25 * ours.numel()
    n_diff, untied = _untied_mismatches(pix, head.faces, ours, torch_ids)
    assert untied == 0 and n_diff <= 20, (n_diff, untied)


def test_render_frames_jit_equals_render_frames_on_the_head(head):
    """Moving, jittered, turned heads at 256 px with an RGB background: bytes within 2 levels,
    0.05 levels on average."""
    v = _poses(head, 3, seed=12)
    alb = albedo_from_parts(torch.from_numpy(head.vertex_part.astype(np.int64)), head.part_names)
    cam = video_camera(head.vertices, "three_quarter", 256)
    kw = dict(plan=cull_plan(head.vertices, head.faces), neighbors=face_neighbors(head.faces),
              background=(0.08, 0.1, 0.3))
    ours = jitraster.render_frames_jit(v, head.faces, cam, alb, **kw).numpy().astype(np.int64)
    ref = render_frames(v, head.faces, cam, alb, **kw).numpy().astype(np.int64)
    assert ours.shape == ref.shape == (3, 256, 256, 3)
    assert (ref != ref[:, :1, :1]).any(-1).mean() > 0.3  # the head covers a good part of the images
    diff = np.abs(ours - ref)
    assert diff.max() <= 2 and diff.mean() < 0.05, (diff.max(), diff.mean())
    # without antialiasing too
    ours = jitraster.render_frames_jit(v, head.faces, cam, alb, **{**kw, "neighbors": None}).numpy()
    ref = render_frames(v, head.faces, cam, alb, **{**kw, "neighbors": None}).numpy()
    diff = np.abs(ours.astype(np.int64) - ref)
    assert diff.max() <= 2 and diff.mean() < 0.05, (diff.max(), diff.mean())


def test_hand_made_triangles():
    """A square of two triangles whose diagonal runs through pixel centres (no crack, no pixel
    twice), a triangle in front of it, and two coincident triangles (the lower index wins)."""
    pix = torch.tensor([[[2.0, 2.0, 1.0], [12.0, 2.0, 1.0], [12.0, 12.0, 1.0], [2.0, 12.0, 1.0],  # square
                         [6.0, 0.0, 0.5], [15.0, 9.0, 0.5], [6.0, 9.0, 0.5],  # in front
                         [1.0, 13.0, 2.0], [8.0, 13.0, 2.0], [1.0, 15.0, 2.0]]])  # below it, twice
    faces = torch.tensor([[0, 2, 1], [0, 3, 2], [4, 5, 6], [7, 9, 8], [7, 8, 9]])
    ids = jitraster.rasterize_jit(pix, faces, (16, 16))
    ref = rasterize_reference(pix, faces, (16, 16), cull_backfaces=False)
    n_diff, untied = _untied_mismatches(pix, faces, ids, ref)
    assert untied == 0
    square = ids[0, 2:12, 2:12]
    assert bool(((square == 0) | (square == 1) | (square == 2)).all())  # every centre of the square covered
    assert int((ids[0] == 3).sum()) > 0 and not bool((ids[0] == 4).any())  # coincident: face 3 wins
    assert int(ids[0, 8, 10]) == 2 and int(ids[0, 10, 3]) == 1 and int(ids[0, 0, 0]) == -1
    # the coverage of a triangle is the set of centres on the inner side of (or on) its edges
    inside = (ids[0] == 3).numpy()
    row, col = np.mgrid[0:16, 0:16] + 0.5
    assert np.array_equal(inside, (row >= 13) & (col >= 1) & (2 * (col - 1) + 7 * (row - 13) <= 14))


def test_coloured_frames_of_a_hand_made_mesh():
    """A tetrahedron seen from a corner: every byte within 2 levels of render_frames."""
    verts = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    faces = torch.tensor([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    cam = video_camera(verts, "three_quarter", 48)
    alb = torch.tensor([[0.9, 0.2, 0.2], [0.2, 0.9, 0.2], [0.2, 0.2, 0.9], [0.8, 0.8, 0.8]])
    seq = torch.stack([verts, verts * 1.05, verts + 0.02])  # (3, 4, 3)
    kw = dict(plan=cull_plan(verts, faces), neighbors=face_neighbors(faces), background=0.3)
    ours = jitraster.render_frames_jit(seq, faces, cam, alb, **kw).numpy().astype(np.int64)
    ref = render_frames(seq, faces, cam, alb, **kw).numpy().astype(np.int64)
    assert (ref != ref[:, :1, :1]).any(-1).mean() > 0.2
    assert np.abs(ours - ref).max() <= 2


def test_window_and_nothing_in_view(head):
    """The window's offset is applied (a head cut by the image edge), and an empty view is background."""
    alb = torch.full((head.vertices.shape[0], 3), 0.5)
    plan, nb = cull_plan(head.vertices, head.faces), face_neighbors(head.faces)
    cam = video_camera(head.vertices, "front", 64)
    moved = cam.window(-20, 25, cam.size)  # the head slides right and down, partly out of the image
    v = head.vertices[None]
    assert _window(project(v, moved), moved.size)[2:] != (64, 64)
    ours = jitraster.render_frames_jit(v, head.faces, moved, alb, plan=plan, neighbors=nb, background=0.2)
    ref = render_frames(v, head.faces, moved, alb, plan=plan, neighbors=nb, background=0.2)
    assert int(np.abs(ours.numpy().astype(int) - ref.numpy()).max()) <= 2
    away = cam.window(0, 500, cam.size)
    out = jitraster.render_frames_jit(v, head.faces, away, alb, plan=plan, neighbors=nb, background=(0.0, 1.0, 0.25))
    expected = torch.tensor([0, 255, round(255 * 0.25 ** (1 / 2.2))], dtype=torch.uint8)
    assert out.shape == (1, 64, 64, 3) and bool((out == expected).all())


def test_without_numba_the_torch_renderer_draws(head, monkeypatch):
    v = _poses(head, 1, seed=13)
    alb = torch.full((head.vertices.shape[0], 3), 0.6)
    cam = video_camera(head.vertices, "front", 48)
    kw = dict(plan=cull_plan(head.vertices, head.faces), neighbors=face_neighbors(head.faces), background=0.1)
    monkeypatch.setattr(jitraster, "available", lambda: False)
    assert not jitraster.available()
    assert torch.equal(jitraster.render_frames_jit(v, head.faces, cam, alb, **kw),
                       render_frames(v, head.faces, cam, alb, **kw))


def test_warm_up_loads_the_kernel_of_a_video():
    """``avguide animate`` loads the machine code early; a video's frames then need no compilation."""
    jitraster.warm_up()
    assert len(jitraster._render_chunk.signatures) >= 1
