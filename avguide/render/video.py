"""Shaded face videos with the audio muxed in (ffmpeg from imageio-ffmpeg, raw frames on stdin).

:func:`render_video` is the library entry of ``avguide render``: one or more vertex sequences
(side by side with captions in ``grid`` form) -> an MP4 at the sequences' frame rate whose
duration equals the audio's within one frame.

Frames are drawn by the compiled inference renderer
:func:`avguide.render.jitraster.render_frames_jit` (numba; the images of
:func:`avguide.render.fastframes.render_frames` and of the differentiable
:func:`avguide.render.mesh.render_mesh`, without autograd, see ``renderer``), in chunks of a few
frames by ``workers`` threads (the compiled renderer runs without the GIL) while ffmpeg encodes
the previous ones in its own process (x264 ``ultrafast`` in one thread by default: on 2 cores the
encoder's CPU time is the renderers' loss; the caption, matplotlib's, is drawn by a worker while
the other renders the first frames). ``avguide animate`` passes a
:class:`avguide.render.frameprocess.FrameProcess` started before it imported torch: the same
kernel draws the same frames and the caption there, on its own threads. ``bench/video.py``
measures the renderers and the encoder.
"""

from __future__ import annotations

import math
import subprocess
import sys
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from tqdm import tqdm

from avguide.errors import BadInputError
from avguide.io import atomic_path, audio_duration, one_line, output_problem
from avguide.render.antialias import face_neighbors
from avguide.render.camera import Camera, orthographic_camera
from avguide.render.caption import CAPTION_HEIGHT, caption_image, caption_rows  # noqa: F401  (caption_image: API)
from avguide.render.fastframes import render_frames
from avguide.render.fastraster import cull_plan
from avguide.render.mesh import render_mesh
from avguide.render.shading import PART_COLORS

if TYPE_CHECKING:
    from avguide.render.frameprocess import FrameProcess

VIEWS = {"front": (0.0, 0.0, 1.0), "three_quarter": (0.55, 0.1, 1.0)}
"""Camera directions (from the face, in mesh coordinates: +y up, face towards +z)."""

RENDERERS = ("fast", "torch", "mesh")
"""``fast``: :func:`avguide.render.jitraster.render_frames_jit` (compiled with numba, inference
only; ``torch``'s function when numba is missing); ``torch``:
:func:`avguide.render.fastframes.render_frames` (inference only, the reference of ``fast``);
``mesh``: the differentiable :func:`avguide.render.mesh.render_mesh`, the renderer of earlier
versions (slower, kept for comparison)."""

X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")

BACKGROUND = 0.08
"""Linear grey of the background."""

GAMMA = 2.2
"""Display gamma of the frames' bytes."""


def video_camera(verts: torch.Tensor, view: str = "three_quarter", size: int = 512) -> Camera:
    """The orthographic camera of :func:`render_video`: looking along ``VIEWS[view]`` at the
    centre of the vertices' box, the box's largest side + 10 % across the image.

    Args:
        verts: (V, 3) float positions (the first frame).
        view: a key of :data:`VIEWS`; size: image side in pixels.
    Returns:
        One :class:`avguide.render.camera.Camera` of size (size, size).
    """
    lo, hi = verts.amin(0), verts.amax(0)
    centre, extent = (lo + hi) / 2, float((hi - lo).max())
    d = torch.tensor(VIEWS[view], dtype=verts.dtype)
    return orthographic_camera((centre + d / d.norm() * extent * 3)[None], centre[None], extent * 1.1, (size, size))


def _to_bytes(img: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) linear float -> (N, H, W, 3) uint8 with the video's gamma."""
    return (img.clamp(0, 1) ** (1 / GAMMA) * 255 + 0.5).byte().permute(0, 2, 3, 1).numpy()


def render_video(sequences: list[np.ndarray], faces: np.ndarray, out_path: str | Path, *, fps: float,
                 audio_path: str | Path | None = None, vertex_part: np.ndarray | None = None,
                 part_names: tuple[str, ...] = tuple(PART_COLORS), captions: list[str] | None = None,
                 size: int = 512, view: str = "three_quarter", max_mismatch_s: float = 0.2,
                 chunk: int | None = None, workers: int = 2, preset: str = "ultrafast", crf: int = 18,
                 renderer: str = "fast", progress: bool = True, frame_process: FrameProcess | None = None) -> dict:
    """Render vertex sequences to an MP4 (H.264, yuv420p), side by side, with optional audio.

    Args:
        sequences: list of (T_i, V, 3) or (T_i, V*3) float arrays in one mesh's units, all with
            the same V (a grid when more than one).
        faces: (F, 3) int array of vertex indices in [0, V).
        out_path: the .mp4 to write (atomically).
        fps: frame rate of the sequences (Hz).
        audio_path: optional audio file muxed in (AAC). The video is made exactly
            ``round(audio_seconds * fps)`` frames long: longer sequences are trimmed, shorter
            ones hold their last frame, provided the mismatch is at most ``max_mismatch_s``.
        vertex_part: optional (V,) part labels into ``part_names`` (albedo); skin otherwise.
        part_names: names of the part labels.
        captions: one caption per sequence (drawn above each panel), or None.
        size: panel side in pixels (even).
        view: "front" or "three_quarter".
        max_mismatch_s: largest accepted |audio duration - sequence duration| in seconds.
        chunk: frames rendered per call; default about 2**20 pixels (4 frames at 512 x 512: larger
            chunks are slower per frame on CPU, smaller ones pay the per-call cost more often).
        workers: threads rendering chunks at the same time (each with one PyTorch thread:
            ``torch.set_num_threads(1)`` for the duration of the call when ``workers > 1``); also
            the chunks asked ahead of a frame process, which draws on its own threads.
        preset, crf: x264 speed preset (one of :data:`X264_PRESETS`) and constant rate factor
            (0-51, lower is better; 18 is visually lossless). x264 runs in one thread. On the
            speaking head at 512 px (``bench/video.py --quality``): ``ultrafast`` 2.6 ms of CPU a
            frame, 44.8 dB PSNR of the decoded video against the rendered frames, 1.8 Mbit/s at
            30 fps; ``veryfast`` (three threads, the earlier default) 7.2 ms, 43.2 dB, 0.56 Mbit/s;
            4:2:0 chroma alone (lossless x264) 46.7 dB.
        renderer: one of :data:`RENDERERS`; all give the same images up to float32 rounding
            (pixel centres on an edge may differ). ``fast`` compiles on its first use in a fresh
            numba cache (seconds), later processes load it from the cache.
        progress: a progress bar on stderr (tqdm) for renders longer than a second.
        frame_process: with ``renderer="fast"``, the frames are drawn in this process
            (:class:`avguide.render.frameprocess.FrameProcess`, its own worker threads; the same
            frames) when it runs the compiled kernel, else here.
    Returns:
        {"frames": n, "fps": fps, "duration_s": n / fps, "trimmed_frames": [...], "padded_frames": [...]}
        per sequence, so the caller can state what was adjusted.
    Raises:
        ValueError: bad shapes, vertex count not matching the faces, unknown view, odd size,
            caption count mismatch, audio/sequence mismatch above ``max_mismatch_s``, unknown
            renderer or preset, crf, chunk or workers out of range: arguments are checked by the
            callers that read them from the user (:func:`render_video_files`, ``avguide
            animate``), so a wrong one here is a caller's bug.
        MissingFileError / BadInputError: the audio file is missing or unreadable.
    """
    if view not in VIEWS:
        raise ValueError(f"render_video: view={view!r}; allowed: {sorted(VIEWS)}")
    if size % 2 or size < 16:
        raise ValueError(f"render_video: size={size} must be an even number >= 16")
    if renderer not in RENDERERS:
        raise ValueError(f"render_video: renderer={renderer!r}; allowed: {list(RENDERERS)}")
    if preset not in X264_PRESETS:
        raise ValueError(f"render_video: preset={preset!r}; allowed: {list(X264_PRESETS)}")
    if chunk is None:
        chunk = min(64, max(1, 2 ** 20 // (size * size)))
    if not 0 <= crf <= 51 or chunk < 1 or workers < 1:
        raise ValueError(f"render_video: crf={crf} must be in [0, 51], chunk={chunk} and workers={workers} >= 1")
    if not sequences:
        raise ValueError("render_video: no sequence given")
    if captions is not None and len(captions) != len(sequences):
        raise ValueError(f"render_video: {len(captions)} captions for {len(sequences)} sequences")
    if not math.isfinite(fps) or fps <= 0:
        raise ValueError(f"render_video: fps={fps} must be a finite number > 0")
    faces_t = torch.tensor(np.array(faces, np.int64))
    if faces_t.dim() != 2 or faces_t.shape[1] != 3:
        raise ValueError(f"render_video: faces must be (F, 3), got {tuple(faces_t.shape)}")
    seqs = []
    for i, s in enumerate(sequences):
        s = np.asarray(s, np.float32)
        if s.ndim == 2 and s.shape[1] % 3 == 0:
            s = s.reshape(s.shape[0], -1, 3)  # (T, V, 3)
        if s.ndim != 3 or s.shape[2] != 3 or s.shape[0] == 0:
            raise ValueError(f"render_video: sequence {i} must be (T, V, 3) or (T, V*3), got {s.shape}")
        if faces_t.numel() == 0 or int(faces_t.min()) < 0:
            raise ValueError(f"render_video: faces must be a non-empty list of indices >= 0, got min "
                             f"{int(faces_t.min()) if faces_t.numel() else 'none'}")
        if int(faces_t.max()) >= s.shape[1]:
            raise ValueError(f"render_video: sequence {i} has {s.shape[1]} vertices but the faces index "
                             f"vertex {int(faces_t.max())}; use the faces of this mesh")
        if not np.isfinite(s).all():
            raise ValueError(f"render_video: sequence {i} contains NaN or inf")
        seqs.append(s)
    if len({s.shape[1] for s in seqs}) != 1:
        raise ValueError(f"render_video: sequences have different vertex counts {[s.shape[1] for s in seqs]}")

    n_frames = max(s.shape[0] for s in seqs)
    report = {"trimmed_frames": [0] * len(seqs), "padded_frames": [0] * len(seqs)}
    audio = None
    if audio_path is not None:
        audio = Path(audio_path)
        dur = audio_duration(audio)
        n_frames = max(1, round(dur * fps))
        for i, s in enumerate(seqs):
            gap = s.shape[0] / fps - dur
            if abs(gap) > max_mismatch_s:
                raise ValueError(f"render_video: sequence {i} lasts {s.shape[0] / fps:.2f} s at {fps} fps but "
                                 f"{audio} lasts {dur:.2f} s (mismatch {gap:+.2f} s > {max_mismatch_s} s); "
                                 "wrong fps or wrong audio?")
    for i, s in enumerate(seqs):  # trim or hold the last frame to n_frames
        report["trimmed_frames"][i] = max(0, s.shape[0] - n_frames)
        report["padded_frames"][i] = max(0, n_frames - s.shape[0])
        seqs[i] = s[:n_frames] if s.shape[0] >= n_frames else np.concatenate(
            [s, np.repeat(s[-1:], n_frames - s.shape[0], 0)])

    v0 = torch.from_numpy(np.array(seqs[0][0]))  # a copy: the sequences may be read-only maps
    cam = video_camera(v0, view, size)
    if vertex_part is None:
        albedo = torch.tensor(PART_COLORS["skin"]).expand(v0.shape[0], 3)
    else:
        from avguide.render.shading import albedo_from_parts

        albedo = albedo_from_parts(torch.as_tensor(np.asarray(vertex_part, np.int64)), part_names)
    nb = face_neighbors(faces_t)
    plan = cull_plan(v0, faces_t) if renderer != "mesh" else None
    cap_h = CAPTION_HEIGHT if captions else 0
    width, height = size * len(seqs), size + cap_h
    remote = renderer == "fast" and frame_process is not None and frame_process.ready()
    draw = render_frames
    if renderer == "fast" and not remote:
        from avguide.render.jitraster import render_frames_jit  # imports numba: only when rendering here

        draw = render_frames_jit
    if remote:
        from avguide.render.frameprocess import frame_arrays, scene_arrays

        scene = scene_arrays(faces_t, albedo, plan=plan, neighbors=nb, background=BACKGROUND, gamma=GAMMA)
        scene["rot"] = cam.rotation[0].double().cpu().numpy()
        if captions:
            frame_process.ask_captions(captions, size)  # before the frames: answers come in the order asked
        frame_process.set_scene(scene)

    def frames(s0: int) -> np.ndarray:  # (t, height, width, 3) uint8 frames s0 .. s0 + chunk - 1, all panels
        t = min(chunk, n_frames - s0)
        frame = np.empty((t, height, width, 3), np.uint8)  # the caption rows are filled by the writer
        for i, s in enumerate(seqs):
            v = torch.from_numpy(np.array(s[s0: s0 + t]))  # (t, V, 3), a copy of a (read-only) block
            if renderer != "mesh":
                panel = draw(v, faces_t, cam, albedo, plan=plan, neighbors=nb, background=BACKGROUND,
                              gamma=GAMMA).numpy()
            else:
                with torch.no_grad():
                    img, _ = render_mesh(v, faces_t, cam, albedo, neighbors=nb, background=BACKGROUND,
                                         cull_backfaces=False)
                panel = _to_bytes(img)
            frame[:, cap_h:, i * size: (i + 1) * size] = panel  # (t, size, size, 3)
        return frame

    class Asked:  # the frames of a chunk asked of the frame process, received in the order asked
        def __init__(self, s0: int):
            self.t = min(chunk, n_frames - s0)
            for s in seqs:
                frame_process.ask(*frame_arrays(torch.from_numpy(np.array(s[s0: s0 + self.t])), cam), cam.size)

        def result(self) -> np.ndarray:  # (t, height, width, 3) uint8, as frames(s0)
            frame = np.empty((self.t, height, width, 3), np.uint8)
            for i in range(len(seqs)):
                frame[:, cap_h:, i * size: (i + 1) * size] = frame_process.receive()
            return frame

        def cancel(self) -> None:  # receive and drop: the process answers in order
            try:
                for _ in seqs:
                    frame_process.receive()
            except RuntimeError:
                pass

    class Drawn:  # the caption band drawn by the frame process (maybe asked earlier, see ask_captions)
        def result(self) -> np.ndarray:  # (cap_h, width, 3) uint8
            return frame_process.captions(captions, size)

    ffmpeg = _ffmpeg_exe()
    out_path = Path(out_path)
    threads = torch.get_num_threads()
    with atomic_path(out_path) as tmp:
        cmd = [ffmpeg, "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
               "-s", f"{width}x{height}", "-r", f"{fps}", "-i", "-"]
        if audio is not None:
            cmd += ["-i", str(audio), "-c:a", "aac", "-b:a", "128k", "-map", "0:v", "-map", "1:a"]
        cmd += ["-c:v", "libx264", "-preset", preset, "-threads", "1", "-pix_fmt", "yuv420p", "-crf", str(crf)]
        # with audio, -t ends the file: -frames:v would stop the output at the last video frame and
        # drop the audio encoder's last, partial AAC frame (up to 64 ms of sound at 16 kHz)
        cmd += ["-t", f"{n_frames / fps:.6f}"] if audio is not None else ["-frames:v", str(n_frames)]
        cmd += ["-f", "mp4", str(tmp)]
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        bar = tqdm(total=n_frames, unit="frame", desc=out_path.name, file=sys.stderr, disable=not progress,
                   delay=1.0, leave=False)
        try:
            if workers > 1:
                torch.set_num_threads(1)
            # chunks rendered ahead by the workers, at most 2 per worker waiting for the encoder
            with ThreadPoolExecutor(workers) as pool:
                caption = None
                if captions:  # matplotlib: first on a worker, or in the frame process
                    caption = Drawn() if remote else pool.submit(caption_rows, captions, size)
                pending = deque()
                try:
                    for s0 in range(0, n_frames, chunk):
                        pending.append((Asked(s0) if remote else pool.submit(frames, s0), min(chunk, n_frames - s0)))
                        while pending and (len(pending) > 2 * workers or s0 + chunk >= n_frames):
                            done, count = pending.popleft()
                            frame = done.result()
                            if caption is not None:
                                frame[:, :cap_h] = caption.result()
                            proc.stdin.write(memoryview(frame).cast("B"))
                            bar.update(count)
                finally:
                    for done, _ in pending:
                        done.cancel()
            proc.stdin.close()
        except BrokenPipeError:
            pass  # ffmpeg stopped: its error message follows
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            torch.set_num_threads(threads)
            bar.close()
        err = proc.stderr.read().decode(errors="replace")
        if proc.wait() != 0:
            problem = output_problem(err)
            if problem:  # a full disk or an unwritable output: the user's to fix, one line
                raise BadInputError(f"{out_path}: cannot write video ({one_line(problem, 200)})")
            raise RuntimeError(f"ffmpeg failed writing {out_path}: {err.strip()[-500:]}")
    return {"frames": n_frames, "fps": fps, "duration_s": n_frames / fps, **report}


def _ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def render_video_files(verts_paths: list[str | Path], out_path: str | Path, *, fps: float,
                       audio_path: str | Path | None = None, faces_path: str | Path | None = None,
                       captions: list[str] | None = None, size: int = 512, view: str = "three_quarter") -> dict:
    """``avguide render``: load vertex sequences (+ optional faces) and call :func:`render_video`.

    Every argument and file is checked before anything is rendered or written: the messages
    name the argument or the file.

    Args:
        verts_paths: .npy (or .npz) files, each (T, V, 3) or (T, V*3), all with the same V.
        out_path: output .mp4 (not a directory, not one of the inputs).
        fps: frame rate of the sequences (finite, > 0).
        audio_path: audio to mux (its duration sets the video's, see :func:`render_video`).
        faces_path: (F, 3) int .npy, or a .obj / .ply mesh giving the faces; default: the
            embedded head's faces (and part colours), valid only for sequences with the head's
            vertex count.
        captions, size, view: see :func:`render_video`.
    Returns:
        The dict of :func:`render_video`.
    Raises:
        MissingFileError, BadInputError: missing/unreadable/malformed files (0 frames, NaN, an
            npz without one array, face indices outside [0, V)), shape or duration mismatches,
            bad fps/size/view/captions, an output that cannot be written.
    """
    from avguide.io import audio_duration, check_output_file, load_faces, load_vertices

    if not (math.isfinite(fps) and _MIN_FPS <= fps <= _MAX_FPS):
        raise BadInputError(f"--fps {fps:g}: must be a number of frames per second in [{_MIN_FPS:g}, {_MAX_FPS:g}]")
    if size % 2 or not 16 <= size <= _MAX_SIZE:
        raise BadInputError(f"--size {size}: must be an even number of pixels in [16, {_MAX_SIZE}]")
    if size * len(verts_paths) > _MAX_WIDTH:
        raise BadInputError(f"--size {size}: {len(verts_paths)} panels of {size} pixels make a video "
                            f"{size * len(verts_paths)} pixels wide; at most {_MAX_WIDTH}")
    if view not in VIEWS:
        raise BadInputError(f"--view {view!r}: allowed: {', '.join(sorted(VIEWS))}")
    if not verts_paths:
        raise BadInputError("render: no vertex file given")
    if captions is not None and len(captions) != len(verts_paths):
        raise BadInputError(f"--captions: {len(captions)} caption(s) for {len(verts_paths)} sequence(s)")
    out_path = check_output_file(out_path, "-o")
    inputs = [Path(p) for p in [*verts_paths, audio_path, faces_path] if p is not None]
    for p in inputs:
        if p.exists() and out_path.exists() and out_path.samefile(p):
            raise BadInputError(f"-o {out_path}: is also an input file; writing it would destroy {p}")

    seqs = [load_vertices(p, min_frames=1) for p in verts_paths]  # (T, V, 3) each
    n_v = seqs[0].shape[1]
    for p, s in zip(verts_paths[1:], seqs[1:]):
        if s.shape[1] != n_v:
            raise BadInputError(f"{p}: {s.shape[1]} vertices per frame, but {verts_paths[0]} has {n_v}")
    if np.ptp(seqs[0][0], axis=0).max() == 0:  # the camera frames the first mesh
        raise BadInputError(f"{verts_paths[0]}: every vertex of the first frame is at the same point; "
                            "nothing to frame")
    for p, s in zip(verts_paths, seqs):  # the camera's float32 arithmetic overflows far below float32's range
        big = np.abs(s).max(axis=(1, 2)) > _MAX_COORD  # (T,)
        if big.any():
            raise BadInputError(f"{p}: frame {int(np.argmax(big))} has a coordinate of {np.abs(s).max():.3g}; "
                                f"vertex coordinates must stay within +-{_MAX_COORD:g}")
    part, names = None, tuple(PART_COLORS)
    if faces_path is None:
        from avguide.assets.head import load_head

        head = load_head()
        if n_v != head.vertices.shape[0]:
            raise BadInputError(f"{verts_paths[0]}: {n_v} vertices, but the embedded head has "
                                f"{head.vertices.shape[0]}; pass --faces or --template for this mesh")
        faces = np.asarray(head.faces)
        part, names = np.asarray(head.vertex_part), tuple(head.part_names)
    elif Path(faces_path).suffix.lower() in (".obj", ".ply"):
        from avguide.data.meshfile import read_mesh

        mesh_verts, faces = read_mesh(faces_path)
        if mesh_verts.shape[0] != n_v:
            raise BadInputError(f"{faces_path}: mesh has {mesh_verts.shape[0]} vertices, but "
                                f"{verts_paths[0]} has {n_v}")
    else:
        faces = load_faces(faces_path, n_v)
    if audio_path is not None:
        seconds = audio_duration(audio_path)
        for p, s in zip(verts_paths, seqs):
            gap = s.shape[0] / fps - seconds
            if abs(gap) > _MAX_MISMATCH_S:
                raise BadInputError(f"{p}: lasts {s.shape[0] / fps:.2f} s ({s.shape[0]} frames at {fps:g} fps) "
                                    f"but {audio_path} lasts {seconds:.2f} s (mismatch {gap:+.2f} s > "
                                    f"{_MAX_MISMATCH_S} s); wrong --fps or wrong audio?")
    return render_video(seqs, faces, out_path, fps=fps, audio_path=audio_path, vertex_part=part, part_names=names,
                        captions=captions, size=size, view=view, max_mismatch_s=_MAX_MISMATCH_S)


_MAX_SIZE = 4096
"""Largest panel side (pixels) ``avguide render`` accepts."""

_MAX_WIDTH = 16384
"""Widest video (all panels side by side, pixels) ``avguide render`` accepts."""

_MIN_FPS, _MAX_FPS = 1.0, 1000.0
"""Frame rates ``avguide render`` accepts (ffmpeg refuses far larger ones, and far smaller ones
make durations its MP4 muxer cannot store)."""

_MAX_COORD = 1e9
"""Largest |vertex coordinate| ``avguide render`` accepts (1e9 of any unit: no face is wider)."""

_MAX_MISMATCH_S = 0.2
"""Largest |audio - sequence| duration (s) ``avguide render`` accepts; see :func:`render_video`."""
