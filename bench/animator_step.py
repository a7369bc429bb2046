"""Cost of one baseline training step of each animator, this tree against a git revision (not a test).

    python bench/animator_step.py --baseline REV [--data data/synth] [--batch 8] [--reps 5] [--threads 1]

Rows, each one full optimiser step (forward, backward, Adam) on the same batch of ``--batch``
training recordings of ``--data`` (the real head, 4742 vertices), at the ``cpu`` preset the
benchmark trains:

    faceformer            teacher forcing (the shipped recipe), the vertex loss
    codetalker stage 1    the motion codebook (VQ-VAE): L1 reconstruction + VQ loss
    codetalker stage 2    teacher forcing: vertex MSE + code regression, the codec frozen (an
                          untrained one: a step costs the same whatever the weights)

Every repetition runs each row in a fresh process, first with the ``avguide`` package of git
revision ``REV`` (``git archive``) and then with this tree's, so that both see the same machine
load; the table gives the median seconds per step of each side (wall and process CPU, after two
warm-up steps) and the ratios old / new. On a machine shared with other work the CPU times and
the ratios are the figures to trust.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from video import baseline_tree

CHILD = r'''
import json, sys, time
import torch
job = json.loads(sys.argv[1])
torch.set_num_threads(job["threads"])
from avguide.config import load_config
from avguide.data.batching import RecordingDataset, collate
from avguide.train.animator import AnimatorTrainConfig, build_model
from avguide.train.setup import open_training_data

stage = "vq" if job["animator"] == "codetalker" else "baseline"  # stage 2 below: set_stage (no trained codec needed)
over = [f"data={job['data']}", "preset=cpu", f"animator={job['animator']}", f"stage={stage}",
        f"optim.batch_size={job['batch']}", "model.teacher_forcing=true"]
cfg = load_config(AnimatorTrainConfig, None, over)
index, train_refs, _ = open_training_data(cfg.data, cfg.layout)
torch.manual_seed(0)
model, _ = build_model(cfg, index)
if job["animator"] == "codetalker":
    model.set_stage(1 if job["stage"] == "vq" else 2)
model.train()
params = [p for p in model.parameters() if p.requires_grad]
opt = torch.optim.Adam(params, 1e-4)
ds = RecordingDataset(index, train_refs[: job["batch"]])
b = collate([ds[i] for i in range(len(ds))])
walls, cpus = [], []
for i in range(2 + job["steps"]):
    t0, c0 = time.perf_counter(), time.process_time()
    out = model(b.audio, b.audio_lengths, b.template, b.vertices, b.lengths, b.subject)
    loss = sum(out["losses"].values())
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    if i >= 2:
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
print(json.dumps({"wall": sorted(walls)[len(walls) // 2], "cpu": sorted(cpus)[len(cpus) // 2],
                  "frames": int(b.lengths.sum())}))
'''

ROWS = {"faceformer": ("faceformer", "baseline"), "codetalker stage 1": ("codetalker", "vq"),
        "codetalker stage 2": ("codetalker", "baseline")}


def measure(tree: Path, data: str, threads: int, batch: int, animator: str, stage: str) -> dict:
    """One row's median step in a fresh process importing avguide from ``tree``."""
    job = {"data": data, "threads": threads, "batch": batch, "animator": animator, "stage": stage, "steps": 3}
    r = subprocess.run([sys.executable, "-c", CHILD, json.dumps(job)], env={**os.environ, "PYTHONPATH": str(tree)},
                       cwd=tree, capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"{animator} {stage} failed in {tree}:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", required=True, help="git revision of the old side")
    ap.add_argument("--data", default="data/synth")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    data = str(Path(a.data).resolve())
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"old": baseline_tree(a.baseline, Path(tmp) / "old", "avguide"),
                 "new": baseline_tree(None, Path(tmp) / "new")}
        runs = {(row, side): [] for row in ROWS for side in trees}
        frames = 0
        for rep in range(a.reps):
            for row, (animator, stage) in ROWS.items():
                for side, tree in trees.items():
                    got = measure(tree, data, a.threads, a.batch, animator, stage)
                    runs[row, side].append(got)
                    frames = got["frames"]
            print(f"repetition {rep + 1}/{a.reps} done", file=sys.stderr, flush=True)
    print(f"one training step, preset cpu, batch {a.batch} ({frames} frames), {a.threads} torch thread(s); "
          f"medians of {a.reps} (old = {a.baseline})")
    print(f"{'row':<20} {'old wall':>9} {'new wall':>9} {'old CPU':>8} {'new CPU':>8} {'wall old/new':>13} "
          f"{'CPU old/new':>12}")
    for row in ROWS:
        old, new = runs[row, "old"], runs[row, "new"]
        med = {k: (statistics.median(r[k] for r in old), statistics.median(r[k] for r in new)) for k in ("wall", "cpu")}
        ratio = {k: statistics.median(o[k] / n[k] for o, n in zip(old, new)) for k in ("wall", "cpu")}
        print(f"{row:<20} {med['wall'][0]:9.3f} {med['wall'][1]:9.3f} {med['cpu'][0]:8.3f} {med['cpu'][1]:8.3f} "
              f"{ratio['wall']:13.2f} {ratio['cpu']:12.2f}")


if __name__ == "__main__":
    main()
