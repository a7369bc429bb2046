"""Speed of the differentiable lip renderer (not a test): ms per frame, forward and forward+backward.

    python bench/render.py [--reps 7] [--threads 1] [--workers 2] [--sizes 96,192] [--ref-batch 2] [--compile]

Meshes: the default head (``avguide.assets.head.load_head``, 4742 vertices) and two denser
versions of it with a realistic lip-region density: FLAME size (5023 vertices: the 281 edges
nearest the mouth bisected) and BIWI size (23370 vertices: every triangle split in four by its
edge midpoints, then the edges nearest the mouth bisected). Each frame is a jaw-open pose with
0.2 mm jitter rendered by the lip camera (96x96, antialiased, ``lip_face_mask``) and cropped /
normalised to the expert's 88x88 input; the backward pass is that of ``mean(expert input)``
w.r.t. the vertices. Medians over ``--reps`` after one warm-up (the full and the window
forward+backward: 2 reps + 1 alternating pairs), wall clock and process CPU time.

The batch is rendered in ``--workers`` threads (:func:`avguide.render.parallel.map_batch`, as
``expert_input(workers=...)`` does in training), each with ``--threads`` intra-op threads: the
default 1 x 2 uses two cores. The ``1 worker`` column times the same frames in one call, side by
side. ``expert window`` times the path ``expert_input`` takes in training: the lip camera draws only
the 88x88 crop and a one-pixel ring (the same expert input). The last column compares with
``render_mesh_reference`` (reference rasteriser and full-image primitives) on ``--ref-batch``
frames, per frame. ``--compile`` adds the expert window with ``render_mesh(compile=True)``
(:mod:`avguide.render.compiled`), timed alternately with the eager one, and its first call
(which compiles).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from avguide.render import expert_crop, face_neighbors, lip_camera, lip_face_mask, render_mesh
from avguide.render.lipcam import CROP_SIZE, crop_window
from avguide.render.mesh import render_mesh_reference
from avguide.render.parallel import map_batch


def _edges(f: np.ndarray) -> np.ndarray:
    e = np.sort(np.stack([f, np.roll(f, -1, 1)], -1).reshape(-1, 2), 1)
    return np.unique(e, axis=0)


def split_in_four(v: np.ndarray, f: np.ndarray, lab: np.ndarray):
    """Midpoint subdivision of every triangle (orientation kept); new vertices average the ends."""
    e = _edges(f)
    key = {(int(a), int(b)): len(v) + i for i, (a, b) in enumerate(e)}
    mid = lambda a, b: key[(min(a, b), max(a, b))]  # noqa: E731
    out = []
    for a, b, c in f.tolist():
        ab, bc, ca = mid(a, b), mid(b, c), mid(c, a)
        out += [[a, ab, ca], [ab, b, bc], [ca, bc, c], [ab, bc, ca]]
    return np.r_[v, (v[e[:, 0]] + v[e[:, 1]]) / 2], np.array(out), np.r_[lab, (lab[e[:, 0]] + lab[e[:, 1]]) / 2]


def bisect_near(v: np.ndarray, f: np.ndarray, lab: np.ndarray, n_new: int, centre: np.ndarray):
    """Add ``n_new`` vertices by bisecting the edges nearest ``centre`` (conforming, no cracks)."""
    while n_new > 0:
        e = _edges(f)
        order = np.argsort(np.linalg.norm((v[e[:, 0]] + v[e[:, 1]]) / 2 - centre, axis=1))
        face_of = {}
        for i, tri in enumerate(f.tolist()):
            for k in range(3):
                a, b = tri[k], tri[(k + 1) % 3]
                face_of.setdefault((min(a, b), max(a, b)), []).append((i, k))
        used, new_f, new_v, new_l = set(), [], [], []
        for a, b in e[order].tolist():
            owners = face_of[(a, b)]
            if len(new_v) == n_new or any(i in used for i, _ in owners):
                continue
            m = len(v) + len(new_v)
            new_v.append((v[a] + v[b]) / 2)
            new_l.append((lab[a] + lab[b]) / 2)
            for i, k in owners:
                used.add(i)
                p = f[i]
                new_f += [[p[k], m, p[(k + 2) % 3]], [m, p[(k + 1) % 3], p[(k + 2) % 3]]]
        keep = np.array([i not in used for i in range(len(f))])
        f = np.r_[f[keep], np.array(new_f)]
        v, lab = np.r_[v, np.array(new_v)], np.r_[lab, np.array(new_l)]
        n_new -= len(new_v)
    return v, f, lab


def median_ms(fn, reps: int) -> tuple[float, float]:
    """Median wall and process-CPU milliseconds of ``fn()`` after one warm-up call."""
    fn()
    wall, cpu = [], []
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return 1000 * statistics.median(wall), 1000 * statistics.median(cpu)


def paired_ms(fn_a, fn_b, reps: int) -> tuple[float, float, float, float, float]:
    """``fn_a`` and ``fn_b`` timed alternately (a, b, a, b, ...) so that the machine's drift hits
    both alike: median wall and process-CPU ms of each (a, then b), and the median of the
    per-pair ratios a / b."""
    fn_a(), fn_b()
    times = {fn_a: ([], []), fn_b: ([], [])}
    for _ in range(reps):
        for fn, (wall, cpu) in times.items():
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    (wa, ca), (wb, cb) = times.values()
    ratio = statistics.median([a / b for a, b in zip(wa, wb)])
    return (*(1000 * statistics.median(x) for x in (wa, ca, wb, cb)), ratio)


def bench_mesh(name, verts, faces, lips, albedo, jaw, batch, size, reps, ref_batch, workers, rng, compile=False):
    cam = lip_camera(verts, lips, size=size)
    nb = face_neighbors(faces)
    mask = lip_face_mask(verts, faces, cam)
    w = torch.rand(batch, 1, 1, generator=rng) * 0.6
    frames = verts[None] + w * jaw[None] + 2e-4 * torch.randn((batch, *verts.shape), generator=rng)  # (B, V, 3)

    # the training path (expert_input) draws only the 88x88 crop and a 1-pixel ring
    window = crop_window(cam, CROP_SIZE)

    def lip_input(render=render_mesh, camera=cam, **kw):
        return lambda sl, x: expert_crop(render(x, faces, camera, albedo, neighbors=nb, **kw)[0])

    def fwd():
        with torch.no_grad():
            map_batch(lip_input(face_mask=mask), [frames], workers=workers)

    def fwd_bwd(render=render_mesh, x=frames, n_workers=workers, **kw):
        x = x.clone().requires_grad_(True)
        map_batch(lip_input(render, **kw), [x], workers=n_workers).mean().backward()

    f_wall, f_cpu = median_ms(fwd, reps)
    fb_wall, fb_cpu, win_wall, win_cpu, win_ratio = paired_ms(
        lambda: fwd_bwd(face_mask=mask), lambda: fwd_bwd(face_mask=mask, camera=window), 2 * reps + 1)
    one_wall, _ = median_ms(lambda: fwd_bwd(face_mask=mask, n_workers=1), reps)
    ratio = ""
    if ref_batch > 0:
        sub = frames[:ref_batch]
        ref_wall, _ = median_ms(lambda: fwd_bwd(render_mesh_reference, sub, 1), 1)
        fast_wall, _ = median_ms(lambda: fwd_bwd(x=sub, n_workers=1, face_mask=mask), 3)
        ratio = f" | reference/fast (B={ref_batch}) {ref_wall / fast_wall:6.1f}x"
    if compile:
        t0 = time.perf_counter()
        fwd_bwd(face_mask=mask, camera=window, compile=True)
        first = time.perf_counter() - t0
        eager_wall, _, comp_wall, comp_cpu, comp_ratio = paired_ms(
            lambda: fwd_bwd(face_mask=mask, camera=window),
            lambda: fwd_bwd(face_mask=mask, camera=window, compile=True), 2 * reps + 1)
        ratio += (f" | compiled window fwd+bwd {comp_wall / batch:7.2f} (cpu {comp_cpu / batch:6.2f}; eager "
                  f"{eager_wall / batch:7.2f}, eager/compiled {comp_ratio:4.2f}x, timed alternately; first call "
                  f"{first:5.1f} s)")
    print(f"{name:>14s} V={verts.shape[0]:6d} F={faces.shape[0]:6d} {size:4d}px B={batch:3d} | fwd {f_wall / batch:7.2f} "
          f"ms/frame (cpu {f_cpu / batch:6.2f}) | fwd+bwd {fb_wall / batch:7.2f} ms/frame (cpu {fb_cpu / batch:6.2f}) "
          f"| 1 worker {one_wall / batch:7.2f} ({one_wall / fb_wall:4.2f}x) | expert window fwd+bwd "
          f"{win_wall / batch:7.2f} (cpu {win_cpu / batch:6.2f}; full/window {win_ratio:4.2f}x, timed alternately)"
          + ratio, flush=True)
    return f_wall / batch, fb_wall / batch, win_wall / batch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads (torch.set_num_threads)")
    ap.add_argument("--workers", type=int, default=2, help="threads rendering chunks of the batch")
    ap.add_argument("--sizes", default="96,192", help="image sides to time for the default head")
    ap.add_argument("--ref-batch", type=int, default=2, help="frames for the reference timing (0: skip)")
    ap.add_argument("--compile", action="store_true", help="also time the expert window with render_mesh(compile=True)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    rng = torch.Generator().manual_seed(0)
    from avguide.assets.arkit import ARKIT_INDEX
    from avguide.assets.head import load_head
    from avguide.render import head_albedo

    h = load_head()
    v = np.array(h.vertices, np.float64)
    f = np.array(h.faces, np.int64)
    jaw = np.array(h.blendshapes[ARKIT_INDEX["jawOpen"]], np.float64)
    lips = np.zeros(len(v))
    lips[np.array(h.regions["lips"])] = 1
    lab = np.c_[head_albedo(h).double().numpy(), jaw, lips]  # attributes carried to new vertices
    centre = v[lips > 0].mean(0)
    meshes = [("default head", v, f, lab)]
    meshes.append(("FLAME-size", *bisect_near(v, f, lab, 5023 - len(v), centre)))
    v4, f4, l4 = split_in_four(v, f, lab)
    meshes.append(("BIWI-size", *bisect_near(v4, f4, l4, 23370 - len(v4), centre)))
    print(f"threads={a.threads} workers={a.workers} reps={a.reps} (medians; wall clock, and process CPU time in "
          "brackets; '1 worker': fwd+bwd of the same frames in one call, and its time / the workers' time)")
    rows = {}
    for name, mv, mf, ml in meshes:
        args = (torch.tensor(mv, dtype=torch.float32), torch.tensor(mf), torch.tensor((ml[:, 6] > 0.5).nonzero()[0]),
                torch.tensor(ml[:, :3], dtype=torch.float32), torch.tensor(ml[:, 3:6], dtype=torch.float32))
        for b in (1, 32):
            rows[(name, b, 96)] = bench_mesh(name, *args, b, 96, a.reps, a.ref_batch if b == 32 else 0, a.workers, rng,
                                             a.compile)
        if name == "default head":
            for s in [int(x) for x in a.sizes.split(",") if int(x) != 96]:
                rows[(name, 32, s)] = bench_mesh(name, *args, 32, s, a.reps, 0, a.workers, rng)
    base = rows[("default head", 32, 96)]
    print("\nratios to the default head at 96px, batch 32 (fwd | fwd+bwd | expert window fwd+bwd):")
    for (name, b, s), (fw, fb, wb) in rows.items():
        print(f"  {name:>14s} B={b:3d} {s:4d}px: {fw / base[0]:6.2f}x | {fb / base[1]:6.2f}x | {wb / base[2]:6.2f}x")


if __name__ == "__main__":
    main()
