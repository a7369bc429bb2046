"""The ``avguide`` command line: parses arguments and calls the library, nothing more.

Subcommands register themselves in :data:`COMMANDS` as ``name -> (add_arguments, run)``.
User errors (:class:`~avguide.errors.AvguideError`) print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from avguide import __version__
from avguide.errors import AvguideError

Command = tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int | None]]


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML config file")
    p.add_argument("overrides", nargs="*", default=[], metavar="key=value",
                   help="config overrides, e.g. lr=1e-4 model.layers=2")


# ---------------------------------------------------------------------------------- synth
def _synth_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="output dataset directory")
    p.add_argument("--subjects", type=int, default=None, help="number of subjects (default 12)")
    p.add_argument("--sentences", type=int, default=None, help="sentences per subject (default 40)")
    p.add_argument("--fps", type=int, default=None, help="motion frame rate (30; 25 gives a BIWI-like set)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default 0)")
    p.add_argument("--protocol", choices=["disjoint", "vocaset"], default=None,
                   help="disjoint: no val/test sentence is spoken in training (default); vocaset: original")
    p.add_argument("--preview", action="store_true", help="also write preview.mp4 and visemes.png")
    p.add_argument("--workers", type=int, default=None, help="parallel processes (default: all cores)")
    _add_common(p)


def _synth_run(a: argparse.Namespace) -> int:
    """Generate the synthetic talking-head benchmark (VOCASET layout)."""
    from avguide.synth.generator import SynthConfig, generate
    from avguide.config import load_config

    over = list(a.overrides)
    for key in ("subjects", "sentences", "fps", "seed", "protocol", "workers"):
        if getattr(a, key) is not None:
            over.append(f"{key}={getattr(a, key)}")
    cfg = load_config(SynthConfig, a.config, over)
    summary = generate(cfg, a.out, preview=a.preview)
    print(f"wrote {summary['recordings']} recordings ({summary['seconds_audio']:.0f} s of speech, "
          f"{summary['frames']} frames, {summary['bytes'] / 1e9:.2f} GB) to {a.out} "
          f"in {summary['wall_seconds']:.1f} s")
    return 0


# --------------------------------------------------------------------------------- render
def _render_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("verts", help="vertex sequence .npy, (T, V*3) or (T, V, 3)")
    p.add_argument("--grid", nargs="+", default=[], metavar="VERTS",
                   help="more sequences rendered side by side (e.g. baseline.npy avguided.npy)")
    p.add_argument("--captions", help="comma-separated captions, one per panel (e.g. 'GT,baseline,AV')")
    p.add_argument("--audio", help="audio to mux; the video lasts as long as the audio")
    p.add_argument("-o", "--output", required=True, help="output .mp4")
    p.add_argument("--fps", type=float, default=30.0, help="frame rate of the sequences (default 30)")
    topo = p.add_mutually_exclusive_group()
    topo.add_argument("--template", help="mesh (.obj/.ply) giving the faces, e.g. FLAME_sample.ply")
    topo.add_argument("--faces", help="(F, 3) face indices .npy")
    p.add_argument("--size", type=int, default=512, help="panel size in pixels (default 512)")
    p.add_argument("--view", choices=["three_quarter", "front"], default="three_quarter")


def _render_run(a: argparse.Namespace) -> int:
    """Render vertex sequences to an mp4 with the audio muxed."""
    from avguide.render.video import render_video_files

    paths = [a.verts, *a.grid]
    captions = [c.strip() for c in a.captions.split(",")] if a.captions else None
    info = render_video_files(paths, a.output, fps=a.fps, audio_path=a.audio,
                              faces_path=a.template or a.faces, captions=captions,
                              size=a.size, view=a.view)
    adjusted = [f"{p}: {t} frame(s) trimmed, {h} held" for p, t, h in
                zip(paths, info["trimmed_frames"], info["padded_frames"]) if t or h]
    print(f"wrote {a.output}: {info['frames']} frames at {a.fps:g} fps ({info['duration_s']:.2f} s)"
          + ("; " + "; ".join(adjusted) if adjusted else ""))
    return 0


# ---------------------------------------------------------------------------------- train
def _train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--stage", required=True, choices=["baseline", "vq", "expert", "av"],
                   help="baseline: animator without the AV loss; vq: CodeTalker's VQ-VAE (its stage 1); "
                        "expert: the lip-reading expert on ground-truth renders (stage 1 of the method); "
                        "av: animator with the expert's audio-visual guidance (stage 2)")
    p.add_argument("--animator", choices=["faceformer", "codetalker"], help="default faceformer")
    p.add_argument("--data", help="dataset directory")
    out = p.add_mutually_exclusive_group(required=True)
    out.add_argument("--out", help="new run directory")
    out.add_argument("--resume", metavar="RUN", help="continue this run exactly")
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument("--expert", metavar="RUN", help="--stage av: the stage-1 expert run")
    p.add_argument("--modality", choices=["av", "video", "audio"],
                   help="--stage expert: audio-visual, visual-only or audio-only (to pretrain the AV audio encoder)")
    p.add_argument("--init", metavar="CKPT", help="--stage expert: start from an avguide run or an Auto-AVSR .pth")
    _add_common(p)


def _train_run(a: argparse.Namespace) -> int:
    """Train an animator (baseline), a VQ-VAE, the expert, or the AV-guided animator."""
    if a.stage == "expert":
        from avguide.train.expert import run_expert_stage

        over = list(a.overrides) + ([f"seed={a.seed}"] if a.seed is not None else [])
        run = run_expert_stage(a.data, a.resume or a.out, modality=a.modality, init=a.init,
                               config_path=a.config, overrides=over, resume=bool(a.resume))
        print(f"done: expert run {run}")
        return 0
    from avguide.train.baseline import load_train_config, train_animator

    over = [f"stage={a.stage}"] + ([f"av.expert={a.expert}"] if a.expert else []) + list(a.overrides)
    for key, value in (("animator", a.animator), ("data", a.data), ("seed", a.seed)):
        if value is not None:
            over.append(f"{key}={value}")
    cfg = load_train_config(a.config, over, a.resume)
    result = train_animator(cfg, a.resume or a.out, resume=bool(a.resume))
    print(f"done: {result['epochs']} epochs, best val loss {result['best_val']:.5g}, run {result['run']}")
    return 0


# -------------------------------------------------------------------------------- animate
def _animate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("speech", help="speech audio (any rate / channel count)")
    p.add_argument("--checkpoint", required=True, metavar="RUN", help="trained animator run")
    p.add_argument("--subject", help="speaking style: a training subject (default: the first)")
    p.add_argument("--template", help="face to animate: mesh .obj/.ply or (V,3) .npy (default: the subject's)")
    p.add_argument("-o", "--out", required=True, help="output folder")
    p.add_argument("--no-video", action="store_true", help="write only the .npy")
    p.add_argument("--seed", type=int, default=0)


def _animate_run(a: argparse.Namespace) -> int:
    """Animate a speech file with a trained animator."""
    from avguide.animate import animate_file

    r = animate_file(a.checkpoint, a.speech, a.out, subject=a.subject, template=a.template,
                     video=not a.no_video, seed=a.seed)
    print(f"wrote {r['npy']}" + (f" and {r['mp4']}" if r["mp4"] else "") +
          f": {r['frames']} frames at {r['fps']:g} fps in {r['subject']}'s style")
    return 0


# ------------------------------------------------------------------------------- evaluate
def _evaluate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pred", required=True, help="folder of predicted .npy/.npz vertex sequences")
    p.add_argument("--data", required=True, help="dataset folder (VOCASET, BIWI or synthetic layout)")
    p.add_argument("--layout", default="auto", choices=["auto", "vocaset", "biwi", "synthetic"])
    p.add_argument("--reader", help="evaluation reader checkpoint (enables CER/WER/VER)")
    p.add_argument("--decode", choices=["greedy", "beam"], default="greedy", help="reader decoding")
    p.add_argument("--beam", type=int, default=10, help="beam size for --decode beam")
    p.add_argument("--ctc-weight", type=float, default=0.1, help="CTC weight of the joint beam search")
    p.add_argument("--ctc-prune", type=float, default=None,
                   help="beam search scores only tokens whose CTC posterior reaches this in some frame (e.g. 1e-4)")
    p.add_argument("--length-bonus", type=float, default=0.0,
                   help="beam search score added per output token (ESPnet's penalty; > 0 counters deleted words)")
    p.add_argument("-o", "--output", required=True, help="report.json to write")
    p.add_argument("--markdown", help="also write a markdown table here")
    _add_common(p)


def _evaluate_run(a: argparse.Namespace) -> int:
    """Score predicted meshes: LVE, FDD, MVE and (with a reader) CER, WER, VER."""
    from avguide.config import load_config
    from avguide.metrics.evaluate import EvaluateConfig, evaluate_dataset
    from avguide.metrics.report import format_markdown, write_report

    cfg = load_config(EvaluateConfig, a.config, a.overrides)
    reader = None
    if a.reader:
        from avguide.lipreader.reader import load_reader
        reader = load_reader(a.reader, decode=a.decode, beam_size=a.beam, ctc_weight=a.ctc_weight,
                             ctc_prune=a.ctc_prune, length_bonus=a.length_bonus)
    report = evaluate_dataset(a.pred, a.data, cfg, reader=reader, layout=a.layout)
    write_report(a.output, report, cfg, markdown_path=a.markdown,
                 extra_config={"pred_dir": str(a.pred), "data_dir": str(a.data), "reader": a.reader,
                               "reader_decode": {"decode": a.decode, "beam": a.beam, "ctc_weight": a.ctc_weight,
                                                 "ctc_prune": a.ctc_prune, "length_bonus": a.length_bonus}})
    print(format_markdown(report, cfg))
    return 0


# ---------------------------------------------------------------------------------- bench
def _bench_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", choices=["ci", "cpu", "full"], default="ci",
                   help="ci: minutes, tiny; cpu: < 90 min on 2 cores; full: GPU, published sizes")
    p.add_argument("--out", required=True, help="benchmark directory (an existing one is continued)")
    _add_common(p)


def _bench_run(a: argparse.Namespace) -> int:
    """Baseline vs AV-guided animators, evaluated by the separate reader, with a report."""
    from pathlib import Path

    from avguide.bench import run_bench

    run_bench(a.preset, a.out, a.overrides, config_path=a.config)
    print((Path(a.out) / "report.md").read_text())
    return 0


COMMANDS: list[Command] = [
    ("synth", _synth_args, _synth_run),
    ("render", _render_args, _render_run),
    ("train", _train_args, _train_run),
    ("animate", _animate_args, _animate_run),
    ("evaluate", _evaluate_args, _evaluate_run),
    ("bench", _bench_args, _bench_run),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="avguide", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"avguide {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, add_args, run in COMMANDS:
        p = sub.add_parser(name, help=(run.__doc__ or "").strip().splitlines()[0] if run.__doc__ else None)
        add_args(p)
        p.set_defaults(_run=run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # key=value overrides may come before and after options (`... a=1 --seed 1 b=2`), which
    # argparse alone splits into a positional list and "unrecognized arguments"
    args, extra = parser.parse_known_args(argv)
    takes_overrides = hasattr(args, "overrides")
    bad = [x for x in extra if x.startswith("-") or "=" not in x or not takes_overrides]
    if bad:
        parser.error(f"unrecognized arguments: {' '.join(bad)}")
    if extra:
        args.overrides = list(args.overrides) + extra
    try:
        return int(args._run(args) or 0)
    except AvguideError as e:
        print(f"avguide {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"avguide {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
