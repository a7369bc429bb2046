"""Stage-1 targets, end to end: train the evaluation reader and the AV expert, then measure them.

    python tools/train_experts.py --data data/synth --out runs/targets            # the CPU recipe
    python tools/train_experts.py --data data/synth --out /tmp/t --recipe tiny    # plumbing only

The chain that trains the shipped ``reader`` and ``expert-av``; every step is
``avguide train --stage expert`` with its recipe file ``avguide/configs/expert/<step>.yaml``
(the corpus: ``avguide/configs/corpus.yaml``). The reader reads characters;
the AV expert reads SentencePiece units, but its audio encoder first learns on characters: a CTC
over 30 outputs aligns within an epoch or two, one over 5049 units trained from scratch takes many
more (docs/results.md):

    corpus      OUT/corpus: 48 other speakers x 60 sentences at 130..240 wpm, none of the
                benchmark's texts (1920 training recordings); or --corpus DIR
    asr_char    audio-only expert on the corpus, character targets
    asr_corpus  asr_char continued with SentencePiece targets (the fresh vocabulary-sized
                layers are named when it starts); its encoder and heads are av_corpus's
    vsr_char    visual-only expert on the corpus, character targets (sequence-mean camera)
    reader      the evaluation reader: vsr_char fine-tuned on the benchmark's training split
    av_corpus   AV expert: visual encoder from vsr_char; audio encoder, CTC head and decoder
                from asr_corpus, frozen; residual fusion; audio dropped for half of the recordings
    asr_corpus_more  asr_corpus continued for 12 epochs on a new schedule (docs/results.md)
    av_corpus_more  av_corpus continued for 3 epochs, its audio encoder and heads replaced by
                asr_corpus_more's (frozen): the visual stream learns to speak to the heads it
                will meet on the benchmark
    asr_corpus_polish  asr_corpus_more continued for 12 epochs at a lower learning rate (3e-4)
    asr_bench   asr_corpus_polish fine-tuned on the benchmark's training split (its voices and
                sentences) at a low learning rate (1e-4; 5e-4 helps for one epoch, then hurts)
    av          av_corpus_more fine-tuned on the benchmark's training split, its audio encoder and
                heads replaced by asr_bench's (frozen), the audio dropped for 30 % of the
                recordings (docs/results.md: why 30 % and not 50 %)

Then, on the benchmark, for the reader (video), the AV expert with clean audio and with the audio
dropped (zeros), and asr_bench alone (what the AV expert's frozen audio half reads): the decoding
with the lowest validation CER is applied to the test split, greedy test CERs printed beside it.
The candidates, in two rounds on val: greedy CTC and the joint beam search (beam 10,
``ctc_prune=1e-4``) at CTC weights 0.3/0.5/0.7/1.0 without a length bonus; then the best weight
with length bonuses 0.5/1/2/3. The reader also reads every test recording's static template (its
floor). Prints a table; writes ``OUT/targets.json`` with the hypotheses, the training times and
the resolved recipe. Every step is resumable: rerunning skips finished runs
and continues an interrupted one from its last checkpoint.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch

import avguide
from avguide import configs
from avguide.data.layouts import open_dataset
from avguide.data.samples import load_sample
from avguide.io import write_json_atomic
from avguide.lipreader.lipvideo import assets_from_dataset
from avguide.lipreader.reader import LipReader, load_trained_expert
from avguide.lipreader.render_cache import RenderCache
from avguide.metrics.text import EditCounts, char_counts
from avguide.train.expert import evaluate_split, run_expert_stage

STEPS = ("asr_char", "asr_corpus", "vsr_char", "reader", "av_corpus", "asr_corpus_more", "av_corpus_more",
         "asr_corpus_polish", "asr_bench", "av")
"""The chain, in order; each step's recipe is ``avguide/configs/expert/<step>.yaml``."""


def step_overrides(name: str, recipe: str) -> list[str]:
    """A step's stage-1 overrides: its recipe file (after ``expert/tiny`` and one epoch for the tiny
    recipe, which checks the plumbing in minutes)."""
    own = configs.overrides(f"expert/{name}")
    if recipe == "tiny":
        return [*configs.overrides("expert/tiny"), *own, "optim.epochs=1", "optim.warmup_epochs=0"]
    return own


def corpus_overrides(recipe: str) -> list[str]:
    """The pretraining corpus (``avguide/configs/corpus.yaml``; 3 x 4 for the tiny recipe)."""
    own = configs.overrides("corpus")
    return [*own, "subjects=3", "sentences=4"] if recipe == "tiny" else own


WEIGHTS = (0.3, 0.5, 0.7, 1.0)
BONUSES = (0.5, 1.0, 2.0, 3.0)
PRUNE = 1e-4


def _train(name: str, data: Path, out: Path, recipe: str, seed: int, device: str, extra: list[str]) -> Path:
    """One stage-1 run of the recipe (resumed if interrupted, skipped if finished)."""
    run = out / name
    over = [*step_overrides(name, recipe), *extra, f"seed={seed}", f"device={device}",
            f"cache_dir={out / 'render_cache'}"]
    resume = (run / "last.json").is_file()
    if run.exists() and not resume:
        shutil.rmtree(run)  # never reached its first checkpoint
    if not (run / "done.json").is_file():
        t0 = time.perf_counter()
        run_expert_stage(str(data), run, overrides=over, resume=resume)
        write_json_atomic(run / "done.json", {"seconds_this_call": round(time.perf_counter() - t0, 1)})
    return run


def _training_seconds(run: Path) -> float:
    """Sum of the epoch times the run logged (across resumptions)."""
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return round(sum(json.loads(x)["seconds"] for x in lines if x.strip()), 1)


def _label(d: dict) -> str:
    if d["decode"] == "greedy":
        return "greedy"
    return f"beam w={d['ctc_weight']:g}" + (f" bonus={d['length_bonus']:g}" if d.get("length_bonus") else "")


def measure(run: Path, data: Path, audio_mode: str) -> dict:
    """Val-chosen decoding of a stage-1 run's best checkpoint, applied to the test split.

    Args:
        run: the run. data: the benchmark. audio_mode: "clean" or "dropped" (AV) or "clean" (video).
    Returns:
        {"val": {decoding: cer}, "chosen", "test_greedy", "test_chosen", "hyps_chosen"}.
    """
    expert = load_trained_expert(run, "best")
    modality = expert.model.cfg.modality
    index = open_dataset(data)
    cache = RenderCache(assets_from_dataset(index), expert.crop, expert.camera, run.parent / "render_cache")

    def cer(split: str, d: dict) -> dict:
        return evaluate_split(expert.model, index, index.split(split), cache, expert.tokenizer, modality,
                              audio_mode=audio_mode, **d)

    tried = [{"decode": "greedy"}] + [{"decode": "beam", "ctc_weight": w, "ctc_prune": PRUNE} for w in WEIGHTS]
    val = {_label(d): cer("val", d)["cer"] for d in tried}
    beams = [d for d in tried if d["decode"] == "beam"]
    weight = min(beams, key=lambda d: val[_label(d)])["ctc_weight"]  # first of equals: the lower weight
    bonused = [{"decode": "beam", "ctc_weight": weight, "ctc_prune": PRUNE, "length_bonus": b} for b in BONUSES]
    val.update({_label(d): cer("val", d)["cer"] for d in bonused})
    chosen = min(tried + bonused, key=lambda d: val[_label(d)])  # first of equals: greedy, no bonus, smaller
    greedy = cer("test", {"decode": "greedy"})
    best = greedy if chosen["decode"] == "greedy" else cer("test", chosen)
    return {"val": val, "chosen": chosen, "test_greedy": greedy["cer"], "test_chosen": best["cer"],
            "hyps_chosen": best["hyps"]}


def read_static(reader_run: Path, data: Path, decoding: dict) -> dict:
    """The reader's CER on every test recording's template held still (the floor of the reader gap)."""
    reader = LipReader(load_trained_expert(reader_run, "best"), batch=8, **decoding)
    index = open_dataset(data)
    counts, hyps = EditCounts(), {}
    for ref in index.split("test"):
        s = load_sample(index, ref, need_text=True)
        static = np.repeat(s.template[None], s.vertices.shape[0], axis=0)  # (T, V, 3)
        hyps[ref.name] = reader([static], s.fps)[0]
        counts += char_counts(s.text, hyps[ref.name])
    return {"cer": counts.rate, "hyps": hyps}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="data/synth", help="the benchmark (avguide synth --out DIR)")
    ap.add_argument("--out", required=True, help="runs, render cache and targets.json")
    ap.add_argument("--corpus", default="", help="pretraining corpus (default: generated under OUT/corpus)")
    ap.add_argument("--recipe", choices=["cpu", "tiny"], default="cpu",
                    help="cpu: the recipe files as they are; tiny: expert/tiny and one epoch each (plumbing)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    recipe, out, data = args.recipe, Path(args.out), Path(args.data)
    corpus = Path(args.corpus) if args.corpus else out / "corpus"
    if not (corpus / "manifest.json").is_file():
        from avguide.synth.generator import SynthConfig, generate
        from avguide.config import load_config

        generate(load_config(SynthConfig, None, [*corpus_overrides(recipe), f"exclude_texts_from={data}"]), corpus)

    def train(name: str, on: Path, *extra: str) -> Path:
        return _train(name, on, out, recipe, args.seed, args.device, list(extra))

    asr_char = train("asr_char", corpus)
    asr = train("asr_corpus", corpus, f"init={asr_char}")
    vsr_char = train("vsr_char", corpus)
    reader = train("reader", data, f"init={vsr_char}")
    av_corpus = train("av_corpus", corpus, f"init={vsr_char}", f"init_audio={asr}")
    asr_more = train("asr_corpus_more", corpus, f"init={asr}")
    av_more = train("av_corpus_more", corpus, f"init={av_corpus}", f"init_audio={asr_more}")
    asr_polish = train("asr_corpus_polish", corpus, f"init={asr_more}")
    asr_bench = train("asr_bench", data, f"init={asr_polish}")
    av = train("av", data, f"init={av_more}", f"init_audio={asr_bench}")

    rows = {"reader": measure(reader, data, "clean"), "av_clean": measure(av, data, "clean"),
            "av_dropped": measure(av, data, "dropped"), "audio_only": measure(asr_bench, data, "clean")}
    static_greedy = read_static(reader, data, {"decode": "greedy"})
    chosen = rows["reader"]["chosen"]
    static = static_greedy if chosen["decode"] == "greedy" else read_static(reader, data, chosen)
    runs = (asr_char, asr, vsr_char, reader, av_corpus, asr_more, av_more, asr_polish, asr_bench, av)
    times = {r.name: _training_seconds(r) for r in runs}
    result = {"rows": rows, "static_template": {"chosen": static, "greedy": static_greedy}, "training_seconds": times,
              "recipe": {"name": recipe, **{n: step_overrides(n, recipe) for n in STEPS},
                         "corpus": corpus_overrides(recipe)}, "data": str(data), "corpus": str(corpus), "seed": args.seed,
              "avguide_version": avguide.__version__}
    write_json_atomic(out / "targets.json", result)

    print(f"\n{'test CER %':<28} {'greedy':>8} {'val-chosen':>11}  decoding")
    for name, r in rows.items():
        print(f"{name:<28} {100 * r['test_greedy']:8.2f} {100 * r['test_chosen']:11.2f}  {_label(r['chosen'])}")
    print(f"{'reader on static templates':<28} {100 * static_greedy['cer']:8.2f} {100 * static['cer']:11.2f}")
    print("training seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in times.items()))
    print(f"wrote {out / 'targets.json'}")


if __name__ == "__main__":
    main()
