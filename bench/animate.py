"""Benchmark cached vs full-recompute autoregressive inference, side by side in one run.

    python bench/animate.py                       # FaceFormer, default head size, 10 s and 30 s
    python bench/animate.py --model codetalker --seconds 2 4 --vertices 5023

Prints, per clip length, the median wall time of ``generate`` (key/value cache) and of
``generate_recompute`` (the real forward re-run on the whole prefix every frame), their ratio
and the cached real-time factor (seconds of audio per second of compute). Random weights with a
non-zero output layer; torch threads as given (default 2).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from avguide.animators import build_animator, codetalker_vocaset, faceformer_vocaset


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=["faceformer", "codetalker"], default="faceformer")
    ap.add_argument("--vertices", type=int, default=4742, help="V (default: the embedded MakeHuman head)")
    ap.add_argument("--seconds", type=float, nargs="+", default=[10.0, 30.0])
    ap.add_argument("--repeats", type=int, default=5, help="cached runs per length (median)")
    ap.add_argument("--recompute-repeats", type=int, default=1, help="recompute runs per length (median)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = faceformer_vocaset() if args.model == "faceformer" else codetalker_vocaset()
    model = build_animator(cfg, args.vertices, 8).eval()
    out_layer = model.vertice_map_r if args.model == "faceformer" else model.feat_map
    torch.nn.init.normal_(out_layer.weight, std=0.02)
    print(f"{args.model} V={args.vertices} fps={cfg.fps:g} audio={cfg.audio.kind} threads={args.threads}")
    print(f"{'audio s':>8} {'frames':>7} {'cached s':>9} {'recompute s':>12} {'speed-up':>9} {'real-time x':>12}"
          f" {'max |diff|':>11}")
    for seconds in args.seconds:
        n = int(seconds * 16000)
        audio = torch.randn(1, n) * 0.1
        inputs = (audio, torch.tensor([n]), torch.zeros(1, args.vertices, 3), torch.tensor([0]))
        fast = model.generate(*inputs)  # warm-up and the output to compare
        cached = _median_time(lambda: model.generate(*inputs), args.repeats)
        slow_out = []
        recompute = _median_time(lambda: slow_out.append(model.generate_recompute(*inputs)),
                                 args.recompute_repeats)
        diff = (fast - slow_out[-1]).abs().max().item()
        print(f"{seconds:8.1f} {fast.shape[1]:7d} {cached:9.3f} {recompute:12.2f} {recompute / cached:9.1f}"
              f" {seconds / cached:12.1f} {diff:11.2e}")


if __name__ == "__main__":
    main()
