"""The part of a mesh that cameras can show over a batch of sequences (a speed-up, the same images).

A lip camera's window shows a few thousand of a head's faces. The rasteriser culls the others
cheaply, but the steps in O(V) per frame do not shrink with the window: resampling in time, the
projection, the copies of the frames, and in the backward pass the gradient buffers of the
whole mesh that every gather fills with zeros. :func:`window_submesh` finds, once per batch, the
faces that can reach into the windows in some valid frame and everything the renderer reads
around them; rendering that sub-mesh gives the same images and the same vertex gradients as
rendering the whole mesh, bit for bit:

- A face is drawn in an image only if its pixel box meets the window there
  (:func:`avguide.render.raster.rasterize` culls the others per image). Frames resampled in
  time are convex combinations of two valid frames of their sequence and the camera is
  orthographic (affine), so a face's box in any such frame lies within the box of its corners'
  projected bounds over the sequence's valid frames; a margin of pixels covers float rounding.
- The shading reads the normals of the drawn faces' vertices, made of every face around them,
  and the antialiasing reads the drawn faces' edge neighbours (faces sharing an edge share its
  vertices): the faces touching a drawn face's vertex, and their vertices, are kept.
- Faces and vertices keep their order, so depth ties go to the same face and every scatter
  adds the same terms in the same order.

Perspective cameras (a segment's projection is not the affine image of its ends' bounds) and
non-finite vertices get ``None``: render the whole mesh.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from avguide.render.camera import Camera


@dataclass(frozen=True)
class SubMesh:
    """A part of a mesh, re-indexed (build with :func:`window_submesh`).

    Attributes:
        vertices: (U,) int64 the kept vertices of the whole mesh, ascending: ``verts[..., vertices, :]``
            are the sub-mesh's.
        faces: (F', 3) int64 the kept faces, in their order in the whole mesh, indexing ``vertices``.
        neighbors: (F', 3) int64 their edge neighbours (:func:`avguide.render.antialias.face_neighbors`)
            among the kept faces, -1 for none or one that was not kept (never for a face to draw).
        face_mask: (F',) bool the kept faces to draw.
        face_index: (F',) int64 each kept face's index in the whole mesh, ascending.
    """

    vertices: torch.Tensor
    faces: torch.Tensor
    neighbors: torch.Tensor
    face_mask: torch.Tensor
    face_index: torch.Tensor


def _pixel_bounds(lo: torch.Tensor, hi: torch.Tensor, cam: Camera) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel (x, y) bounds of points in the world boxes [lo, hi] (B, V, 3) seen by B (or 1)
    orthographic cameras: (B, V, 2) each (interval arithmetic, exact up to float rounding)."""
    mid, rad = (lo + hi) / 2, (hi - lo) / 2  # (B, V, 3)
    rot = cam.rotation[:, :2].expand(lo.shape[0], 2, 3)  # (B, 2, 3) camera x and y axes
    f = cam.focal.abs()[:, None, None]  # (B, 1, 1)
    centre = (mid @ rot.transpose(1, 2) + cam.translation[:, None, :2]) * cam.focal[:, None, None] \
        + cam.center[:, None, :]  # (B, V, 2)
    reach = (rad @ rot.abs().transpose(1, 2)) * f  # (B, V, 2)
    return centre - reach, centre + reach


def window_submesh(verts: torch.Tensor, lengths: torch.Tensor, cam: Camera, faces: torch.Tensor,
                   neighbors: torch.Tensor, face_mask: torch.Tensor | None = None, *, margin: float = 2.0
                   ) -> SubMesh | None:
    """The sub-mesh that renders the same images of ``verts`` as the whole mesh (module docstring).

    Args:
        verts: (B, T, V, 3) float padded vertex sequences (frames past ``lengths`` are not read).
        lengths: (B,) int64 valid frames.
        cam: B (or 1) cameras, one per sequence, of the images (or windows) to be drawn.
        faces: (F, 3) int64. neighbors: (F, 3) int64 from :func:`avguide.render.antialias.face_neighbors`.
        face_mask: optional (F,) bool faces to draw (default: all).
        margin: pixels added around the image (float rounding of the resampling and projection).
    Returns:
        :class:`SubMesh`, or None: a perspective camera, non-finite vertices or lengths outside
        [1, T] (the caller renders the whole mesh, and reports bad lengths as it does).
    """
    b, t, nv, _ = verts.shape
    lengths = torch.as_tensor(lengths)
    if not cam.orthographic or len(cam) not in (1, b):
        return None
    if b == 0 or lengths.shape != (b,) or int(lengths.min()) < 1 or int(lengths.max()) > t:
        return None
    x = verts.detach()
    lo = torch.stack([x[i, : int(n)].amin(0) for i, n in enumerate(lengths.tolist())])  # (B, V, 3)
    hi = torch.stack([x[i, : int(n)].amax(0) for i, n in enumerate(lengths.tolist())])
    if not bool(torch.isfinite(lo).all() and torch.isfinite(hi).all()):
        return None
    plo, phi = _pixel_bounds(lo, hi, cam.to(dtype=x.dtype))  # (B, V, 2) each
    h, w = cam.size
    flo = torch.minimum(torch.minimum(plo[:, faces[:, 0]], plo[:, faces[:, 1]]), plo[:, faces[:, 2]])  # (B, F, 2)
    fhi = torch.maximum(torch.maximum(phi[:, faces[:, 0]], phi[:, faces[:, 1]]), phi[:, faces[:, 2]])
    seen = ((fhi[..., 0] >= -margin) & (flo[..., 0] <= w + margin)
            & (fhi[..., 1] >= -margin) & (flo[..., 1] <= h + margin)).any(0)  # (F,)
    drawn = seen if face_mask is None else seen & face_mask.to(seen.device)
    need = torch.zeros(nv, dtype=torch.bool, device=faces.device)
    need[faces[drawn].reshape(-1)] = True  # vertices of the faces to draw
    kept = need[faces].any(1)  # (F,) faces around them (normals, edge neighbours)
    keep_v = torch.zeros_like(need)
    keep_v[faces[kept].reshape(-1)] = True
    vertices = keep_v.nonzero().squeeze(1)  # (U,)
    vslot = torch.full((nv,), -1, dtype=torch.int64, device=faces.device)
    vslot[vertices] = torch.arange(vertices.numel(), device=faces.device)
    fidx = kept.nonzero().squeeze(1)  # (F',)
    fslot = torch.full((faces.shape[0] + 1,), -1, dtype=torch.int64, device=faces.device)  # [-1]: no neighbour
    fslot[fidx] = torch.arange(fidx.numel(), device=faces.device)
    return SubMesh(vertices, vslot[faces[fidx]], fslot[neighbors[fidx]], drawn[fidx], fidx)
