"""Speed of the exporters (not a test): ARKit solve, glb, Live Link Face CSV and OBJ writes.

    python bench/export.py [--repeats 3] [--seconds 60 600] [--fps 30] [--obj-frames 300]

Vertices are the embedded head (4742 vertices) driven by random ARKit weights at ``--fps``:
``interior`` weights uniform in [0, 1] (every unconstrained fit already in the box), and
``bounded`` weights uniform in [-0.5, 1.5] plus 0.1 mm of per-coordinate noise off the rig, so
that about half the bounds are active in the fit and the projected Newton steps run. Prints the
median wall time over ``--repeats`` runs (after no warm-up: the first run is included), the
process CPU time (the fairer figure on a shared machine), the real-time factor (seconds of
animation per wall second) and the solver's iteration count;
then the median write time of a glb and a CSV of the longest clip and of ``--obj-frames`` OBJ
files. Outputs go to a temporary directory that is removed.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from avguide.assets.head import load_head
from avguide.export import (head_vertex_colors, solve_arkit, write_arkit_csv, write_glb,
                            write_obj_sequence)


def _median_time(fn, repeats: int) -> tuple[float, float, object]:
    """Median wall and process-CPU seconds of ``fn()`` over ``repeats`` calls, and its result."""
    wall, cpu, out = [], [], None
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), statistics.median(cpu), out


def _vertices(head, n_frames: int, kind: str, rng: np.random.Generator) -> np.ndarray:
    """(T, V, 3) float32 vertices of random weights (see the module docstring)."""
    lo, hi, noise = (0.0, 1.0, 0.0) if kind == "interior" else (-0.5, 1.5, 1e-4)
    w = rng.uniform(lo, hi, size=(n_frames, 52)).astype(np.float32)
    deltas = head.blendshapes.reshape(52, -1)
    out = np.empty((n_frames, deltas.shape[1]), dtype=np.float32)
    for s in range(0, n_frames, 1000):                    # (T, V*3) without a float64 copy
        out[s:s + 1000] = w[s:s + 1000] @ deltas + head.vertices.reshape(-1)
        if noise:
            out[s:s + 1000] += rng.normal(0, noise, size=out[s:s + 1000].shape).astype(np.float32)
    return out.reshape(n_frames, -1, 3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seconds", type=float, nargs="+", default=[60.0, 600.0])
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--obj-frames", type=int, default=300)
    args = ap.parse_args()
    head = load_head()
    rng = np.random.default_rng(0)
    print(f"solve_arkit, {head.num_vertices} vertices, {args.fps:g} fps, median of {args.repeats}")
    weights = None
    for seconds in args.seconds:
        n = int(round(seconds * args.fps))
        for kind in ("interior", "bounded"):
            verts = _vertices(head, n, kind, rng)
            dt, cpu, fit = _median_time(
                lambda: solve_arkit(verts, head.vertices, head.blendshapes), args.repeats)
            print(f"  {seconds:6.0f} s = {n:6d} frames  {kind:8s}  {dt:7.2f} s wall "
                  f"({cpu:7.2f} s CPU)  {seconds / dt:6.1f}x real time, {1e3 * dt / n:.3f} ms/frame, "
                  f"{fit.iterations} Newton steps max, rms error {fit.rms_error_mm:.4f} mm")
            weights = fit.weights
            del verts
    tmp = Path(tempfile.mkdtemp(prefix="avguide-bench-export-"))
    try:
        n = len(weights)
        colors = head_vertex_colors(head)
        dt, cpu, _ = _median_time(lambda: write_glb(tmp / "take.glb", head.vertices, head.faces,
                                               head.blendshapes, weights, args.fps,
                                               vertex_colors=colors), args.repeats)
        size = (tmp / "take.glb").stat().st_size / 1e6
        print(f"write_glb        {n:6d} frames  {dt:7.3f} s wall ({cpu:.3f} s CPU)  {size:.1f} MB")
        dt, cpu, _ = _median_time(lambda: write_arkit_csv(tmp / "take.csv", weights, args.fps),
                             args.repeats)
        size = (tmp / "take.csv").stat().st_size / 1e6
        print(f"write_arkit_csv  {n:6d} frames  {dt:7.3f} s wall ({cpu:.3f} s CPU)  {size:.1f} MB")
        verts = _vertices(head, args.obj_frames, "interior", rng)
        dt, cpu, _ = _median_time(lambda: write_obj_sequence(tmp / "obj", verts, head.faces),
                                  args.repeats)
        print(f"write_obj_seq.   {args.obj_frames:6d} frames  {dt:7.3f} s wall ({cpu:.3f} s CPU)  "
              f"{1e3 * dt / args.obj_frames:.1f} ms/frame")
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
