"""The main job's speed and memory, measured side by side in one run (issue 19's targets).

    python bench/main_job.py                        # the shipped default animator
    python bench/main_job.py --checkpoint RUN --long-minutes 10 --repeats 3
    python bench/main_job.py --baseline REV --long-minutes 0   # 2. only, old video path against new

1. Long audio: peak resident memory (each case in its own process) of animating ``--long-minutes``
   of speech to a .npy, the whole clip at once (``model.generate``, what ``animate`` did before)
   against the streamed path ``avguide animate`` takes now (chunks into a memory-mapped file).
2. End to end: ``avguide animate TEN_S.wav --formats mp4`` (a fresh process: start-up, model load,
   animation, render and encode) for 10 s of speech, median of ``--repeats``: wall clock and the
   CPU time of the command with all its processes (frame process, ffmpeg); and the animation alone
   (in-process) for the same clip. One round before the measured ones warms up (numba's on-disk
   cache of the compiled video renderer: the figures are for a warm cache; ``bench/video.py``
   prints the cold first call). With ``--baseline REV`` the command also runs, alternating, on
   this tree with the whole ``avguide`` package taken from git revision REV, with the ratios.

   ``idle 2 cores``: the wall time the CPU times give on two idle cores (this machine is usually
   shared, so its wall clock is not that): the command's own CPU time until the animation is done
   (start-up, torch, the model, the animation: one core, one GIL), plus half of the rest (drawing
   on two threads, x264 and the piping keep both cores busy). The frame process's start-up
   (measured alone, printed) runs on the other core during the first part and is left out of it
   when it is shorter. The target is this figure under 5 s.

The speech is espeak-ng reading a paragraph (repeated to the length), so the animator sees real
speech. Medians; the machine is shared, so compare the columns of one run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TEXT = ("The quick brown fox jumps over the lazy dog. Peter picked a peck of pickled peppers. "
        "She sells sea shells by the sea shore, and the shells she sells are surely sea shells. ")

CHILD = r'''
import resource, sys, numpy as np, torch
from avguide.animate import load_animator, face_template, animate_speech, write_outputs, n_frames_of
from avguide.io import load_audio, save_npy_atomic
mode, ckpt, wav, out = sys.argv[1:5]
anim = load_animator(ckpt)
base, faces, style = face_template(anim)
audio = load_audio(wav)
if mode == "whole":
    a = torch.from_numpy(audio)[None]
    with torch.no_grad():
        v = anim.model.generate(a, torch.tensor([a.shape[1]]), torch.from_numpy(base)[None], torch.tensor([style]))
    save_npy_atomic(out + "/whole.npy", v[0].reshape(v.shape[1], -1).numpy())
else:
    write_outputs(out, "streamed", animate_speech(anim, audio, base, style), n_frames_of(anim, len(audio)), audio,
                  anim, base, faces, ["npy"])
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
'''

E2E = r'''
import json, resource, sys, time
def usage():
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return [time.perf_counter(), s.ru_utime + s.ru_stime, c.ru_utime + c.ru_stime]
t0 = usage()
import avguide.animate as am
marks = {}
animate_speech = am.animate_speech
def timed(*args, **kw):  # the animation's end: the video's frames start
    yield from animate_speech(*args, **kw)
    marks["animated"] = usage()
am.animate_speech = timed
from avguide.cli import main
rc = main(sys.argv[1:])
marks["end"] = usage()
print(json.dumps({"rc": rc, **{k: [a - b for a, b in zip(v, t0)] for k, v in marks.items()}}))
'''

FRAME_START = r'''
import resource
from avguide.animate import _end_frame_process, _frame_process, start_frame_process
proc = start_frame_process()
assert _frame_process(proc).ready()
_end_frame_process(proc)
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print(r.ru_utime + r.ru_stime)
'''


def speech(seconds: float, path: Path) -> None:
    from avguide.animate import speak_text
    from avguide.audio.io import save_wav

    one = speak_text(TEXT)
    reps = int(np.ceil(seconds * 16000 / len(one)))
    save_wav(path, np.tile(one, reps)[: int(seconds * 16000)])


def peak_mb(mode: str, ckpt: str, wav: Path, out: Path) -> tuple[float, float]:
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", CHILD, mode, ckpt, str(wav), str(out)], capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(r.stderr[-2000:])
    return float(r.stdout.strip().splitlines()[-1]), time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default="default")
    ap.add_argument("--long-minutes", type=float, default=10.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--baseline", help="git revision whose avguide/render is the old side of 2. (bench/video.py)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        long_wav, short_wav = tmp / "long.wav", tmp / "ten_s.wav"
        if args.long_minutes:
            speech(args.long_minutes * 60, long_wav)
        speech(10.0, short_wav)
        if args.long_minutes:
            print(f"1. {args.long_minutes:g} min of speech to .npy, peak resident memory (own process each)")
            for mode in ("whole", "streamed"):
                mb, s = peak_mb(mode, args.checkpoint, long_wav, tmp)
                print(f"   {mode:<9} {mb:8.0f} MB   {s:7.1f} s")
        print("2. 10 s of speech: `avguide animate ten_s.wav --formats mp4` end to end (fresh process)")
        trees = {"new": None}
        if args.baseline:
            from video import baseline_tree

            trees = {"old": baseline_tree(args.baseline, tmp / "old", "avguide"), "new": baseline_tree(None, tmp / "new")}
        runs = {k: [] for k in trees}
        for i in range(args.repeats + 1):  # round 0 warms up (numba's cache of the compiled renderer), not counted
            for side, tree in trees.items():
                env = {**os.environ, "PYTHONPATH": str(tree)} if tree else None
                r = subprocess.run([sys.executable, "-c", E2E, "animate", str(short_wav), "-o", str(tmp / f"{side}{i}"),
                                    "--formats", "mp4", "--checkpoint", args.checkpoint, "--no-progress"],
                                   capture_output=True, text=True, env=env, cwd=tree or None)
                if r.returncode:
                    raise SystemExit(r.stderr[-2000:])
                if i:
                    runs[side].append(json.loads(r.stdout.strip().splitlines()[-1]))
        starts = []
        for _ in range(args.repeats):
            r = subprocess.run([sys.executable, "-c", FRAME_START], capture_output=True, text=True,
                               env={**os.environ, "PYTHONPATH": str(trees["new"])} if trees["new"] else None,
                               cwd=trees["new"] or None)
            starts.append(float(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 else 0.0)
        start = statistics.median(starts)
        print(f"   the frame process's start-up alone (numba, the kernel's machine code): {start:.2f} s CPU")
        print(f"   {'side':<5} {'wall s':>7} {'CPU s':>7} {'CPU until animated':>19} {'idle 2 cores s':>15}")
        summary = {}
        for side, rs in runs.items():
            wall = [r["end"][0] for r in rs]
            cpu = [r["end"][1] + r["end"][2] for r in rs]
            first = [r["animated"][1] for r in rs]  # this process only: children are counted when they end
            side_start = start if side == "new" else 0.0  # the old tree draws in this process
            idle = [f + max(0.0, c - f - side_start) / 2 + max(0.0, side_start - f) for f, c in zip(first, cpu)]
            summary[side] = (wall, cpu, idle)
            print(f"   {side:<5} {statistics.median(wall):7.2f} {statistics.median(cpu):7.2f} "
                  f"{statistics.median(first):19.2f} {statistics.median(idle):15.2f}   (medians of {args.repeats}; "
                  f"wall {', '.join(f'{w:.2f}' for w in wall)})")
        if args.baseline:
            (wo, co, io), (wn, cn, inn) = summary["old"], summary["new"]
            print(f"   new/old: {statistics.median(a / b for a, b in zip(wo, wn)):.2f}x faster (wall), "
                  f"{statistics.median(a / b for a, b in zip(co, cn)):.2f}x less CPU, "
                  f"{statistics.median(a / b for a, b in zip(io, inn)):.2f}x on 2 idle cores")
        print(f"   target: 10 s of speech to mp4 in under 5 s on 2 idle cores: "
              f"{'met' if statistics.median(summary['new'][2]) < 5 else 'not met'} by this projection")
        if "torch" not in sys.modules:  # as avguide animate has it (not set for the commands above: the old tree's own)
            os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        from avguide.animate import animate_speech, face_template, load_animator
        from avguide.io import load_audio

        anim = load_animator(args.checkpoint)
        base, _, style = face_template(anim)
        audio = load_audio(short_wav)
        anim_times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            frames = sum(len(b) for b in animate_speech(anim, audio, base, style))
            anim_times.append(time.perf_counter() - t0)
        print(f"   the animation alone: median {statistics.median(anim_times):.2f} s for {frames} frames")


if __name__ == "__main__":
    main()
