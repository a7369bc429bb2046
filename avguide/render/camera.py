"""Cameras: world -> pixel projection, orthographic or perspective, batched.

Conventions (OpenCV): camera space has x right, y down, z forward (depth > 0 in front of the
camera). Pixel coordinates are continuous, the image covers ``[0, W] x [0, H]`` and pixel
``(i, j)`` (row, column) has its centre at ``(x, y) = (j + 0.5, i + 0.5)``.

A :class:`Camera` holds N cameras (one per image); every tensor field has leading size N or 1
(1 broadcasts over the images of a batch).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch



@dataclass(frozen=True)
class Camera:
    """N pinhole or orthographic cameras sharing one image size.

    Attributes:
        rotation: (N, 3, 3) float, world -> camera rotation (rows are the camera axes in world).
        translation: (N, 3) float, so that ``x_cam = rotation @ x_world + translation``.
        focal: (N,) float. Perspective: focal length in pixels. Orthographic: pixels per world
            unit.
        center: (N, 2) float, principal point (x, y) in pixels.
        size: (H, W) image size in pixels.
        orthographic: True for an orthographic projection (as the paper), False for perspective.
    """

    rotation: torch.Tensor
    translation: torch.Tensor
    focal: torch.Tensor
    center: torch.Tensor
    size: tuple[int, int]
    orthographic: bool

    def __len__(self) -> int:
        return self.rotation.shape[0]

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "Camera":
        """The same cameras with every tensor moved / cast."""
        f = lambda t: t.to(device=device, dtype=dtype)  # noqa: E731
        return Camera(f(self.rotation), f(self.translation), f(self.focal), f(self.center),
                      self.size, self.orthographic)

    def select(self, index: slice | torch.Tensor) -> "Camera":
        """The cameras of the images at ``index`` (a single broadcast camera stays as it is)."""
        if len(self) == 1:
            return self
        f = lambda t: t[index]  # noqa: E731
        return Camera(f(self.rotation), f(self.translation), f(self.focal), f(self.center),
                      self.size, self.orthographic)

    def window(self, top: int, left: int, size: tuple[int, int]) -> "Camera":
        """The same cameras drawing only the pixels ``[top, top + H) x [left, left + W)`` of their
        image, as an (H, W) image (the principal point moves by the integer offset).

        Pixel (r, c) of the window is pixel (top + r, left + c) of the full image; the projected
        coordinates differ from the full image's minus the offset by float32 rounding only.
        """
        off = torch.tensor([left, top], dtype=self.center.dtype, device=self.center.device)
        return Camera(self.rotation, self.translation, self.focal, self.center - off, tuple(size), self.orthographic)

    def repeat_interleave(self, repeats: int | torch.Tensor) -> "Camera":
        """Camera n repeated ``repeats[n]`` times (e.g. one camera per sequence -> per frame)."""
        f = lambda t: t.repeat_interleave(repeats, dim=0)  # noqa: E731
        return Camera(f(self.rotation), f(self.translation), f(self.focal), f(self.center),
                      self.size, self.orthographic)


def look_at(eye: torch.Tensor, target: torch.Tensor, up: tuple[float, float, float] = (0.0, 1.0, 0.0)
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """World -> camera rotation and translation of cameras at ``eye`` looking at ``target``.

    Args:
        eye: (N, 3) float, camera positions in world units.
        target: (N, 3) float, points the optical axis passes through.
        up: world direction that appears upwards in the image (must not be parallel to the
            viewing direction).
    Returns:
        rotation (N, 3, 3) and translation (N, 3), see :class:`Camera`.
    Raises:
        ValueError: ``eye`` equals ``target`` or ``up`` is parallel to the viewing direction.
    """
    fwd = target - eye  # (N, 3) camera +z
    norm = fwd.norm(dim=-1, keepdim=True)
    if bool((norm < 1e-12).any()):
        raise ValueError("look_at: eye and target coincide; the viewing direction is undefined")
    fwd = fwd / norm
    up_t = torch.tensor(up, dtype=eye.dtype, device=eye.device).expand_as(fwd)
    right = torch.linalg.cross(fwd, up_t, dim=-1)  # camera +x (image right)
    rn = right.norm(dim=-1, keepdim=True)
    if bool((rn < 1e-9).any()):
        raise ValueError(f"look_at: up={up} is parallel to the viewing direction")
    right = right / rn
    down = torch.linalg.cross(fwd, right, dim=-1)  # camera +y (image down)
    rotation = torch.stack([right, down, fwd], dim=-2)  # (N, 3, 3)
    translation = -(rotation @ eye.unsqueeze(-1)).squeeze(-1)  # (N, 3)
    return rotation, translation


def orthographic_camera(eye: torch.Tensor, target: torch.Tensor, width: torch.Tensor | float,
                        size: tuple[int, int], up: tuple[float, float, float] = (0.0, 1.0, 0.0)) -> Camera:
    """Orthographic cameras whose image spans ``width`` world units horizontally, centred on target.

    Args:
        eye: (N, 3) camera positions (only the direction eye -> target matters for the image,
            the distance only for depth values).
        target: (N, 3) world points projected to the image centre.
        width: (N,) or scalar, world extent across the image width.
        size: (H, W) pixels.
        up: world up direction.
    Returns:
        A :class:`Camera` with ``orthographic=True``.
    """
    rot, trans = look_at(eye, target, up)
    h, w = size
    width = torch.as_tensor(width, dtype=eye.dtype, device=eye.device).expand(eye.shape[0])
    focal = w / width  # pixels per world unit
    # the target must land on the image centre: shift the principal point accordingly
    t_cam = (rot @ target.unsqueeze(-1)).squeeze(-1) + trans  # (N, 3), x = y = 0 by construction
    center = torch.stack([w / 2 - focal * t_cam[:, 0], h / 2 - focal * t_cam[:, 1]], dim=-1)
    return Camera(rot, trans, focal, center, (h, w), True)


def perspective_camera(eye: torch.Tensor, target: torch.Tensor, fov_deg: float, size: tuple[int, int],
                       up: tuple[float, float, float] = (0.0, 1.0, 0.0)) -> Camera:
    """Perspective cameras at ``eye`` looking at ``target`` with a horizontal field of view.

    Args:
        eye: (N, 3) camera positions.
        target: (N, 3) points on the optical axis (projected to the image centre).
        fov_deg: horizontal field of view in degrees, in (0, 180).
        size: (H, W) pixels.
        up: world up direction.
    Returns:
        A :class:`Camera` with ``orthographic=False``.
    Raises:
        ValueError: ``fov_deg`` outside (0, 180).
    """
    if not 0.0 < fov_deg < 180.0:
        raise ValueError(f"perspective_camera: fov_deg={fov_deg} must be in (0, 180)")
    rot, trans = look_at(eye, target, up)
    h, w = size
    n = eye.shape[0]
    focal = torch.full((n,), (w / 2) / math.tan(math.radians(fov_deg) / 2), dtype=eye.dtype, device=eye.device)
    center = torch.tensor([w / 2, h / 2], dtype=eye.dtype, device=eye.device).expand(n, 2)
    return Camera(rot, trans, focal, center, (h, w), False)


def project(verts: torch.Tensor, cam: Camera) -> torch.Tensor:
    """Project world points to pixel coordinates plus camera depth (differentiable).

    Args:
        verts: (N, V, 3) float world positions; N must equal ``len(cam)`` or ``len(cam) == 1``.
        cam: the cameras.
    Returns:
        (N, V, 3) float: pixel x, pixel y and camera-space depth z (world units). For a
        perspective camera, points with z <= 0 are behind it; their pixel coordinates are
        meaningless and the rasteriser drops faces touching them.
    """
    n = verts.shape[0]
    assert len(cam) in (1, n), f"{len(cam)} cameras for {n} meshes"
    # channels-first: a (3, 3) @ (3, V) product per camera is much faster than (V, 3) @ (3, 3)
    cam_pts = cam.rotation @ verts.transpose(-1, -2) + cam.translation[:, :, None]  # (N, 3, V)
    x, y, z = cam_pts.unbind(1)  # (N, V) each
    if not cam.orthographic:
        inv_z = 1.0 / z.clamp_min(1e-9)
        x, y = x * inv_z, y * inv_z
    f, c = cam.focal[:, None], cam.center[:, :, None]  # (N, 1), (N, 2, 1)
    return torch.stack([f * x + c[:, 0], f * y + c[:, 1], z], dim=-1)  # (N, V, 3)
