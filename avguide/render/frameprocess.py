"""The video's frames drawn in a process of their own: :class:`FrameProcess`, and the numpy
arguments of the compiled kernel (:mod:`avguide.render.jitraster`) it is sent.

``avguide animate`` and ``say`` start the process first (:func:`avguide.animate.start_frame_process`):
on 2 cores it imports numba and loads the kernel's machine code while the job imports torch and
animates, then draws the frames :func:`avguide.render.video.render_video` asks for. Its frames
are those of :func:`avguide.render.jitraster.render_frames_jit` bit for bit: both draw the arrays
of :func:`scene_arrays` and :func:`frame_arrays` with the same kernel.
"""

from __future__ import annotations

import pickle
import subprocess

import numpy as np
import torch

from avguide.render.camera import Camera, project
from avguide.render.fastframes import _window
from avguide.render.fastraster import CullPlan
from avguide.render.shading import Lights


def scene_arrays(faces: torch.Tensor, albedo: torch.Tensor, *, plan: CullPlan, neighbors: torch.Tensor | None = None,
                 lights: Lights | None = None, background: float | tuple[float, float, float] = 0.0,
                 gamma: float = 2.2) -> dict:
    """The arguments of :func:`avguide.render.jitraster.render_frames_jit` that every frame of a
    video shares, as the kernel's numpy arrays (what a :class:`FrameProcess` is sent once a video).

    Returns:
        {"faces" (F, 3) int64, "neighbors" (F, 3) int64 (-1: none), "cullable" (F,) bool, "rim"
        (R,) int64, "rim_loop" (R,) int64, "n_loops", "albedo" (V, 3) float64, "to_light" (L, 3)
        float64 unit vectors towards the lights, "intensity" (L,) float64, "ambient", "bg_lin" (3,)
        float64 linear background, "bg" (3,) uint8 its bytes, "gamma", "antialias" (neighbors
        given)}; the caller adds "rot", the camera's (3, 3) float64 rotation.
    """
    lights = Lights() if lights is None else lights
    bg_lin = np.broadcast_to(np.asarray(background, np.float64), (3,)).copy()
    thresholds = ((np.arange(1, 256) - 0.5) / 255) ** gamma  # the kernel's rounding (_byte_table)
    d = np.asarray(lights.directions, np.float64)
    nf = faces.shape[0]
    nb = neighbors.cpu().numpy().astype(np.int64) if neighbors is not None else np.full((nf, 3), -1, np.int64)
    return {"faces": np.ascontiguousarray(faces.cpu().numpy(), np.int64), "neighbors": np.ascontiguousarray(nb),
            "cullable": plan.cullable.cpu().numpy().astype(np.bool_), "rim": plan.rim.cpu().numpy().astype(np.int64),
            "rim_loop": plan.rim_loop.cpu().numpy().astype(np.int64), "n_loops": int(plan.n_loops),
            "albedo": np.ascontiguousarray(albedo.detach().cpu().numpy(), np.float64).reshape(-1, 3),
            "to_light": -d / np.linalg.norm(d, axis=-1, keepdims=True),  # (L, 3)
            "intensity": np.asarray(lights.intensities, np.float64), "ambient": float(lights.ambient),
            "bg_lin": bg_lin, "bg": np.searchsorted(thresholds, np.clip(bg_lin, 0, 1), side="right").astype(np.uint8),
            "gamma": float(gamma), "antialias": neighbors is not None}


def frame_arrays(verts: torch.Tensor, cam: Camera) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int]]:
    """The per-frame arguments of the kernel: verts (N, V, 3) float32 world, pix (N, V, 3) float32
    window coordinates (pixel x - left, pixel y - top, depth) and the window (top, left, height,
    width) of the pixels that may differ from the background (:func:`avguide.render.fastframes._window`,
    over the N frames)."""
    verts = verts.detach().float().cpu()
    pix = project(verts, cam.to(device="cpu", dtype=torch.float32))  # (N, V, 3)
    top, left, hh, ww = _window(pix, cam.size)
    pix = pix - torch.tensor([left, top, 0.0])  # window coordinates
    return verts.numpy(), pix.numpy(), (top, left, hh, ww)


class FrameProcess:
    """The compiled renderer's kernel in a process of its own, started before the caller imports
    torch (:func:`avguide.animate.start_frame_process`): on 2 cores the process imports numba and
    loads the machine code (about 1 s of CPU, all of it holding a GIL) while the caller imports
    torch and animates, instead of after.

    The process imports :mod:`avguide.render.jitraster` alone (numpy and numba: not torch, not the
    ``avguide.render`` package, whose ``__init__`` imports torch), loads the kernel
    (:func:`avguide.render.jitraster.warm_up`) and draws what it is sent: caption bands
    (:meth:`ask_captions`), a scene (the arrays of :func:`scene_arrays` plus ``rot``), then chunks
    of frames (the arrays of :func:`frame_arrays`) on its worker threads, answering in the order
    asked. The frames are those of
    :func:`avguide.render.jitraster.render_frames_jit` for the same arrays, bit for bit (the same
    kernel on the same numbers).

    Args:
        proc: the started process (stdin and stdout pipes) running
            :func:`avguide.render.jitraster.serve`.
    """

    def __init__(self, proc: subprocess.Popen):
        self._proc = proc
        self._ready: bool | None = None
        self._asked = 0  # answers not yet received
        self._captions: dict[tuple, np.ndarray | None] = {}  # asked caption bands (None: not yet received)

    def ready(self) -> bool:
        """Whether the process runs the compiled kernel (waits for its start; False when numba is
        missing there or the process failed: the caller then draws in its own process)."""
        if self._ready is None:
            try:
                self._ready = pickle.load(self._proc.stdout) == ("ready", True)
            except (EOFError, OSError, pickle.UnpicklingError):
                self._ready = False
            if not self._ready:
                self.close()
        return self._ready

    def set_scene(self, scene: dict) -> None:
        """Send the arrays every following chunk is drawn with (:func:`scene_arrays` plus "rot")."""
        assert self.ready(), "FrameProcess.set_scene before ready() said True"
        self._send(("scene", scene))

    def ask(self, verts: np.ndarray, pix: np.ndarray, window: tuple[int, int, int, int], size: tuple[int, int]) -> None:
        """Ask for the frames of one chunk (the arrays of :func:`frame_arrays`; size (H, W)); the
        answers come from :meth:`receive` in the order asked."""
        self._send(("frames", verts, pix, window, size))
        self._asked += 1

    def ask_captions(self, captions: list[str], width: int) -> None:
        """Ask for a video's caption band (:func:`avguide.render.caption.caption_rows`, ``width``
        pixels a panel) before any frames: the process draws it while it has nothing else to do
        (``avguide animate`` asks while it animates). Nothing when asked already."""
        if (key := (tuple(captions), width)) not in self._captions:
            self._send(("caption", list(captions), width))
            self._captions[key] = None
            self._asked += 1

    def captions(self, captions: list[str], width: int) -> np.ndarray:
        """The (CAPTION_HEIGHT, width * len(captions), 3) uint8 band :meth:`ask_captions` asked for
        (asked now if it was not; before the frames asked since, or it raises)."""
        key = (tuple(captions), width)
        self.ask_captions(captions, width)
        while self._captions[key] is None:
            assert self._answer() is None, "FrameProcess.captions: frames answered before the captions asked"
        return self._captions[key]

    def receive(self) -> np.ndarray:
        """The (N, H, W, 3) uint8 frames of the oldest chunk asked and not yet received.

        Raises:
            RuntimeError: the process failed (its error message) or stopped.
        """
        while (frames := self._answer()) is None:  # a caption band asked before the frames: kept
            pass
        return frames

    def _answer(self) -> np.ndarray | None:
        """Read the next answer: frames are returned, a caption band kept (None returned)."""
        assert self._asked > 0, "FrameProcess: an answer read with none asked"
        self._asked -= 1
        try:
            head = pickle.load(self._proc.stdout)
        except (EOFError, OSError, pickle.UnpicklingError) as e:
            raise RuntimeError(f"the frame process stopped ({type(e).__name__}: {e})") from None
        if head[0] == "error":
            raise RuntimeError(f"the frame process failed: {head[1]}")
        out = np.empty(head[1], np.uint8)
        buf, got = memoryview(out).cast("B"), 0
        while got < len(buf):
            n = self._proc.stdout.readinto(buf[got:])
            if not n:
                raise RuntimeError("the frame process stopped in the middle of an answer")
            got += n
        if head[0] == "caption":
            self._captions[head[2]] = out
            return None
        return out

    def close(self) -> None:
        """End the process (it exits when its input closes; killed if it has not within 5 s)."""
        if self._proc.poll() is None:
            try:
                self._proc.stdin.close()
                self._proc.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                self._proc.kill()
                self._proc.wait()
        for f in (self._proc.stdin, self._proc.stdout):
            try:
                f.close()
            except OSError:
                pass

    def _send(self, msg: tuple) -> None:
        try:
            pickle.dump(msg, self._proc.stdin, protocol=4)  # protocol 4: arrays come out writable (numba's types)
            self._proc.stdin.flush()
        except OSError as e:
            raise RuntimeError(f"the frame process stopped ({type(e).__name__}: {e})") from None
