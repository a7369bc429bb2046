"""Cost of one AV-stage training step against a baseline step (not a test).

    python bench/train_step.py [--data data/synth] [--batch 8] [--reps 5] [--threads 2]
                               [--expert cpu_small|narrow] [--forcing tf|ar|both] [--rows NAME,...]
                               [--torch-raster]

The animator is FaceFormer at preset ``cpu``, trained with teacher forcing (``tf``, the shipped
recipe ``avguide/configs/faceformer.yaml``) and/or autoregressively (``ar``, FaceFormer's default),
from the same initial weights, on a batch of ``--batch`` training recordings of ``--data`` (the real
head, 4742 vertices, 30 fps).
The expert is the stage-1 ``cpu_small`` AV preset (44x44 crops, SentencePiece units), or with
``--expert narrow`` the narrowed one of the ``cpu`` bench preset (``avguide/configs/expert/narrow.yaml``:
32x32 crops, a third of the cost), with random weights: a step costs the same whatever the
weights. Each row is one full optimiser step of the animator loop (forward,
:meth:`objective.step`, backward, clip, Adam):

    baseline              the vertex loss only (:class:`avguide.train.losses.WeightedSum`)
    av fixed              + the AV loss at a fixed l_av (:class:`avguide.train.avguidance.AVGuidance`)
    av fixed + probe      + the gradient probes (``av.probe_every`` steps; here every step)
    av balanced vertices  l_av set every step from the gradient norms on the vertices
    av balanced params    ... on the animator's parameters

each once per training mode of ``--forcing`` (``--rows`` keeps some of them). The lip renderer runs
its compiled kernels (when numba is importable: the z-buffer of :mod:`avguide.render.jitzbuf`, the
shading of :mod:`avguide.render.jitshade`, the antialiasing pairs of :mod:`avguide.render.jitalias`,
the 25 fps resampling of :mod:`avguide.render.jitblend`); with ``--torch-raster`` every AV row also
runs with the torch renderer they replace (``raster.USE_JIT = False``: ``... torch``, the same
images and gradients up to float rounding), interleaved with it: the cost before and after side by
side. Every repetition runs
each row once, in turn, so that a change of machine load hits them alike; the table gives the
median wall-clock and process CPU seconds per step (all threads: torch's and the renderer's
workers) and their ratios to the medians of the baseline of the same training mode. On a machine shared with other
work, run it with ``--threads 1``: the CPU times are then the steady measure of what a step costs
(with more torch threads than free cores, their spin-waiting inflates the CPU times).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import statistics
import time

import torch

from avguide import configs
from avguide.config import load_config
from avguide.data.batching import RecordingDataset, collate
from avguide.lipreader.lipvideo import assets_from_dataset
from avguide.lipreader.model import build_expert
from avguide.lipreader.reader import TrainedExpert, make_tokenizer
from avguide.presets import expert_preset
from avguide.render import jitzbuf, raster
from avguide.train.animator import AnimatorTrainConfig, _weights, build_model
from avguide.train.avguidance import AVGuidance
from avguide.train.losses import WeightedSum
from avguide.train.optim import build_optimizer, clip_gradients
from avguide.train.setup import open_training_data

ROWS = {
    "baseline": None,
    "av fixed": {},
    "av fixed + probe": {"probe_every": 1},
    "av balanced vertices": {"balance": 0.2},
    "av balanced params": {"balance": 0.2, "balance_on": "parameters"},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="data/synth")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--expert", choices=["cpu_small", "narrow"], default="cpu_small")
    ap.add_argument("--forcing", choices=["tf", "ar", "both"], default="both",
                    help="the animator's training: teacher forcing (the shipped recipe), autoregressive, or both")
    ap.add_argument("--rows", default=",".join(ROWS), help="comma-separated rows to run (baseline always)")
    ap.add_argument("--torch-raster", action="store_true",
                    help="also run every AV row with the torch renderer (raster.USE_JIT = False: z-buffer, "
                         "shading, antialiasing, resampling)")
    a = ap.parse_args()
    rows = {name: ROWS[name] for name in ["baseline", *a.rows.split(",")] if name in ROWS}
    modes = ["tf", "ar"] if a.forcing == "both" else [a.forcing]
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)

    over = [f"data={a.data}", "preset=cpu", f"optim.batch_size={a.batch}", "optim.lr=1e-3", "stage=av",
            "av.expert=random", "av.l_av=1e-4", "av.probe_every=0"]
    cfg = load_config(AnimatorTrainConfig, None, over)
    index, train_refs, _ = open_training_data(cfg.data, cfg.layout)
    model, _ = build_model(cfg, index)
    models = {}  # mode -> (model, its trainable parameters, its optimiser), the same initial weights
    for mode in modes:
        m = copy.deepcopy(model)
        m.cfg = dataclasses.replace(m.cfg, teacher_forcing=mode == "tf")
        params = [p for p in m.parameters() if p.requires_grad]
        models[mode] = m, params, build_optimizer([{"params": params}], cfg.optim, 1)[0]
    ds = RecordingDataset(index, train_refs[: a.batch], need_text=True)
    batch = collate([ds[i] for i in range(len(ds))])
    tok = make_tokenizer("spm")
    ecfg, crop = expert_preset("av", "cpu_small", tok.odim), 44
    if a.expert == "narrow":
        recipe = configs.load("expert/narrow")
        widths = ("visual_widths", "audio_widths")
        ecfg = dataclasses.replace(ecfg, **{k: tuple(v) if k in widths else v for k, v in recipe["expert"].items()})
        crop = recipe["crop"]
    expert = build_expert(ecfg).eval()
    trained = TrainedExpert(expert, tok, crop, "template", assets_from_dataset(index), {"tokenizer": "spm"}, None)
    lips = torch.as_tensor(index.regions["lips"])
    weights = _weights(cfg)
    own = WeightedSum({k: v for k, v in weights.items() if k not in ("ctc", "ce", "rlv")})  # the baseline
    objectives = {}  # (mode, row) -> (objective, compiled z-buffer)
    for mode in modes:
        for name, av in rows.items():
            if av is None:
                objectives[mode, name] = own, True
                continue
            for jit in ([False, True] if a.torch_raster else [True]):
                objectives[mode, name + ("" if jit else " torch")] = AVGuidance(
                    dataclasses.replace(cfg.av, **av), index.n_vertices, lips, torch.device("cpu"), trained,
                    weights=weights, params=models[mode][1]), jit

    def step(mode: str, objective, jit: bool) -> tuple[float, float]:
        model, params, opt = models[mode]
        raster.USE_JIT = jit
        t0, c0 = time.perf_counter(), time.process_time()
        out = model(batch.audio, batch.audio_lengths, batch.template, batch.vertices, batch.lengths, batch.subject)
        backward, _ = objective.step(out["pred"], batch, dict(out["losses"]), 0)
        opt.zero_grad(set_to_none=True)
        backward()
        clip_gradients([p for p in params if p.grad is not None], cfg.optim.grad_clip)
        opt.step()
        return time.perf_counter() - t0, time.process_time() - c0

    for m, _, _ in models.values():
        m.train()
    frames = int(batch.lengths.sum())
    print(f"FaceFormer preset cpu, batch {len(batch.names)} ({frames} frames at {batch.fps:g} fps), "
          f"expert av/{a.expert} ({crop}x{crop} crops, random weights), {a.threads} threads, {a.reps} reps after "
          "one warm-up; training: tf = teacher forcing (the shipped recipe), ar = autoregressive")
    print(f"renderer: {'compiled (numba)' if jitzbuf.available() else 'torch (numba not importable)'}"
          + (", '... torch' rows: torch (raster.USE_JIT = False)" if a.torch_raster else ""))
    for key, (objective, jit) in objectives.items():  # warm-up
        step(key[0], objective, jit)
    times: dict[tuple[str, str], list[tuple[float, float]]] = {key: [] for key in objectives}
    for _ in range(a.reps):
        for key, (objective, jit) in objectives.items():
            times[key].append(step(key[0], objective, jit))
    print(f"{'step':37s} {'wall s':>7s} {'ratio':>6s} {'CPU s':>7s} {'ratio':>6s}   CPU s of each rep")
    for (mode, name), ts in times.items():
        wall0, cpu0 = (statistics.median(t[i] for t in times[mode, "baseline"]) for i in (0, 1))
        wall, cpu = (statistics.median(t[i] for t in ts) for i in (0, 1))
        print(f"{name + ' (' + mode + ')':37s} {wall:7.2f} {wall / wall0:6.2f} {cpu:7.2f} {cpu / cpu0:6.2f}   "
              + " ".join(f"{t[1]:.2f}" for t in ts))


if __name__ == "__main__":
    main()
