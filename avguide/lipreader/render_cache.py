"""Ground-truth lip videos rendered once per recording and reused every epoch (stage 1).

Ground-truth meshes do not change while the expert trains, so each recording is rendered once
(no gradient) and kept as uint8 grayscale frames (T25, c, c): in memory, and, with a directory,
as ``<dir>/<key>/<name>-<hash>.npy`` (written atomically), where ``key`` identifies the render
settings (crop size, camera rule, faces, lips, albedo) and ``hash`` the recording's vertices, so
a cache directory can be shared by runs and never serves a stale video. A file there that cannot
be read, or is not the video it should be (a damaged or foreign file), is rendered again and
replaced. Training on the synthetic
benchmark renders ~20k frames per epoch (tens of minutes on 2 CPU cores); with the cache every
epoch after the first spends no time rendering.

A render for the cache draws only the faces that have a corner inside the image (with a 5 %
margin) in some frame of the sequence, which gives the same pixels as drawing every face
(tested) in a fraction of the time.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np
import torch

from avguide.data.batching import Batch
from avguide.data.samples import Sample
from avguide.errors import BadInputError
from avguide.io import check_output_dir, load_array, save_npy_atomic
from avguide.lipreader.lipvideo import (CameraRule, RenderAssets, dequantize, lip_cameras, lip_gray,
                                        quantize, rest_shapes)
from avguide.render import lip_face_mask, resample_fps
from avguide.render.lipcam import resampled_length

FACE_MASK_SLACK = 0.05


def settings_key(assets: RenderAssets, crop: int, rule: CameraRule) -> str:
    """12 hex digits identifying the render settings (crop, camera rule, topology, lips, albedo)."""
    h = hashlib.sha1(f"v1 crop={crop} rule={rule}".encode())
    for t in (assets.faces, assets.lips, assets.albedo):
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()[:12]


def render_video(vertices: np.ndarray, fps: float, assets: RenderAssets, crop: int, rule: CameraRule,
                 template: np.ndarray | None = None, workers: int = 2) -> np.ndarray:
    """Render one vertex sequence's lip video without gradient (cache / reader).

    Args:
        vertices: (T, V, 3) float32 at ``fps``.
        fps: frame rate (Hz).
        assets: render assets of the topology.
        crop: crop side in pixels.
        rule: lip camera rule ("template" needs ``template``, or "sequence_mean").
        template: (V, 3) float32 neutral mesh.
        workers: threads rendering chunks of the frames at once (same result).
    Returns:
        (T25, crop, crop) uint8 gray frames at 25 fps.
    """
    with torch.no_grad():
        verts = torch.from_numpy(np.ascontiguousarray(vertices, dtype=np.float32))[None]  # (1, T, V, 3)
        lengths = torch.tensor([verts.shape[1]])
        tmpl = torch.from_numpy(np.array(template, dtype=np.float32))[None] if template is not None else None
        cam = lip_cameras(rest_shapes(verts, lengths, rule, tmpl), assets, crop)
        v25, _ = resample_fps(verts, lengths, fps)
        mask = lip_face_mask(v25[0], assets.faces, cam, slack=FACE_MASK_SLACK)  # (F,) union over frames
        gray, _ = lip_gray(verts, lengths, fps, assets, cam, crop, face_mask=mask, workers=workers)
    return quantize(gray[0])


class RenderCache:
    """uint8 lip videos of recordings, rendered on first use.

    Args:
        assets: render assets. crop: crop side. rule: camera rule.
        directory: optional cache root on disk (shared by runs with the same settings); None keeps
            the videos in memory only.
    Raises:
        BadInputError: ``directory`` cannot hold the cache (a file in the way, not writable).
    Attributes:
        rendered, hits: counts of renders and of videos served without rendering.
        render_seconds: wall time spent rendering.
    """

    def __init__(self, assets: RenderAssets, crop: int, rule: CameraRule, directory: str | Path | None = None):
        self.assets, self.crop, self.rule = assets, crop, rule
        self.dir = Path(directory) / settings_key(assets, crop, rule) if directory is not None else None
        if self.dir is not None:  # before any render: a file in the way or a read-only folder
            check_output_dir(self.dir, "render cache")
        self._mem: dict[str, np.ndarray] = {}
        self.rendered = self.hits = 0
        self.render_seconds = 0.0

    def get(self, sample: Sample) -> np.ndarray:
        """(T25, crop, crop) uint8 video of a loaded recording (see :meth:`lookup`)."""
        return self.lookup(sample.name, sample.vertices, sample.fps, sample.template)

    def lookup(self, name: str, vertices: np.ndarray, fps: float, template: np.ndarray | None) -> np.ndarray:
        """(T25, crop, crop) uint8 video of a vertex sequence, rendered once, then served from the
        cache; a recording whose vertices changed is rendered again.

        Args:
            name: recording name. vertices: (T, V, 3) float32 at ``fps``. template: (V, 3) float32
                (needed by the "template" camera rule).
        """
        vertices = np.ascontiguousarray(vertices, dtype=np.float32)
        key = f"{name}-{hashlib.sha1(vertices.tobytes()).hexdigest()[:10]}"
        if key in self._mem:
            self.hits += 1
            return self._mem[key]
        path = self.dir / f"{key}.npy" if self.dir is not None else None
        video = self._read(path, vertices.shape[0], fps) if path is not None and path.exists() else None
        if video is not None:
            self.hits += 1
        else:
            t0 = time.perf_counter()
            video = render_video(vertices, fps, self.assets, self.crop, self.rule, template)
            self.render_seconds += time.perf_counter() - t0
            self.rendered += 1
            if path is not None:
                save_npy_atomic(path, video)
        self._mem[key] = video
        return video

    def _read(self, path: Path, n_frames: int, fps: float) -> np.ndarray | None:
        """The cached video at ``path``, or None when it cannot serve (unreadable, truncated, or
        not the (T25, crop, crop) uint8 video of ``n_frames`` frames at ``fps``): a cache entry is
        then rendered again and replaced, never trusted."""
        try:
            video = load_array(path, "render-cache video")
        except BadInputError:
            return None
        t25 = int(resampled_length(torch.tensor([n_frames]), fps)[0])
        return video if video.dtype == np.uint8 and video.shape == (t25, self.crop, self.crop) else None

    def video(self, batch: Batch, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """The expert's input for a padded batch of recordings.

        Args:
            batch: :class:`avguide.data.batching.Batch` (vertices (B, T, V, 3), lengths, template, fps).
        Returns:
            video (B, T25max, 1, c, c) float32 normalised (padding 0), lengths25 (B,) int64.
        """
        frames = [self.lookup(name, batch.vertices[i, : int(batch.lengths[i])].cpu().numpy(), batch.fps,
                              batch.template[i].cpu().numpy()) for i, name in enumerate(batch.names)]
        return dequantize(frames, device)
