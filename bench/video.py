"""Speed of video output (not a test): the differentiable renderer the videos used against the inference one.

    python bench/video.py [--sizes 512,256] [--frames 48] [--repeats 3] [--long 300]

The head (``avguide.assets.head.load_head``) speaks: the jaw opens and closes, the head turns a
little and every vertex jitters by 0.2 mm, so that every vertex moves in every frame as in an
animator's output. Each stage is timed old and new side by side, ms per frame and frames per
second (wall clock), the speed-up (median of the per-round ratios: old and new alternate, so both
see the same load) and CPU ms per frame (this process's threads and ffmpeg's), medians over
``--repeats`` after one warm-up:

* ``rasterise``: face ids. Old: :func:`avguide.render.raster.rasterize` without culling (what
  the video used), chunks of 16 frames. New: :func:`avguide.render.fastraster.rasterize_video`
  with :func:`avguide.render.fastraster.drawn_faces`, chunks of ``render_video``'s default (4 at
  512, 16 at 256). One PyTorch thread.
* ``rasterise+shade``: frames as RGB bytes, antialiased. Old: ``render_mesh(...,
  cull_backfaces=False)`` + gamma; new: :func:`avguide.render.fastframes.render_frames`. One
  thread.
* ``encode``: the same pre-rendered frames piped into ffmpeg's x264 at crf 18, old preset
  ``medium`` (ffmpeg's default, what the video used) against ``veryfast``.
* ``render_video``: the whole call, one panel, no captions. Old: ``renderer="mesh",
  preset="medium", chunk=16, workers=1`` (PyTorch's default threads), the earlier behaviour;
  new: the defaults (2 worker threads, chunks of 4, veryfast).

Last, ``--long`` frames at 30 fps (10 s of speech) with audio to an mp4 at the first size, new path
only. The machine is shared with trainings: the load average is printed; compare the ratios. CPU
time is the steadier figure: on an idle machine with C cores the frame rate is at most about
C / (CPU seconds per frame).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from avguide.assets.head import load_head
from avguide.render import face_neighbors, head_albedo, project, rasterize, render_mesh
from avguide.render.fastframes import render_frames
from avguide.render.fastraster import cull_plan, drawn_faces, rasterize_video
from avguide.render.video import BACKGROUND, _ffmpeg_exe, _to_bytes, render_video, video_camera


def speaking_head(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]:
    """(n, V, 3) float32 frames of the head talking, its faces, vertex parts and part names."""
    head = load_head()
    v = torch.tensor(np.asarray(head.vertices, np.float32))
    names = list(head.blendshape_names)
    jaw = torch.tensor(np.asarray(head.blendshapes[names.index("jawOpen")], np.float32))
    t = torch.arange(n, dtype=torch.float32)
    opening = 0.35 * (1 - torch.cos(t * 2 * np.pi / 9))[:, None, None]  # a syllable every 9 frames
    angle = 0.08 * torch.sin(t * 2 * np.pi / 50)  # a slow turn
    c, s = torch.cos(angle), torch.sin(angle)
    mid = v.mean(0)
    frames = v + opening * jaw - mid
    x, z = frames[..., 0].clone(), frames[..., 2].clone()
    frames[..., 0], frames[..., 2] = c[:, None] * x + s[:, None] * z, -s[:, None] * x + c[:, None] * z
    g = torch.Generator().manual_seed(seed)
    frames = frames + mid + 2e-4 * torch.randn(frames.shape, generator=g)
    return frames.numpy(), np.array(head.faces, np.int64), np.array(head.vertex_part), tuple(head.part_names)


def cpu_seconds() -> float:
    """CPU seconds used so far by this process (all threads) and its waited-for children (ffmpeg)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def race(old, new, repeats: int) -> tuple[list[float], list[float], list[float], list[float]]:
    """Alternate ``old()`` and ``new()`` ``repeats`` times after one warm-up call of each (both
    see the same load); wall and CPU seconds of every call."""
    old(), new()
    wall, cpu = {old: [], new: []}, {old: [], new: []}
    for _ in range(repeats):
        for fn in (old, new):
            t, c = time.perf_counter(), cpu_seconds()
            fn()
            wall[fn].append(time.perf_counter() - t)
            cpu[fn].append(cpu_seconds() - c)
    return wall[old], wall[new], cpu[old], cpu[new]


def encode(frames: np.ndarray, preset: str, out: Path) -> None:
    """Pipe (T, H, W, 3) uint8 frames into ffmpeg's x264 at crf 18, as ``render_video`` does."""
    t, h, w, _ = frames.shape
    cmd = [_ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}",
           "-r", "25", "-i", "-", "-c:v", "libx264", "-preset", preset, "-pix_fmt", "yuv420p", "-crf", "18",
           "-frames:v", str(t), "-f", "mp4", str(out)]
    subprocess.run(cmd, input=frames.tobytes(), check=True)


def row(stage: str, size: int, n: int, timings: tuple[list[float], ...], note: str = "") -> None:
    """Print one line: per frame, median wall ms and frames per second of old and new, the median
    of the per-round speed-ups, and the median CPU ms per frame of both (all threads and ffmpeg)."""
    wo, wn, co, cn = ([x / n * 1e3 for x in t] for t in timings)
    mo, mn = statistics.median(wo), statistics.median(wn)
    ratio = statistics.median(a / b for a, b in zip(wo, wn))
    cpu_o, cpu_n = statistics.median(co), statistics.median(cn)
    print(f"{stage:<16} {size:>4}  {mo:8.1f} {1e3 / mo:7.1f}  {mn:8.1f} {1e3 / mn:7.1f}  {ratio:6.2f}x  "
          f"{cpu_o:8.1f} {cpu_n:8.1f} {cpu_o / cpu_n:6.2f}x  {note}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="512,256")
    ap.add_argument("--frames", type=int, default=48)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--long", type=int, default=300, help="frames of the 10 s clip (0: skip)")
    args = ap.parse_args()
    seq, faces_np, part, names = speaking_head(args.frames)
    faces = torch.from_numpy(faces_np)
    verts = torch.from_numpy(seq)
    n = args.frames
    albedo, nb = head_albedo(load_head()), face_neighbors(faces)
    plan = cull_plan(verts[0], faces)
    threads = torch.get_num_threads()
    print(f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} cores; "
          f"{n} frames, medians of {args.repeats}")
    print(f"{'':<22}  {'wall clock, per frame':^40}  {'CPU time, per frame':^26}")
    print(f"{'stage':<16} {'size':>4}  {'old ms':>8} {'old fps':>7}  {'new ms':>8} {'new fps':>7}  speed-up  "
          f"{'old ms':>8} {'new ms':>8}  ratio")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for size in [int(s) for s in args.sizes.split(",")]:
            cam = video_camera(verts[0], "three_quarter", size)
            torch.set_num_threads(1)

            def raster_old():
                for s0 in range(0, n, 16):
                    rasterize(project(verts[s0: s0 + 16], cam), faces, cam.size, cull_backfaces=False)

            chunk = min(64, max(1, 2 ** 20 // (size * size)))  # render_video's default

            def raster_new():
                for s0 in range(0, n, chunk):
                    pix = project(verts[s0: s0 + chunk], cam)
                    rasterize_video(pix, faces, cam.size, draw=drawn_faces(pix, faces, plan))

            def shade_old():
                with torch.no_grad():
                    for s0 in range(0, n, 16):
                        img, _ = render_mesh(verts[s0: s0 + 16], faces, cam, albedo, neighbors=nb,
                                             background=BACKGROUND, cull_backfaces=False)
                        _to_bytes(img)

            def shade_new():
                for s0 in range(0, n, chunk):
                    render_frames(verts[s0: s0 + chunk], faces, cam, albedo, plan=plan, neighbors=nb,
                                  background=BACKGROUND).numpy()

            row("rasterise", size, n, race(raster_old, raster_new, args.repeats), "1 thread")
            row("rasterise+shade", size, n, race(shade_old, shade_new, args.repeats), "1 thread")
            torch.set_num_threads(threads)
            frames = np.concatenate([render_frames(verts[s0: s0 + 4], faces, cam, albedo, plan=plan, neighbors=nb,
                                                   background=BACKGROUND).numpy() for s0 in range(0, n, 4)])
            row("encode", size, n, race(lambda: encode(frames, "medium", tmp / "e.mp4"),
                                        lambda: encode(frames, "veryfast", tmp / "e.mp4"), args.repeats),
                "x264 medium -> veryfast, crf 18")
            kw = dict(fps=25, vertex_part=part, part_names=names, size=size, progress=False)
            row("render_video", size, n, race(
                lambda: render_video([seq], faces_np, tmp / "o.mp4", renderer="mesh", preset="medium", chunk=16,
                                     workers=1, **kw),
                lambda: render_video([seq], faces_np, tmp / "n.mp4", **kw), args.repeats), "end to end")
        if args.long:
            size = int(args.sizes.split(",")[0])
            clip, *_ = speaking_head(args.long, seed=1)
            wav = tmp / "speech.wav"
            sf.write(wav, 0.1 * np.sin(np.arange(args.long * 16000 // 30) * 2 * np.pi * 150 / 16000), 16000)
            t, c = time.perf_counter(), cpu_seconds()
            render_video([clip], faces_np, tmp / "long.mp4", fps=30, audio_path=wav, vertex_part=part,
                         part_names=names, size=size, progress=False)
            t, c = time.perf_counter() - t, cpu_seconds() - c
            print(f"{args.long / 30:.0f} s of speech ({args.long} frames at 30 fps, audio) -> mp4 at {size}, new path: "
                  f"{t:.2f} s wall ({args.long / t:.1f} frames/s), {c:.2f} s CPU ({c / args.long * 1e3:.1f} ms/frame)")
    print(f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
