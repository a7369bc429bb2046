"""How a shipped animator behaves on speaking rates and voices outside its training ranges.

    python tools/probe_voices.py --model default --out /tmp/probe

The shipped models were trained on espeak-ng voices at 150..200 words per minute (the default
benchmark). This generates small synthetic sets of *other* subjects (new identities, new
sentences, seed 11) at 100..130 wpm (slow), 150..200 wpm (the training range: the control) and
230..300 wpm (fast), animates every recording with the model (unseen subjects speak in training
subject 0's style) and scores it against the set's own ground truth: LVE, MVE and the
articulation metrics, and with ``--reader`` (default: the shipped ``reader`` when there is one)
the reader's CER / VER on the animation and on the ground truth. ``--expert NAME`` adds a lip
reader's own CER on the ground-truth lips (greedy decoding; an AV expert with its clean and with
its audio dropped). Prints markdown tables (for the model card) and writes ``OUT/probe.json``.

    python tools/probe_voices.py --model default --expert expert-av --out /tmp/probe
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

RATES = {"slow (100-130 wpm)": (100, 130), "training range (150-200 wpm)": (150, 200),
         "fast (230-300 wpm)": (230, 300)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--subjects", type=int, default=3)
    ap.add_argument("--sentences", type=int, default=8)
    ap.add_argument("--reader", default="auto", help="lip reader scoring the animation (auto: the shipped "
                                                       "'reader' if any; none: no reading metrics)")
    ap.add_argument("--expert", default="", help="also score this lip reader on the ground-truth lips")
    args = ap.parse_args()

    from avguide.animate import predict_split
    from avguide.lipreader.reader import load_reader
    from avguide.pretrained import canonical_name
    from avguide.config import load_config
    from avguide.metrics.evaluate import EvaluateConfig, evaluate_dataset
    from avguide.synth.generator import SynthConfig, generate

    reader_name = ("reader" if canonical_name("reader") else "") if args.reader == "auto" else (
        "" if args.reader == "none" else args.reader)
    reader = load_reader(reader_name) if reader_name else None
    rows, experts = {}, {}
    for label, (lo, hi) in RATES.items():
        data = args.out / f"rate_{lo}_{hi}"
        if not (data / "manifest.json").is_file():
            generate(load_config(SynthConfig, None, [f"subjects={args.subjects}", f"sentences={args.sentences}",
                                                     "seed=11", f"rate_wpm_min={lo}", f"rate_wpm_max={hi}",
                                                     "speakers_per_sentence=1"]), data)
        with tempfile.TemporaryDirectory() as tmp:
            for split in ("train", "val", "test"):
                predict_split(args.model, data, split, tmp)
            rep = evaluate_dataset(tmp, data, EvaluateConfig(split="all", read_ground_truth=reader is not None),
                                   reader=reader)
        s = rep["summary"]
        rows[label] = {"lve": s["lve"]["mean_over_frames"], "mve": s["mve"]["mean_over_frames"],
                       **{k: s["articulation"][k] for k in ("lip_motion_ratio", "opening_corr", "bilabial_closure",
                                                             "bilabial_closure_gt", "open_vowel_aperture")},
                       "sequences": s["count_sequences"]}
        if reader is not None:
            from avguide.bench.runner import summarize

            rows[label].update({k: v for k, v in summarize(rep).items() if k in READING})
        if args.expert:
            experts[label] = expert_on_ground_truth(args.expert, data)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "probe.json").write_text(json.dumps({"model": args.model, "reader": reader_name, "rows": rows,
                                                     "expert": args.expert, "expert_rows": experts}, indent=2))
    print("| speech | LVE (x1e-5 m²) | MVE (mm) | lip-motion ratio | opening corr | bilabial closure (GT) | "
          "open-vowel aperture |")
    print("|---|---|---|---|---|---|---|")
    for label, r in rows.items():
        print(f"| {label} | {r['lve'] * 1e5:.2f} | {r['mve'] * 1e3:.3f} | {r['lip_motion_ratio']:.2f} | "
              f"{r['opening_corr']:.2f} | {r['bilabial_closure']:.2f} ({r['bilabial_closure_gt']:.2f}) | "
              f"{r['open_vowel_aperture']:.2f} |")
    if reader is not None:
        print(f"\n| speech | CER ({reader_name}) | ground truth CER | VER | ground truth VER |\n|---|---|---|---|---|")
        for label, r in rows.items():
            print(f"| {label} | {r['cer']:.3f} | {r['gt_cer']:.3f} | {r['ver']:.3f} | {r['gt_ver']:.3f} |")
    if experts:
        print(f"\n| speech | {args.expert} CER on the ground truth (greedy) |\n|---|---|")
        for label, r in experts.items():
            print(f"| {label} | " + ", ".join(f"{mode} {cer:.3f}" for mode, cer in r.items()) + " |")


READING = ("cer", "gt_cer", "wer", "gt_wer", "ver", "gt_ver")


def expert_on_ground_truth(name: str, data: Path) -> dict:
    """A lip reader's greedy CER on every recording's ground-truth lips: {"clean": cer} (and
    "dropped" for an AV expert)."""
    from avguide.data.layouts import open_dataset
    from avguide.lipreader.lipvideo import assets_from_dataset
    from avguide.lipreader.reader import load_trained_expert
    from avguide.lipreader.render_cache import RenderCache
    from avguide.train.expert import evaluate_split

    expert = load_trained_expert(name, "best")
    modality = expert.model.cfg.modality
    index = open_dataset(data)
    refs = [r for split in ("train", "val", "test") for r in index.split(split)]
    with tempfile.TemporaryDirectory() as tmp:
        cache = RenderCache(assets_from_dataset(index), expert.crop, expert.camera, Path(tmp))
        modes = ("clean", "dropped") if modality == "av" else ("clean",)
        return {mode: evaluate_split(expert.model, index, refs, cache, expert.tokenizer, modality,
                                     audio_mode=mode)["cer"] for mode in modes}


if __name__ == "__main__":
    main()
