"""render_frames draws only the window the meshes can reach: heads partly outside the image, out
of view, and coloured backgrounds give the images of the differentiable renderer."""

import numpy as np
import pytest
import torch

from avguide.render import albedo_from_parts, face_neighbors, render_mesh
from avguide.render.camera import Camera
from avguide.render.fastframes import render_frames
from avguide.render.fastraster import cull_plan
from avguide.render.video import GAMMA, video_camera


def _shifted(cam: Camera, dx: float, dy: float) -> Camera:
    """The camera with its principal point moved by (dx, dy) pixels (the head slides in the image)."""
    return Camera(cam.rotation, cam.translation, cam.focal, cam.center + torch.tensor([dx, dy]), cam.size,
                  cam.orthographic)


def _reference(v, head, cam, alb, nb, background) -> np.ndarray:
    img, _ = render_mesh(v, head.faces, cam, alb, neighbors=nb, background=background, cull_backfaces=False)
    return (img.clamp(0, 1) ** (1 / GAMMA) * 255 + 0.5).byte().permute(0, 2, 3, 1).numpy().astype(np.int64)


@pytest.mark.parametrize("shift,background", [((0.0, 0.0), (0.1, 0.3, 0.2)), ((-40.0, 25.0), 0.08),
                                              ((45.0, -30.0), 0.5)])
def test_window_render_equals_render_mesh(head, shift, background):
    """Head centred (an RGB background), or cut by the left and bottom, or the right and top edges."""
    g = torch.Generator().manual_seed(8)
    v = head.vertices + torch.rand(2, 1, 1, generator=g) * 0.6 * head.jaw_open
    v = v + 2e-4 * torch.randn(v.shape, generator=g)
    alb = albedo_from_parts(torch.from_numpy(head.vertex_part.astype(np.int64)), head.part_names)
    nb = face_neighbors(head.faces)
    cam = _shifted(video_camera(head.vertices, "three_quarter", 96), *shift)
    fast = render_frames(v, head.faces, cam, alb, plan=cull_plan(head.vertices, head.faces), neighbors=nb,
                         background=background).numpy().astype(np.int64)
    ref = _reference(v, head, cam, alb, nb, background)
    diff = np.abs(fast - ref).max(-1)  # (N, H, W) levels of 255
    covered = (ref != ref[:, :1, :1]).any(-1).mean()
    assert covered > 0.15
    # float32 rounding of the window-shifted coordinates: a pixel centre within rounding of an
    # edge may change sides (one level here and there)
    assert diff.mean() < 0.01 and (diff > 1).mean() < 2e-4


def test_nothing_in_view_is_background(head):
    cam = _shifted(video_camera(head.vertices, "front", 32), 500.0, 0.0)
    alb = torch.full((head.vertices.shape[0], 3), 0.5)
    out = render_frames(head.vertices[None], head.faces, cam, alb, plan=cull_plan(head.vertices, head.faces),
                        neighbors=face_neighbors(head.faces), background=(0.0, 1.0, 0.25))
    expected = torch.tensor([0, 255, round(255 * 0.25 ** (1 / 2.2))], dtype=torch.uint8)
    assert out.shape == (1, 32, 32, 3) and bool((out == expected).all())
