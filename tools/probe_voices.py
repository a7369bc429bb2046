"""How a shipped animator behaves on speaking rates and voices outside its training ranges.

    python tools/probe_voices.py --model default --out /tmp/probe

The shipped models were trained on espeak-ng voices at 150..200 words per minute (the default
benchmark). This generates small synthetic sets of *other* subjects (new identities, new
sentences, seed 11) at 100..130 wpm (slow), 150..200 wpm (the training range: the control) and
230..300 wpm (fast), animates every recording with the model (unseen subjects speak in training
subject 0's style) and scores it against the set's own ground truth: LVE, MVE and the
articulation metrics. Prints a markdown table (for the model card) and writes ``OUT/probe.json``.
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
    args = ap.parse_args()

    from avguide.animate import predict_split
    from avguide.config import load_config
    from avguide.metrics.evaluate import EvaluateConfig, evaluate_dataset
    from avguide.synth.generator import SynthConfig, generate

    rows = {}
    for label, (lo, hi) in RATES.items():
        data = args.out / f"rate_{lo}_{hi}"
        if not (data / "manifest.json").is_file():
            generate(load_config(SynthConfig, None, [f"subjects={args.subjects}", f"sentences={args.sentences}",
                                                     "seed=11", f"rate_wpm_min={lo}", f"rate_wpm_max={hi}",
                                                     "speakers_per_sentence=1"]), data)
        with tempfile.TemporaryDirectory() as tmp:
            for split in ("train", "val", "test"):
                predict_split(args.model, data, split, tmp)
            rep = evaluate_dataset(tmp, data, EvaluateConfig(split="all"))
        s = rep["summary"]
        rows[label] = {"lve": s["lve"]["mean_over_frames"], "mve": s["mve"]["mean_over_frames"],
                       **{k: s["articulation"][k] for k in ("lip_motion_ratio", "opening_corr", "bilabial_closure",
                                                             "bilabial_closure_gt", "open_vowel_aperture")},
                       "sequences": s["count_sequences"]}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "probe.json").write_text(json.dumps({"model": args.model, "rows": rows}, indent=2))
    print("| speech | LVE (x1e-5 m²) | MVE (mm) | lip-motion ratio | opening corr | bilabial closure (GT) | "
          "open-vowel aperture |")
    print("|---|---|---|---|---|---|---|")
    for label, r in rows.items():
        print(f"| {label} | {r['lve'] * 1e5:.2f} | {r['mve'] * 1e3:.3f} | {r['lip_motion_ratio']:.2f} | "
              f"{r['opening_corr']:.2f} | {r['bilabial_closure']:.2f} ({r['bilabial_closure_gt']:.2f}) | "
              f"{r['open_vowel_aperture']:.2f} |")


if __name__ == "__main__":
    main()
