"""How well can a CodeTalker's motion codebook say the test split at all? Its ceiling.

    python tools/codebook_ceiling.py --data data/synth --out OUT [MODEL ...]

CodeTalker speaks through a codebook learnt in stage 1 (the VQ-VAE) and frozen in stage 2, so
whatever stage 2 learns (with the AV loss or without) it can only say what the codebook can
decode. Each ``MODEL`` (a stage-2 CodeTalker run or a shipped name; default ``codetalker``) has
its codebook encode and decode the test split's ground-truth motion, on each subject's own face;
the reconstructions are scored like predictions (:func:`avguide.metrics.evaluate.evaluate_dataset`:
LVE and the articulation metrics, no reader). Also counted: how many of the codebook's entries
the test split uses, and their perplexity. Prints a markdown table and writes
``OUT/ceiling.json`` and the reconstructions ``OUT/<k>/<name>.npy``.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch

ARTICULATION = ("bilabial_closure", "lip_motion_ratio", "opening_corr", "open_vowel_aperture")


@torch.no_grad()
def reconstruct(model: str, data: str, out: Path) -> dict:
    """Write the test split reconstructed through ``model``'s codebook to ``out``; return its
    code statistics {"codes_used", "codebook_size", "perplexity"}."""
    from avguide.animate import load_animator
    from avguide.data.layouts import open_dataset
    from avguide.data.samples import load_vertices
    from avguide.errors import BadInputError

    anim = load_animator(model)
    vqvae = getattr(anim.model, "vqvae", None)
    if vqvae is None:
        raise BadInputError(f"{model}: not a CodeTalker (no motion codebook)")
    index = open_dataset(data)
    if index.n_vertices != anim.model.n_vertices:
        raise BadInputError(f"{model}: a model for {anim.model.n_vertices} vertices, {data} has {index.n_vertices}")
    refs = index.split("test")
    if not refs:
        raise BadInputError(f"--data {data}: no recordings in the test split")
    out.mkdir(parents=True, exist_ok=True)
    counts = torch.zeros(vqvae.quantizer.codebook.shape[0])
    for ref in refs:
        template = index.templates[ref.subject]  # (V, 3)
        offsets = load_vertices(ref.vertices, index.n_vertices, index.stride) - template  # (T, V, 3)
        x = torch.from_numpy(offsets).float().flatten(1)[None]  # (1, T, V*3)
        rec = vqvae(x, torch.tensor([x.shape[1]]))
        counts += torch.bincount(rec["indices"].reshape(-1), minlength=len(counts)).float()
        frames = rec["recon"][0].view(-1, index.n_vertices, 3).numpy() + template  # (T, V, 3)
        np.save(out / f"{ref.name}.npy", frames.astype(np.float32))
    return code_statistics(counts)


def code_statistics(counts: torch.Tensor) -> dict:
    """{"codes_used", "codebook_size", "perplexity"} of ``(K,)`` counts of each entry's use;
    perplexity = exp(entropy of the use frequencies): K for uniform use of K entries, 1 for one."""
    p = counts[counts > 0] / counts.sum()
    return {"codes_used": int((counts > 0).sum()), "codebook_size": len(counts),
            "perplexity": math.exp(float(-(p * p.log()).sum()))}


def main() -> int:
    import avguide
    from avguide.errors import BadInputError
    from avguide.io import write_json_atomic
    from avguide.metrics.evaluate import EvaluateConfig, evaluate_dataset

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="*", default=["codetalker"], help="stage-2 CodeTalker runs or shipped names")
    ap.add_argument("--data", default="data/synth", help="dataset with a test split")
    ap.add_argument("--out", required=True, help="output folder")
    a = ap.parse_args()
    out = Path(a.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BadInputError(f"--out {out}: exists and is not an empty folder")
    rows = []
    for k, model in enumerate(a.models):
        row = {"model": model, **reconstruct(model, a.data, out / str(k))}
        summary = evaluate_dataset(out / str(k), a.data, EvaluateConfig(split="test"))["summary"]
        row["lve"] = summary["lve"]["mean_over_frames"]
        row |= {m: summary.get("articulation", {}).get(m) for m in ARTICULATION}  # needs timed phones
        rows.append(row)
    write_json_atomic(out / "ceiling.json", {"avguide_version": avguide.__version__, "data": a.data, "split": "test",
                                             "rows": rows})
    print("| codebook of | codes used | perplexity | LVE (x1e-5 m²) | bilabial closure | lip-motion ratio "
          "| opening corr | open-vowel aperture |\n|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['codes_used']} / {r['codebook_size']} | {r['perplexity']:.1f} | {r['lve'] * 1e5:.3f} | "
              + " | ".join("-" if r[m] is None else f"{r[m]:.3f}" for m in ARTICULATION) + " |")
    return 0


if __name__ == "__main__":
    import sys

    from avguide.errors import AvguideError

    try:
        sys.exit(main())
    except AvguideError as e:  # bad input: one line, no traceback
        sys.exit(f"error: {e}")
