"""The video's frames drawn in a process of their own (:class:`avguide.render.frameprocess.FrameProcess`,
started by :func:`avguide.animate.start_frame_process`): the same frames as the compiled renderer
in this process, bit for bit, and the same video file."""

import numpy as np
import pytest
import torch

from avguide.animate import _end_frame_process, start_frame_process
from avguide.render import albedo_from_parts, face_neighbors
from avguide.render import jitraster
from avguide.render.fastraster import cull_plan
from avguide.render.frameprocess import FrameProcess, frame_arrays, scene_arrays
from avguide.render.video import BACKGROUND, render_video, video_camera

pytestmark = pytest.mark.skipif(not jitraster.available(), reason="numba is not installed")


def _poses(head, n: int, seed: int) -> torch.Tensor:
    """(n, V, 3): jaw openings in [0, 0.8] and 0.2 mm jitter."""
    g = torch.Generator().manual_seed(seed)
    v = head.vertices + torch.rand(n, 1, 1, generator=g) * 0.8 * head.jaw_open
    return v + 2e-4 * torch.randn(v.shape, generator=g)


@pytest.fixture
def frame_process():
    proc = start_frame_process(2)
    yield FrameProcess(proc)
    _end_frame_process(proc)


def test_frames_of_the_process_equal_the_compiled_renderer_here(head, frame_process):
    v = _poses(head, 6, seed=21)
    alb = albedo_from_parts(torch.from_numpy(head.vertex_part.astype(np.int64)), head.part_names)
    cam = video_camera(head.vertices, "three_quarter", 96)
    plan, nb = cull_plan(head.vertices, head.faces), face_neighbors(head.faces)
    assert frame_process.ready()
    scene = scene_arrays(head.faces, alb, plan=plan, neighbors=nb, background=BACKGROUND)
    scene["rot"] = cam.rotation[0].double().numpy()
    frame_process.set_scene(scene)
    for s0 in (0, 4):  # two chunks asked before either is received: answered in order
        frame_process.ask(*frame_arrays(v[s0: s0 + 4], cam), cam.size)
    got = np.concatenate([frame_process.receive(), frame_process.receive()])
    here = jitraster.render_frames_jit(v, head.faces, cam, alb, plan=plan, neighbors=nb, background=BACKGROUND)
    assert got.shape == (6, 96, 96, 3) and np.array_equal(got, here.numpy())


@pytest.mark.parametrize("caption_early", [False, True])
def test_render_video_with_the_process_writes_the_same_file(head, frame_process, tmp_path, caption_early):
    """Captions included: drawn by the process too, asked by render_video or earlier (as
    ``avguide animate`` does while it animates)."""
    seq = _poses(head, 9, seed=22).numpy()
    kw = dict(fps=30.0, vertex_part=head.vertex_part, part_names=tuple(head.part_names), size=64,
              captions=["a caption"], progress=False)
    if caption_early:
        assert frame_process.ready()
        frame_process.ask_captions(["a caption"], 64)
    render_video([seq], head.faces.numpy(), tmp_path / "here.mp4", **kw)
    render_video([seq], head.faces.numpy(), tmp_path / "there.mp4", frame_process=frame_process, **kw)
    assert (tmp_path / "here.mp4").read_bytes() == (tmp_path / "there.mp4").read_bytes()


def test_warm_up_loads_the_signature_a_video_uses(head):
    """The frame process (and ``avguide animate`` without one) loads the kernel by :func:`warm_up`
    on a triangle: a video's frames must then need no other compiled version."""
    jitraster.warm_up()
    before = list(jitraster._render_chunk.signatures)
    v = _poses(head, 1, seed=23)
    cam = video_camera(head.vertices, "front", 32)
    jitraster.render_frames_jit(v, head.faces, cam, torch.full((head.vertices.shape[0], 3), 0.5),
                                plan=cull_plan(head.vertices, head.faces), neighbors=face_neighbors(head.faces))
    assert list(jitraster._render_chunk.signatures) == before
