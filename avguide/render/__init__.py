"""Differentiable mesh rendering in plain PyTorch, the lip camera and video output.

Primitives (stateless, tensor in / tensor out; caches such as face adjacency or face masks are
arguments): :func:`project`, :func:`rasterize`, :func:`barycentrics`, :func:`interpolate`,
:func:`vertex_normals`, :func:`shade`, :func:`antialias`, :func:`expert_crop`. Compositions:
:func:`render_mesh` (meshes -> shaded images), :func:`expert_input` (vertex sequences at any fps
-> the lip-reading expert's 25 fps 88x88 input), :func:`avguide.render.video.render_video`.
Inference only, for video: :func:`cull_plan`, :func:`drawn_faces`, :func:`rasterize_video` and
:func:`render_frames` (the images of :func:`render_mesh` as sRGB bytes, without autograd).
:func:`window_submesh`: the part of a mesh some cameras can show over a batch of sequences (the
same images and gradients for less work; :func:`avguide.lipreader.lipvideo.lip_gray` renders it).
On CPU, with numba, :func:`rasterize`, :func:`render_mesh`, :func:`antialias` and the resampling
(:func:`resample_fps`, :func:`resample_frames`) run compiled kernels (:mod:`avguide.render.jitzbuf`,
:mod:`avguide.render.jitshade`, :mod:`avguide.render.jitalias`, :mod:`avguide.render.jitblend`;
``raster.USE_JIT = False`` or ``jit=False`` keeps their torch paths, the references).
"""

from avguide.render.antialias import antialias, face_neighbors
from avguide.render.camera import Camera, look_at, orthographic_camera, perspective_camera, project
from avguide.render.fastframes import render_frames
from avguide.render.fastraster import cull_plan, drawn_faces, rasterize_video
from avguide.render.lipcam import (expert_crop, expert_input, lip_camera, lip_face_mask, resample_fps,
                                   resample_frames, resampled_length)
from avguide.render.mesh import render_mesh
from avguide.render.raster import barycentrics, interpolate, rasterize
from avguide.render.shading import PART_COLORS, Lights, albedo_from_parts, head_albedo, shade, vertex_normals
from avguide.render.submesh import SubMesh, window_submesh

__all__ = [
    "Camera", "Lights", "PART_COLORS", "SubMesh", "albedo_from_parts", "antialias", "barycentrics", "cull_plan",
    "drawn_faces", "expert_crop", "expert_input", "face_neighbors", "head_albedo", "interpolate", "lip_camera",
    "lip_face_mask", "look_at", "orthographic_camera", "perspective_camera", "project", "rasterize",
    "rasterize_video", "render_frames", "render_mesh", "resample_fps", "resample_frames", "resampled_length", "shade",
    "vertex_normals", "window_submesh",
]
