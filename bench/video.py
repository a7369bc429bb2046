"""Speed of video output (not a test): this tree's video path against a baseline's, side by side.

    python bench/video.py --baseline REV [--size 512] [--frames 48] [--repeats 3] [--long 300] [--quality]

``--baseline REV`` (a git revision) gives the *old* side: this tree with ``avguide/render/``
taken from REV, so that only the renderer and the video writer differ. Without it the old side
is this tree too (a check of the noise). Every measurement runs in a fresh process (old and new
alternate, so both see the same load), timed inside it around the call: wall clock, this
process's CPU time (all threads) and its children's (ffmpeg, ``RUSAGE_CHILDREN``). Medians over
``--repeats`` rounds after one warm-up round; the speed-up is the median of the per-round ratios.

The head (``avguide.assets.head.load_head``) speaks: the jaw opens and closes, the head turns a
little and every vertex jitters by 0.2 mm, so that every vertex moves in every frame as in an
animator's output.

* ``render_frames``: ``--frames`` frames in ``render_video``'s default chunks, one PyTorch thread,
  by the tree's video renderer (:func:`avguide.render.jitraster.render_frames_jit` where the tree
  has it, its machine code loaded before the timing, else :func:`avguide.render.fastframes.render_frames`):
  the per-frame work on one core.
* ``render_video``: the whole call with its defaults (worker threads, x264), one panel, no
  caption, ``--frames`` frames, the renderer loaded before the call as ``avguide animate`` has it
  (a tree with :class:`avguide.render.frameprocess.FrameProcess` draws in one, started and ready
  before the call, as ``avguide animate`` does; its CPU time is counted with ffmpeg's; an older
  tree draws in the process, the compiled renderer loaded by ``warm_up``).
* ``10 s clip``: ``--long`` frames at 30 fps with audio and a caption, as ``avguide animate``
  writes them (the talking-head mp4 of 10 s of speech), the renderer loaded as above.

``idle fps``: the frame rate on two idle cores if the call keeps both busy (frames / half the CPU
seconds of all its processes); the target is 60 frames a second at 512 px (the ``10 s clip``).

``compiled path`` (this tree only): in a fresh process, importing the compiled renderer (numba)
and its first call (one frame), with an empty numba cache (``cold``: it compiles; once) and with
the cache the earlier runs filled (``warm``: it loads the machine code), then a second call. Every
other measurement of this tree runs with the warm cache.

``--quality`` adds, for this tree's frames, x264's CPU time (one thread and x264's default),
bit rate and the PSNR of the decoded video against the rendered frames for several presets.

The machine may be shared with trainings: the load average is printed; compare the ratios. CPU
time is the steadier figure: on an idle machine with C cores the frame rate is at most about
C / (CPU seconds per frame).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

ROOT = Path(__file__).resolve().parents[1]

CHILD = r'''
import json, os, resource, sys, time
a = json.loads(sys.argv[1])
frame_process = None
if a["stage"] == "render_video" and os.path.isfile(a["tree"] + "/avguide/render/frameprocess.py"):
    from avguide.animate import _frame_process, start_frame_process  # as avguide animate: first
    frame_process = _frame_process(start_frame_process())
import numpy as np, torch
import avguide
assert avguide.__file__.startswith(a["tree"]), (avguide.__file__, a["tree"])
from avguide.assets.head import load_head
from avguide.render import face_neighbors, head_albedo
from avguide.render.fastframes import render_frames
from avguide.render.fastraster import cull_plan
from avguide.render.video import BACKGROUND, render_video, video_camera
seq = np.load(a["frames"], mmap_mode="r")
head = load_head()
def frame_cpu():  # the frame process's CPU seconds so far (Linux /proc), 0 without one
    if frame_process is None:
        return 0.0
    fields = open(f"/proc/{frame_process._proc.pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
def usage():
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.perf_counter(), s.ru_utime + s.ru_stime, c.ru_utime + c.ru_stime + frame_cpu()
if a["stage"] != "first_call":  # the renderer loaded before the timing, as avguide animate has it
    if frame_process is None or not frame_process.ready():
        frame_process = None
        try:
            from avguide.render.jitraster import warm_up
            warm_up()
        except ImportError:  # a tree without the compiled renderer
            pass
t0 = usage()
if a["stage"] == "first_call":
    import avguide.render.jitraster as jr
    t_import = usage()
    v = torch.from_numpy(np.array(seq[:1]))
    faces = torch.from_numpy(np.array(head.faces, np.int64))
    cam = video_camera(v[0], "three_quarter", a["size"])
    albedo, nb, plan = head_albedo(head), face_neighbors(faces), cull_plan(v[0], faces)
    t_ready = usage()
    jr.render_frames_jit(v, faces, cam, albedo, plan=plan, neighbors=nb, background=BACKGROUND)
    t_first = usage()
    jr.render_frames_jit(v, faces, cam, albedo, plan=plan, neighbors=nb, background=BACKGROUND)
    t_second = usage()
    print(json.dumps({k: [x[0] - y[0], x[1] - y[1]] for k, x, y in
                      (("import", t_import, t0), ("first", t_first, t_ready), ("second", t_second, t_first))}))
    sys.exit()
if a["stage"] == "render_frames":
    try:
        from avguide.render.jitraster import render_frames_jit as render_frames
    except ImportError:  # a tree without the compiled renderer
        pass
    torch.set_num_threads(1)
    v = torch.from_numpy(np.array(seq))
    faces = torch.from_numpy(np.array(head.faces, np.int64))
    cam = video_camera(v[0], "three_quarter", a["size"])
    albedo, nb, plan = head_albedo(head), face_neighbors(faces), cull_plan(v[0], faces)
    chunk = min(64, max(1, 2 ** 20 // (a["size"] ** 2)))
    for s0 in range(0, len(v), chunk):
        render_frames(v[s0: s0 + chunk], faces, cam, albedo, plan=plan, neighbors=nb, background=BACKGROUND).numpy()
else:
    kw = {"frame_process": frame_process} if frame_process is not None else {}
    render_video([seq], np.asarray(head.faces), a["out"], fps=a["fps"], audio_path=a.get("audio"),
                 vertex_part=np.asarray(head.vertex_part), part_names=tuple(head.part_names), size=a["size"],
                 captions=a.get("captions"), progress=False, **kw)
t1 = usage()
print(json.dumps({"wall": t1[0] - t0[0], "cpu": t1[1] - t0[1], "ffmpeg": t1[2] - t0[2], "size": a["size"]}))
'''


def speaking_head(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]:
    """(n, V, 3) float32 frames of the head talking, its faces, vertex parts and part names."""
    from avguide.assets.head import load_head

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


def baseline_tree(rev: str | None, dest: Path, part: str = "avguide/render") -> Path:
    """A copy of this tree's ``avguide`` package under ``dest`` with ``part`` (a folder of it, or
    ``avguide`` itself) from ``rev`` (this tree's own when ``rev`` is None); returns the folder to
    put on PYTHONPATH."""
    shutil.copytree(ROOT / "avguide", dest / "avguide", ignore=shutil.ignore_patterns("__pycache__"))
    if rev is not None:
        shutil.rmtree(dest / part)
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, part], capture_output=True,
                                 check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def measure(tree: Path, cache: Path | None = None, **job) -> dict:
    """Run one measurement in a fresh process importing avguide from ``tree`` (numba's cache in
    ``cache``; default: beside the tree's modules)."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    if cache is not None:
        env["NUMBA_CACHE_DIR"] = str(cache)
    r = subprocess.run([sys.executable, "-c", CHILD, json.dumps({"tree": str(tree), **job})], env=env, cwd=tree,
                       capture_output=True, text=True)  # cwd: not this checkout's avguide first on sys.path
    if r.returncode:
        raise SystemExit(f"measurement failed in {tree}:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def race(trees: dict[str, Path], repeats: int, **job) -> dict[str, list[dict]]:
    """Alternate old and new ``repeats`` times after one warm-up round of each."""
    runs: dict[str, list[dict]] = {k: [] for k in trees}
    for r in range(repeats + 1):
        for k, tree in trees.items():
            res = measure(tree, **job)
            if r:
                runs[k].append(res)
    return runs


def report(stage: str, n: int, runs: dict[str, list[dict]]) -> None:
    """One line per side: per frame wall ms, fps, CPU ms (this process, its other processes: ffmpeg and
    the frame process), the frame rate on 2 idle cores, then the speed-ups."""
    old, new = runs["old"], runs["new"]
    for side, rs in (("old", old), ("new", new)):
        wall = statistics.median(r["wall"] for r in rs)
        cpu = statistics.median(r["cpu"] for r in rs)
        ff = statistics.median(r["ffmpeg"] for r in rs)
        idle = statistics.median(n / ((r["cpu"] + r["ffmpeg"]) / 2) for r in rs)
        print(f"{stage:<14} {side:<4} {wall / n * 1e3:8.1f} {n / wall:7.1f}  {cpu / n * 1e3:8.1f} {ff / n * 1e3:8.1f} "
              f"{(cpu + ff) / n * 1e3:8.1f} {idle:9.1f}   total {wall:6.2f} s wall, {cpu + ff:6.2f} s CPU", flush=True)
    if stage.endswith("clip") and new[0].get("size") == 512:
        idle = statistics.median(n / ((r["cpu"] + r["ffmpeg"]) / 2) for r in new)
        print(f"{stage:<14} target: >= 60 frames a second at 512 px on 2 idle cores: {idle:.0f} "
              f"({'met' if idle >= 60 else 'not met'} by this projection)", flush=True)
    speed = statistics.median(a["wall"] / b["wall"] for a, b in zip(old, new))
    cpu = statistics.median((a["cpu"] + a["ffmpeg"]) / (b["cpu"] + b["ffmpeg"]) for a, b in zip(old, new))
    print(f"{stage:<14} new/old: {speed:.2f}x faster (wall), {cpu:.2f}x less CPU (process + ffmpeg)", flush=True)


def compile_times(tree: Path, tmp: Path, repeats: int, **job) -> None:
    """The compiled renderer's import and first call, cold (an empty numba cache each time) and
    warm (the cache beside the tree's modules, filled by the earlier measurements)."""
    runs: dict[str, list[dict]] = {"cold": [], "warm": []}
    for r in range(repeats):
        if r == 0:  # compiling takes a while: once
            runs["cold"].append(measure(tree, cache=tmp / f"numba_cold{r}", stage="first_call", **job))
        runs["warm"].append(measure(tree, stage="first_call", **job))
    print("compiled path (this tree, fresh process, 1 frame): wall s (CPU s); cold: once, warm: medians")
    for side, rs in runs.items():
        med = {k: [statistics.median(r[k][i] for r in rs) for i in (0, 1)] for k in ("import", "first", "second")}
        print(f"  {side:<5} import numba + renderer {med['import'][0]:6.2f} ({med['import'][1]:5.2f})   first call "
              f"{med['first'][0]:6.2f} ({med['first'][1]:5.2f})   second call {med['second'][0] * 1e3:6.1f} ms "
              f"({med['second'][1] * 1e3:5.1f})", flush=True)


def quality(frames: np.ndarray, tmp: Path) -> None:
    """x264 presets on pre-rendered frames: CPU, bit rate, PSNR of the decoded video (crf 18)."""
    import resource

    from avguide.render.video import _ffmpeg_exe

    t, h, w, _ = frames.shape
    mask = (frames != frames[:, :1, :1]).any(-1)  # the head (pixels unlike the corner)
    print(f"x264 on {t} rendered frames {w}x{h} (rgb24 in, yuv420p, crf 18, 30 fps): CPU ms/frame, bit rate, "
          "PSNR of the decoded frames against the rendered ones (all pixels / the head's)")
    for preset, threads, extra in [("veryfast", None, []), ("superfast", 1, []), ("ultrafast", 1, []),
                                   ("ultrafast", None, []), ("ultrafast", 1, ["-qp", "0"])]:
        args = ["-c:v", "libx264", "-preset", preset, "-pix_fmt", "yuv420p"] + (extra or ["-crf", "18"])
        args += ["-threads", str(threads)] if threads else []
        out = tmp / "q.mp4"
        c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run([_ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s",
                        f"{w}x{h}", "-r", "30", "-i", "-", *args, "-frames:v", str(t), "-f", "mp4", str(out)],
                       input=frames.tobytes(), check=True)
        c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (c1.ru_utime + c1.ru_stime - c0.ru_utime - c0.ru_stime) / t * 1e3
        raw = subprocess.run([_ffmpeg_exe(), "-loglevel", "error", "-i", str(out), "-f", "rawvideo", "-pix_fmt",
                              "rgb24", "-"], capture_output=True, check=True).stdout
        err = (np.frombuffer(raw, np.uint8).reshape(frames.shape).astype(np.float64) - frames) ** 2
        psnr = 10 * np.log10(255 ** 2 / err.mean())
        psnr_head = 10 * np.log10(255 ** 2 / err[mask].mean())
        name = f"{preset} {'threads ' + str(threads) if threads else 'default threads'}" + (" lossless" if extra else "")
        print(f"  {name:<34} {cpu:6.2f} ms  {out.stat().st_size * 8 / (t / 30) / 1e3:7.0f} kbit/s  "
              f"{psnr:5.2f} / {psnr_head:5.2f} dB", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline", help="git revision whose avguide/render is the old side (default: this tree)")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--frames", type=int, default=48)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--long", type=int, default=300, help="frames of the 10 s clip at 30 fps (0: skip)")
    ap.add_argument("--quality", action="store_true", help="x264 presets: CPU, bit rate, PSNR")
    args = ap.parse_args()
    print(f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} cores; old = "
          f"{'avguide/render of ' + args.baseline if args.baseline else 'this tree'}, new = this tree; "
          f"medians of {args.repeats}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        trees = {"old": baseline_tree(args.baseline, tmp / "old"), "new": baseline_tree(None, tmp / "new")}
        seq, *_ = speaking_head(args.frames)
        np.save(tmp / "frames.npy", seq)
        print(f"{'':<19} {'wall, per frame':^16}  {'CPU ms per frame':^26}")
        print(f"{'stage':<14} {'side':<4} {'ms':>8} {'fps':>7}  {'python':>8} {'others':>8} {'all':>8} {'idle fps':>9}")
        job = dict(frames=str(tmp / "frames.npy"), size=args.size)
        report("render_frames", args.frames, race(trees, args.repeats, stage="render_frames", **job))
        report("render_video", args.frames, race(trees, args.repeats, stage="render_video", out=str(tmp / "v.mp4"),
                                                 fps=30.0, **job))
        if args.long:
            clip, *_ = speaking_head(args.long, seed=1)
            np.save(tmp / "clip.npy", clip)
            wav = tmp / "speech.wav"
            sf.write(wav, 0.1 * np.sin(np.arange(args.long * 16000 // 30) * 2 * np.pi * 150 / 16000), 16000)
            report(f"{args.long / 30:g} s clip", args.long, race(
                trees, args.repeats, stage="render_video", frames=str(tmp / "clip.npy"), size=args.size,
                out=str(tmp / "c.mp4"), fps=30.0, audio=str(wav), captions=["speech (style)"]))
        if (ROOT / "avguide" / "render" / "jitraster.py").is_file():
            compile_times(trees["new"], tmp, args.repeats, frames=str(tmp / "frames.npy"), size=args.size)
        if args.quality:
            from avguide.assets.head import load_head
            from avguide.render import face_neighbors, head_albedo
            from avguide.render.fastframes import render_frames
            from avguide.render.fastraster import cull_plan
            from avguide.render.video import BACKGROUND, video_camera

            head = load_head()
            v = torch.from_numpy(seq)
            faces = torch.from_numpy(np.array(head.faces, np.int64))
            cam = video_camera(v[0], "three_quarter", args.size)
            frames = render_frames(v, faces, cam, head_albedo(head), plan=cull_plan(v[0], faces),
                                   neighbors=face_neighbors(faces), background=BACKGROUND).numpy()
            quality(frames, tmp)
    print(f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
