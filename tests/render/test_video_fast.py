"""The inference renderer of videos against the differentiable one, and the fast video path end to end.

Truth: :func:`avguide.render.raster.rasterize_reference` (every face against every pixel) for the
face ids, :func:`avguide.render.mesh.render_mesh` with ``cull_backfaces=False`` (the renderer of
the videos so far, itself tested against full-image references) for the images, and ffmpeg's own
decoder for the files.
"""

import subprocess

import numpy as np
import pytest
import torch

from avguide.errors import BadInputError
from avguide.render import albedo_from_parts, face_neighbors, project, render_mesh
from avguide.render.fastframes import render_frames
from avguide.render.fastraster import _area, _corners, cull_plan, drawn_faces, rasterize_video
from avguide.render.raster import rasterize_reference
from avguide.render.video import GAMMA, VIEWS, _ffmpeg_exe, render_video, video_camera

TETRA_V = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
TETRA_F = torch.tensor([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])  # counter-clockwise seen from outside


def _poses(head, n: int, seed: int) -> torch.Tensor:
    """(n, V, 3) jaw openings in [0, 0.8], turned up to 10 degrees about y, with 0.2 mm jitter."""
    g = torch.Generator().manual_seed(seed)
    jaw = torch.rand(n, 1, 1, generator=g) * 0.8
    v = head.vertices + jaw * head.jaw_open
    a = (torch.rand(n, generator=g) - 0.5) * 0.35
    c, s, z, o = torch.cos(a), torch.sin(a), torch.zeros(n), torch.ones(n)
    rot = torch.stack([torch.stack([c, z, s], -1), torch.stack([z, o, z], -1), torch.stack([-s, z, c], -1)], 1)
    mid = head.vertices.mean(0)
    return (v - mid) @ rot.transpose(1, 2) + mid + 2e-4 * torch.randn(v.shape, generator=g)


def _albedo(head) -> torch.Tensor:
    return albedo_from_parts(torch.from_numpy(head.vertex_part.astype(np.int64)), head.part_names)


def test_cull_plan_of_the_head_and_of_small_meshes(head):
    plan = cull_plan(head.vertices, head.faces)
    # every component of the head is edge-manifold, consistently and outwardly oriented; the neck
    # and the two rows of teeth are open: three boundary loops
    assert bool(plan.cullable.all()) and plan.n_loops == 3
    closed = cull_plan(TETRA_V, TETRA_F)
    assert bool(closed.cullable.all()) and closed.n_loops == 0
    assert not cull_plan(TETRA_V, TETRA_F.flip(1)).cullable.any()  # inside out
    flipped = TETRA_F.clone()
    flipped[0] = flipped[0].flip(0)  # one face against its neighbours
    assert not cull_plan(TETRA_V, flipped).cullable.any()
    # an open tetrahedron (no bottom) and a separate closed one: one loop, on the open one's rim
    two = cull_plan(torch.cat([TETRA_V, TETRA_V + 2]), torch.cat([TETRA_F[1:], TETRA_F + 4]))
    assert bool(two.cullable.all()) and two.n_loops == 1 and sorted(two.rim.tolist()) == [0, 1, 2]


@pytest.mark.parametrize("view", sorted(VIEWS))
def test_culling_hides_no_face_that_shows(head, view):
    """Dropping the back faces the plan allows changes no pixel; dropping every back face would
    (the three-quarter view looks into the open neck)."""
    v = _poses(head, 3, seed=1)
    cam = video_camera(head.vertices, view, 160)
    pix = project(v, cam)
    plan = cull_plan(head.vertices, head.faces)
    draw = drawn_faces(pix, head.faces, plan)
    x, y, _ = _corners(pix, head.faces)
    front = _area(x, y) < 0
    assert bool((draw & ~front).any()) and int(draw.sum()) < 0.85 * draw.numel()  # some back faces, not all
    everything = rasterize_video(pix, head.faces, cam.size)
    assert torch.equal(rasterize_video(pix, head.faces, cam.size, draw=draw), everything)
    naive = rasterize_video(pix, head.faces, cam.size, draw=front)
    if view == "three_quarter":
        assert int((naive != everything).sum()) > 20


def test_rasterize_video_equals_the_reference_rasteriser(head, soup):
    v = _poses(head, 2, seed=2)
    cam = video_camera(head.vertices, "three_quarter", 96)
    pix = project(v, cam)
    fast = rasterize_video(pix, head.faces, cam.size, draw=drawn_faces(pix, head.faces, cull_plan(v[0], head.faces)))
    ref = rasterize_reference(pix, head.faces, cam.size, cull_backfaces=False)
    assert int((ref >= 0).sum()) > 0.25 * ref.numel()
    # pixel centres within float32 rounding of an edge may go to either face: none here
    assert int((fast != ref).sum()) <= 2
    # random triangles of all sizes, partly off screen, both orientations, exact depth ties
    pix, faces = soup(torch.Generator().manual_seed(3))
    fast = rasterize_video(pix, faces, (40, 36))
    ref = rasterize_reference(pix, faces, (40, 36), cull_backfaces=False)
    assert int((ref >= 0).sum()) > 500 and int((fast != ref).sum()) <= 2
    assert not bool(((fast >= 60) & (fast < 65)).any())  # on a depth tie the lower face index wins


def test_rasterize_video_batch_and_empty_images():
    pix = torch.tensor([[[2.0, 2.0, 1.0], [30.0, 4.0, 1.0], [6.0, 28.0, 2.0]]]).repeat(2, 1, 1)
    pix[1, :, 0] += 100.0  # second image: off screen
    fid = rasterize_video(pix, torch.tensor([[0, 1, 2]]), (32, 32))
    assert int((fid[0] == 0).sum()) > 300 and bool((fid[1] == -1).all())
    assert torch.equal(fid[:1], rasterize_video(pix[:1], torch.tensor([[0, 1, 2]]), (32, 32)))


@pytest.mark.parametrize("antialias", [True, False])
def test_render_frames_equals_render_mesh(head, antialias):
    v = _poses(head, 3, seed=4)
    alb = _albedo(head)
    nb = face_neighbors(head.faces) if antialias else None
    cam = video_camera(head.vertices, "three_quarter", 128)
    fast = render_frames(v, head.faces, cam, alb, plan=cull_plan(head.vertices, head.faces), neighbors=nb,
                         background=0.08).numpy().astype(np.int64)
    img, _ = render_mesh(v, head.faces, cam, alb, neighbors=nb, background=0.08, cull_backfaces=False)
    ref = (img.clamp(0, 1) ** (1 / GAMMA) * 255 + 0.5).byte().permute(0, 2, 3, 1).numpy().astype(np.int64)
    diff = np.abs(fast - ref).max(-1)  # (N, H, W) levels of 255
    assert fast.shape == (3, 128, 128, 3) and fast.dtype == np.int64
    assert (ref != ref[:, :1, :1]).any(-1).mean() > 0.3  # the head covers a good part of the image
    assert diff.mean() < 0.01 and (diff > 1).mean() < 2e-4


def _decode(path, width: int, height: int) -> np.ndarray:
    """(T, H, W, 3) uint8 frames of an mp4 decoded by ffmpeg."""
    raw = subprocess.run([_ffmpeg_exe(), "-loglevel", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt",
                          "rgb24", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, height, width, 3)


def test_fast_video_decodes_to_the_rendered_frames(head, tmp_path):
    seqs = [_poses(head, 7, seed=5).numpy(), _poses(head, 7, seed=6).numpy()]
    faces = head.faces.numpy()
    kw = dict(fps=25, vertex_part=head.vertex_part, part_names=head.part_names, captions=["a", "b"], size=64,
              chunk=2)
    info = render_video(seqs, faces, tmp_path / "v.mp4", **kw)
    assert info["frames"] == 7
    video = _decode(tmp_path / "v.mp4", 128, 28 + 64)
    assert video.shape == (7, 92, 128, 3)
    cam = video_camera(torch.from_numpy(seqs[0][0]), "three_quarter", 64)
    plan, nb, alb = cull_plan(head.vertices, head.faces), face_neighbors(head.faces), _albedo(head)
    for i, s in enumerate(seqs):
        frames = render_frames(torch.from_numpy(s), head.faces, cam, alb, plan=plan, neighbors=nb, background=0.08)
        panel = video[:, 28:, 64 * i: 64 * (i + 1)].astype(float)  # (T, 64, 64, 3)
        err = np.abs(panel - frames.numpy())  # x264 at crf 18 with 4:2:0 chroma: about 2 levels at 64 px
        assert err.mean() < 3.0 and 10 * np.log10(255 ** 2 / np.square(err).mean()) > 33
        # each decoded frame is nearest to its own rendered frame (the chunks kept their order)
        cross = np.abs(panel[:, None] - frames.numpy()[None].astype(float)).mean((2, 3, 4))  # (T, T)
        assert np.array_equal(cross.argmin(1), np.arange(7))
    # one worker and the differentiable renderer write the same frames (order kept, same images)
    render_video(seqs, faces, tmp_path / "w.mp4", workers=1, **kw)
    assert np.array_equal(_decode(tmp_path / "w.mp4", 128, 92), video)
    render_video(seqs, faces, tmp_path / "m.mp4", renderer="mesh", **kw)
    assert np.abs(_decode(tmp_path / "m.mp4", 128, 92).astype(float) - video).mean() < 0.05


def test_render_video_rejects_unknown_renderer_preset_and_bad_numbers(head, tmp_path):
    seq = head.vertices[None].numpy()
    for kw, match in [(dict(renderer="gl"), "renderer"), (dict(preset="quick"), "preset"), (dict(crf=60), "crf"),
                      (dict(workers=0), "workers"), (dict(chunk=0), "chunk")]:
        with pytest.raises(ValueError, match=match) as e:  # the caller's arguments: a programming error
            render_video([seq], head.faces.numpy(), tmp_path / "x.mp4", fps=25, size=32, **kw)
        assert not isinstance(e.value, BadInputError)
    assert not (tmp_path / "x.mp4").exists()
