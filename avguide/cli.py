"""The ``avguide`` command line: parses arguments and calls the library, nothing more.

Subcommands register themselves in :data:`COMMANDS` as ``name -> (add_arguments, run)``.
User errors (:class:`~avguide.errors.AvguideError`) print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable, NoReturn

from avguide import __version__
from avguide.errors import AvguideError, BadInputError

Command = tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int | None]]


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line, ``avguide <command>: error: ...``,
    naming the argument (argparse prints the whole usage first), with exit status 2."""

    def error(self, message: str) -> NoReturn:
        message = " ".join(message.split())  # argparse's own messages are one line; be sure
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _add_common(p: argparse.ArgumentParser, example: str = "optim.lr=1e-4") -> None:
    p.add_argument("--config", help="YAML config file")
    p.add_argument("overrides", nargs="*", default=[], metavar="key=value",
                   help=f"config overrides, e.g. {example}")


def _add_out(p: argparse.ArgumentParser, what: str, required: bool = True) -> None:
    """The one output flag of every command."""
    p.add_argument("-o", "--out", required=required, help=what)


def _seed(text: str) -> int:
    """``--seed``'s type: an integer in [0, MAX_SEED]."""
    from avguide.config import MAX_SEED

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"must be in [0, {MAX_SEED}], got {value}")
    return value


def _add_seed(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=_seed, default=None, help="random seed (default 0; the same as seed=N)")


def with_seed(a: argparse.Namespace) -> list[str]:
    """The overrides with ``--seed N`` as ``seed=N``; a different ``seed=`` beside it is refused."""
    over = list(getattr(a, "overrides", []))
    if a.seed is None:
        return over
    given = [o.split("=", 1)[1] for o in over if o.split("=", 1)[0].strip() == "seed"]
    if any(g.strip() != str(a.seed) for g in given):
        raise BadInputError(f"--seed {a.seed} and seed={given[0]} disagree; give the seed once")
    return [*over, f"seed={a.seed}"]


# ---------------------------------------------------------------------------------- synth
def _synth_args(p: argparse.ArgumentParser) -> None:
    _add_out(p, "output dataset directory")
    _add_seed(p)
    p.add_argument("--preview", action="store_true", help="also write preview.mp4 and visemes.png")
    _add_common(p, "subjects=12 sentences=40 fps=30 protocol=disjoint workers=0 realism.enabled=true ...")


def _synth_run(a: argparse.Namespace) -> int:
    """Generate the synthetic talking-head benchmark (VOCASET layout)."""
    from avguide.synth.generator import SynthConfig, generate
    from avguide.config import load_config

    cfg = load_config(SynthConfig, a.config, with_seed(a))
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
    _add_out(p, "output .mp4")
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
    info = render_video_files(paths, a.out, fps=a.fps, audio_path=a.audio,
                              faces_path=a.template or a.faces, captions=captions,
                              size=a.size, view=a.view)
    adjusted = [f"{p}: {t} frame(s) trimmed, {h} held" for p, t, h in
                zip(paths, info["trimmed_frames"], info["padded_frames"]) if t or h]
    print(f"wrote {a.out}: {info['frames']} frames at {a.fps:g} fps ({info['duration_s']:.2f} s)"
          + ("; " + "; ".join(adjusted) if adjusted else ""))
    return 0


# ---------------------------------------------------------------------------------- train
def _train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--stage", required=True, choices=["baseline", "vq", "expert", "av"],
                   help="baseline: animator without the AV loss; vq: CodeTalker's VQ-VAE (its stage 1); "
                        "expert: the lip-reading expert on ground-truth renders (stage 1 of the method); "
                        "av: animator with the expert's audio-visual guidance (stage 2)")
    out = p.add_mutually_exclusive_group(required=True)
    out.add_argument("-o", "--out", help="new run directory (or one whose run stopped before its first checkpoint)")
    out.add_argument("--resume", metavar="RUN", help="continue this run exactly; key=value may change only what "
                                                     "it can apply (learning rate, epochs, loss weights...)")
    # each flag below is a shorter way to write its key=value override (a flag and an override that
    # disagree are refused); a flag that the stage does not use is refused
    p.add_argument("--data", help="dataset directory (data=)")
    _add_seed(p)
    p.add_argument("--init", metavar="RUN", help="weights to start from (init=): --stage expert: an avguide run or "
                                                 "an Auto-AVSR .pth; animator stages: a run of the same animator")
    p.add_argument("--animator", choices=["faceformer", "codetalker"],
                   help="--stage baseline, vq, av: the animator (animator=; default faceformer)")
    p.add_argument("--expert", metavar="RUN", help="--stage av: the stage-1 expert run (av.expert=)")
    p.add_argument("--modality", choices=["av", "video", "audio"],
                   help="--stage expert: audio-visual, visual-only or audio-only (to pretrain the AV audio encoder) "
                        "(modality=)")
    _add_common(p)


_TRAIN_FLAGS = {"data": "data", "seed": "seed", "init": "init", "animator": "animator", "expert": "av.expert",
                "modality": "modality"}
"""``avguide train`` flag -> the config key it sets."""
_STAGE_FLAGS = {"expert": ("data", "seed", "init", "modality"), "baseline": ("data", "seed", "init", "animator"),
                "vq": ("data", "seed", "init", "animator"), "av": ("data", "seed", "init", "animator", "expert")}
"""The flags each stage uses."""


def _train_run(a: argparse.Namespace) -> int:
    """Train an animator (baseline), a VQ-VAE, the expert, or the AV-guided animator."""
    from avguide.config import flag_overrides
    from avguide.errors import BadInputError

    given = {f: getattr(a, f) for f in _TRAIN_FLAGS if getattr(a, f) is not None}
    unused = [f for f in given if f not in _STAGE_FLAGS[a.stage]]
    if unused:
        users = {f: [s for s, fs in _STAGE_FLAGS.items() if f in fs] for f in unused}
        raise BadInputError("; ".join(f"--{f} is not used by --stage {a.stage} (only by --stage "
                                      f"{' and '.join(users[f])})" for f in unused))
    if a.stage == "expert":
        from avguide.train.expert import run_expert_stage

        run = run_expert_stage(a.data, a.resume or a.out, modality=a.modality, init=a.init, config_path=a.config,
                               overrides=flag_overrides({"seed": a.seed}, a.overrides), resume=bool(a.resume))
        print(f"done: expert run {run}")
        return 0
    from avguide.train.animator import load_train_config, train_animator

    flags = {"stage": a.stage, **{_TRAIN_FLAGS[f]: v for f, v in given.items()}}
    cfg = load_train_config(a.config, flag_overrides(flags, a.overrides), a.resume)
    result = train_animator(cfg, a.resume or a.out, resume=bool(a.resume))
    print(f"done: {result['epochs']} epochs, best val loss {result['best_val']:.5g}, run {result['run']}")
    return 0


# -------------------------------------------------------------------------------- animate
def _output_args(p: argparse.ArgumentParser) -> None:
    _add_out(p, "output folder")
    p.add_argument("--formats", default="mp4,npy",
                   help="comma-separated: mp4 (video with the audio), npy (vertices), arkit (52 ARKit weights: "
                        "Live Link Face CSV + JSON), glb (glTF 2.0 with morph targets), obj (one OBJ per frame), "
                        "articulation (JSON: do the lips close at /p b m/ and open at open vowels; animate needs "
                        "--transcript)")
    p.add_argument("--checkpoint", default="default", metavar="RUN|NAME",
                   help="animator run or shipped model (default: the shipped 'default'; see avguide models)")
    p.add_argument("--subject", help="speaking style: a training subject (default: the first)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    _add_seed(p)


def _animate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("speech", nargs="*", help="speech files (any format ffmpeg reads, any rate or channels)")
    p.add_argument("--data", help="instead of speech files: animate a dataset's recordings, each on its subject's "
                                  "own face, as <name>.npy for avguide evaluate")
    p.add_argument("--split", default="test", help="with --data: train, val, test, ... or all (default test)")
    p.add_argument("--template", help="face to animate: mesh .obj/.ply or (V,3) .npy (default: the subject's)")
    p.add_argument("--transcript", action="append", metavar="TEXT",
                   help="what a speech file says (once per file, in order): aligned to the recording, it adds the "
                        "articulation report")
    _output_args(p)


def _print_outputs(r: dict) -> None:
    from avguide.animate import articulation_line

    files = ", ".join(r["outputs"].values())
    print(f"{r['name']}: {r['frames']} frames at {r['fps']:g} fps in {r['subject']}'s style -> {files}")
    if "articulation" in r:
        print(f"  {articulation_line(r['articulation'])}")


def _animate_run(a: argparse.Namespace) -> int:
    """Animate speech files with a trained or shipped animator (default: the shipped one)."""
    from avguide.animate import animate_files, predict_split

    if a.data is not None:
        if a.speech or a.transcript or a.template or a.subject or a.formats not in ("mp4,npy", "npy"):
            a._parser.error("--data animates a dataset's recordings on their own faces as .npy: give no speech "
                            "file, --transcript, --template, --subject or --formats with it")
        paths = predict_split(a.checkpoint, a.data, a.split, a.out)
        print(f"wrote {len(paths)} predictions to {a.out}; score them with: avguide evaluate --pred {a.out} "
              f"--data {a.data} split={a.split} -o report.json")
        return 0
    if not a.speech:
        a._parser.error("the following arguments are required: speech (or --data DIR)")
    if a.split != "test":
        a._parser.error("--split is used with --data only")
    for r in animate_files(a.speech, a.out, checkpoint=a.checkpoint, subject=a.subject, template=a.template,
                           formats=a.formats, transcripts=a.transcript, seed=a.seed or 0,
                           progress=not a.no_progress):
        _print_outputs(r)
    return 0


def _say_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("text", help="what the head says (English)")
    p.add_argument("--voice", help="espeak-ng voice variant: m1..m7, f1, f4, Annie, belinda, linda, Andrea "
                                   "(default m1)")
    p.add_argument("--rate", type=int, help="speaking rate in words per minute (80..450, default 175)")
    p.add_argument("--name", help="output file stem (default: from the text)")
    _output_args(p)


def _say_run(a: argparse.Namespace) -> int:
    """Say a sentence: espeak-ng speech and the shipped animator, no training needed."""
    from avguide.animate import say

    _print_outputs(say(a.text, a.out, voice=a.voice, rate_wpm=a.rate, name=a.name, checkpoint=a.checkpoint,
                       subject=a.subject, formats=a.formats, seed=a.seed or 0, progress=not a.no_progress))
    return 0


# --------------------------------------------------------------------------------- models
def _models_args(p: argparse.ArgumentParser) -> None:
    pass


def _models_run(a: argparse.Namespace) -> int:
    """List the trained models shipped in the package, with their test metrics."""
    from avguide.pretrained import model_table

    print(model_table())
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
    _add_out(p, "report.json to write")
    p.add_argument("--markdown", help="also write a markdown table here")
    _add_common(p)


def _evaluate_run(a: argparse.Namespace) -> int:
    """Score predicted meshes: LVE, FDD, MVE and (with a reader) CER, WER, VER."""
    from avguide.config import load_config
    from avguide.metrics.evaluate import EvaluateConfig, evaluate_dataset
    from avguide.metrics.report import format_markdown, write_report

    from avguide.io import check_output_file

    cfg = load_config(EvaluateConfig, a.config, a.overrides)
    given = ["--" + k.replace("_", "-") for k in ("decode", "beam", "ctc_weight", "ctc_prune", "length_bonus")
             if getattr(a, k) != a._parser.get_default(k)]
    if given and not a.reader:  # they would be ignored: the reading metrics need --reader
        raise BadInputError(f"{', '.join(given)}: used only with --reader (the reading metrics)")
    check_output_file(a.out, "-o")
    if a.markdown:
        check_output_file(a.markdown, "--markdown")
    reader = None
    if a.reader:
        from avguide.lipreader.reader import load_reader
        reader = load_reader(a.reader, decode=a.decode, beam_size=a.beam, ctc_weight=a.ctc_weight,
                             ctc_prune=a.ctc_prune, length_bonus=a.length_bonus)
    report = evaluate_dataset(a.pred, a.data, cfg, reader=reader, layout=a.layout)
    write_report(a.out, report, cfg, markdown_path=a.markdown,
                 extra_config={"pred_dir": str(a.pred), "data_dir": str(a.data), "reader": a.reader,
                               "reader_decode": {"decode": a.decode, "beam": a.beam, "ctc_weight": a.ctc_weight,
                                                 "ctc_prune": a.ctc_prune, "length_bonus": a.length_bonus}})
    print(format_markdown(report, cfg))
    return 0


# ---------------------------------------------------------------------------------- bench
def _bench_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="ci",
                   help="a file of avguide/configs/bench/: ci (minutes, tiny), cpu (~90 min on 2 cores), full (GPU)")
    _add_out(p, "benchmark directory (an existing one is continued)")
    p.add_argument("--shard", type=_shard, default=None, metavar="K/N",
                   help="run only the K-th of N shares of the (animator, seed) units, with one torch thread "
                        "per process (start N processes on one -o; then once more without --shard for the report)")
    p.add_argument("--report-only", action="store_true",
                   help="run nothing: report the steps finished so far (provisional; the others listed as pending)")
    _add_common(p)


def _shard(text: str) -> tuple[int, int]:
    k, sep, n = text.partition("/")
    if not (sep and k.isdigit() and n.isdigit() and 1 <= int(k) <= int(n)):
        raise argparse.ArgumentTypeError(f"expected K/N with 1 <= K <= N, e.g. 1/2; got {text!r}")
    return int(k), int(n)


def _bench_run(a: argparse.Namespace) -> int:
    """Baseline vs AV-guided animators, evaluated by the separate reader, with a report."""
    from pathlib import Path

    from avguide.bench import run_bench
    from avguide.io import check_output_dir, read_text

    check_output_dir(a.out, "--out")
    if a.shard is not None:
        import torch

        torch.set_num_threads(1)  # N processes of one thread each share the cores
    if a.shard is not None and a.report_only:
        raise BadInputError("--shard and --report-only: choose one (a shard runs steps, --report-only runs none)")
    run_bench(a.preset, a.out, a.overrides, config_path=a.config, shard=a.shard, report_only=a.report_only)
    if a.shard is None:
        print(read_text(Path(a.out) / "report.md", "bench report"))
    return 0


from avguide.serve.cli import _serve_args, _serve_run  # noqa: E402  (cheap: no fastapi import)

COMMANDS: list[Command] = [
    ("synth", _synth_args, _synth_run),
    ("render", _render_args, _render_run),
    ("train", _train_args, _train_run),
    ("say", _say_args, _say_run),
    ("animate", _animate_args, _animate_run),
    ("evaluate", _evaluate_args, _evaluate_run),
    ("bench", _bench_args, _bench_run),
    ("models", _models_args, _models_run),
    ("serve", _serve_args, _serve_run),
]


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="avguide", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"avguide {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for name, add_args, run in COMMANDS:
        p = sub.add_parser(name, help=(run.__doc__ or "").strip().splitlines()[0] if run.__doc__ else None)
        add_args(p)
        p.set_defaults(_run=run, _parser=p)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # key=value overrides may come before and after options (`... a=1 --seed 1 b=2`), which
    # argparse alone splits into a positional list and "unrecognized arguments"
    args, extra = parser.parse_known_args(argv)
    takes_overrides = hasattr(args, "overrides")
    bad = [x for x in extra if x.startswith("-") or "=" not in x or not takes_overrides]
    if bad:
        args._parser.error(f"unrecognized arguments: {' '.join(bad)}")
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
