"""Score shipped animators' lips on speech of your own, with no ground-truth meshes.

    python tools/score_own_speech.py --speech DIR --out OUT [--models default,faceformer]

``DIR`` holds recordings with their transcripts: ``name.wav`` (any format ffmpeg reads) beside
``name.txt``. Each model animates every recording (``avguide animate --transcript``), and its
articulation report (:func:`avguide.metrics.articulation.articulation_without_truth`) says
whether the lips close at /p b m/ and how far they open at open vowels. Without ``--speech``,
the recordings are made: the sentences below, spoken by espeak-ng voices that no shipped model
heard in training (their training voices are :data:`avguide.speech.espeak.VARIANTS`); for those
the report also gives the scores on espeak-ng's own phone timings, which shows what the alignment
of the transcript changes. Prints a markdown table and writes ``OUT/scores.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

SENTENCES = (
    "Bob bought a big blue map, and Pam put the apples back in the box.",
    "My mother makes the best plum jam by the open window.",
    "Please pass the paper plates before the park opens.",
    "A bright moon rose above the calm harbour at midnight.",
    "The bishop bought a pumpkin pie from the baker's market.",
    "Maybe Peter will bring both puppies home by bus.",
)
VOICES = (("f2", 165), ("f5", 190), ("m8", 175), ("klatt3", 200))
"""espeak-ng variants outside the training voices, each at its own rate (words per minute)."""


def make_recordings(folder: Path) -> dict[str, list]:
    """Speak :data:`SENTENCES` in :data:`VOICES` into ``folder`` (name.wav + name.txt); return
    espeak-ng's own phone timings per name."""
    from avguide.io import save_wav
    from avguide.speech.espeak import VARIANTS, Voice, speak

    folder.mkdir(parents=True, exist_ok=True)
    timings = {}
    for variant, rate in VOICES:
        assert variant not in VARIANTS, variant
        for k, text in enumerate(SENTENCES):
            name = f"{variant}_{k + 1:02d}"
            u = speak(text, Voice(variant=variant, rate_wpm=rate))
            save_wav(folder / f"{name}.wav", u.audio)
            (folder / f"{name}.txt").write_text(text + "\n")
            timings[name] = [(p.ipa, p.start, p.end) for p in u.phones]
    return timings


def pooled(reports: list[dict]) -> dict:
    """Closure over all bilabials, open-vowel opening frame-weighted (mm)."""
    segs = sum(r["bilabial_segments"] for r in reports)
    frames = sum(r["open_vowel_frames"] for r in reports)
    return {"bilabial_closure": sum(r["bilabial_closed"] for r in reports) / segs if segs else None,
            "bilabial_segments": segs,
            "open_vowel_opening_mm": sum((r["open_vowel_opening"] or 0.0) * r["open_vowel_frames"]
                                         for r in reports) / frames if frames else None,
            "widest_opening_mm": sum(r["widest_opening"] for r in reports) / len(reports)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--speech", type=Path, help="folder of name.wav + name.txt (default: make espeak-ng ones)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--models", default="default,faceformer")
    args = ap.parse_args()

    import numpy as np

    from avguide.animate import animate_files, articulation_of, load_animator

    timings = {}
    speech = args.speech
    if speech is None:
        speech = args.out / "speech"
        timings = make_recordings(speech)
    texts = sorted(speech.glob("*.txt"))
    wavs = [next(iter(sorted(p for p in speech.glob(t.stem + ".*") if p.suffix != ".txt")), None) for t in texts]
    pairs = [(w, t.read_text().strip()) for w, t in zip(wavs, texts) if w is not None]
    if not pairs:
        raise SystemExit(f"{speech}: no name.wav + name.txt pairs")
    rows = {}
    for model in args.models.split(","):
        out = args.out / model
        results = animate_files([w for w, _ in pairs], out, checkpoint=model, formats=["npy"],
                                transcripts=[t for _, t in pairs], progress=False)
        rows[model] = {"aligned transcript": pooled([r["articulation"] for r in results])}
        if timings:  # the same animations judged on espeak-ng's own timings
            anim = load_animator(model)
            template = anim.templates[anim.train_subjects[0]]
            exact = [articulation_of(np.load(r["outputs"]["npy"]).reshape(r["frames"], -1, 3), template,
                                     timings[r["name"]], anim.fps) for r in results]
            rows[model]["espeak-ng timings"] = pooled(exact)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scores.json").write_text(json.dumps({"recordings": len(pairs), "voices": VOICES if timings else None,
                                                      "rows": rows}, indent=2))
    print(f"{len(pairs)} recordings from {speech}\n")
    print("| model | phones | /p b m/ closed | open-vowel opening (mm) | widest opening (mm) |\n|---|---|---|---|---|")
    for model, by in rows.items():
        for source, r in by.items():
            closure = "-" if r["bilabial_closure"] is None else f"{r['bilabial_closure']:.2f} of {r['bilabial_segments']}"
            opening = "-" if r["open_vowel_opening_mm"] is None else f"{r['open_vowel_opening_mm']:.1f}"
            print(f"| {model} | {source} | {closure} | {opening} | {r['widest_opening_mm']:.1f} |")


if __name__ == "__main__":
    main()
