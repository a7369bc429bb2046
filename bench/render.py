"""Speed of the differentiable lip renderer (not a test): ms per frame, forward and forward+backward.

    python bench/render.py [--reps 7] [--threads 2] [--sizes 96,192]

Meshes: the default head (``avguide.assets.head.load_head``), and synthetic FLAME-size (5023
vertices) and BIWI-size (23370 vertices) meshes: head-sized UV ellipsoids (radii 9 x 12 x 10 cm)
whose "lips" are the front vertices in a 5.5 x 2 cm box (the head's lip extent), so the 96x96
lip window sees a face-like triangle density for each vertex count. Each frame is rendered by
the lip camera with antialiasing, then centre-cropped/normalised to the expert's 88x88 input;
the backward pass is that of ``mean(expert input)`` w.r.t. the vertices. Medians over reps.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from avguide.render import albedo_from_parts, expert_crop, face_neighbors, lip_camera, lip_face_mask, render_mesh


def ellipsoid(n_verts: int) -> tuple[torch.Tensor, torch.Tensor]:
    """UV ellipsoid with exactly ``n_verts`` vertices (a few unused ones pad the count)."""
    nv = int(round(np.sqrt((n_verts - 2) / 2)))  # rings
    nu = (n_verts - 2) // nv  # vertices per ring
    th = torch.linspace(0, np.pi, nv + 2, dtype=torch.float64)[1:-1]
    ph = torch.arange(nu, dtype=torch.float64) * 2 * np.pi / nu
    ring = torch.stack([torch.sin(th)[:, None] * torch.sin(ph), torch.cos(th)[:, None].expand(-1, nu),
                        torch.sin(th)[:, None] * torch.cos(ph)], -1).reshape(-1, 3)  # +z front
    v = torch.cat([torch.tensor([[0.0, 1.0, 0.0]], dtype=torch.float64), ring,
                   torch.tensor([[0.0, -1.0, 0.0]], dtype=torch.float64)])
    v = v * torch.tensor([0.09, 0.12, 0.10], dtype=torch.float64)
    pad = n_verts - v.shape[0]
    v = torch.cat([v, v[:1].expand(pad, 3)])  # unused padding vertices
    faces = []
    for i in range(nv - 1):
        for j in range(nu):
            a, b = 1 + i * nu + j, 1 + i * nu + (j + 1) % nu
            faces += [[a, b + nu, a + nu], [a, b, b + nu]]
    last = 1 + (nv - 1) * nu
    for j in range(nu):
        faces += [[0, 1 + (j + 1) % nu, 1 + j][::-1], [nv * nu + 1, last + (j + 1) % nu, last + j]][::1]
    return v.float(), torch.tensor(faces)


def median_ms(fn, reps: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def bench_mesh(name, verts, faces, lips, albedo, batch, size, reps, rng):
    cam = lip_camera(verts, lips, size=size)
    nb = face_neighbors(faces)
    mask = lip_face_mask(verts, faces, cam)
    noise = 2e-4 * torch.randn((batch, *verts.shape), generator=rng)
    frames = verts[None] + noise  # (B, V, 3)

    def fwd():
        with torch.no_grad():
            img, _ = render_mesh(frames, faces, cam, albedo, neighbors=nb, face_mask=mask)
            expert_crop(img[..., :88 * size // 96 + 4, :88 * size // 96 + 4] if size < 88 else img)

    def fwd_bwd():
        x = frames.clone().requires_grad_(True)
        img, _ = render_mesh(x, faces, cam, albedo, neighbors=nb, face_mask=mask)
        expert_crop(img).mean().backward()

    f = median_ms(fwd, reps) / batch
    fb = median_ms(fwd_bwd, reps) / batch
    print(f"{name:>22s} V={verts.shape[0]:6d} F={faces.shape[0]:6d} drawn={int(mask.sum()):6d} "
          f"{size:4d}px B={batch:3d} | fwd {f:7.2f} ms/frame | fwd+bwd {fb:7.2f} ms/frame")
    return f, fb


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sizes", default="96,192", help="image sides to time for the default head")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    rng = torch.Generator().manual_seed(0)
    from avguide.assets.head import load_head

    h = load_head()
    head_v = torch.tensor(np.array(h.vertices, np.float32))
    head_f = torch.tensor(np.array(h.faces, np.int64))
    head_alb = albedo_from_parts(torch.tensor(np.array(h.vertex_part, np.int64)), tuple(h.part_names))
    meshes = [("default head", head_v, head_f, torch.tensor(np.array(h.regions["lips"])), head_alb)]
    for n in (5023, 23370):
        v, f = ellipsoid(n)
        lip = ((v[:, 2] > 0.05) & (v[:, 0].abs() < 0.0275) & (v[:, 1].abs() < 0.01)).nonzero()[:, 0]
        alb = torch.full((n, 3), 0.7)
        alb[lip] = torch.tensor([0.66, 0.38, 0.38])
        meshes.append((f"ellipsoid {n}", v, f, lip, alb))
    print(f"threads={a.threads} reps={a.reps} (medians)")
    rows = {}
    for name, v, f, lip, alb in meshes:
        for b in (1, 32):
            rows[(name, b, 96)] = bench_mesh(name, v, f, lip, alb, b, 96, a.reps, rng)
    for s in [int(x) for x in a.sizes.split(",") if int(x) != 96]:
        rows[("default head", 32, s)] = bench_mesh("default head", *meshes[0][1:], 32, s, a.reps, rng)
    base = rows[("default head", 32, 96)]
    print("\nratios to the default head at 96px, batch 32 (fwd | fwd+bwd):")
    for (name, b, s), (f, fb) in rows.items():
        print(f"  {name:>14s} B={b:3d} {s:4d}px: {f / base[0]:6.2f}x | {fb / base[1]:6.2f}x")


if __name__ == "__main__":
    main()
