"""Write an evaluation report: ``report.json`` (everything) and an optional markdown table."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import avguide
from avguide.config import config_to_dict
from avguide.errors import BadInputError
from avguide.io import check_output_file, write_json_atomic, write_text_atomic
from avguide.metrics.evaluate import READING_METRICS, EvaluateConfig

UNITS = {
    "lve": "squared input units (m^2 for metre meshes): per-frame max over lip vertices of the "
           "squared L2 error",
    "mve": "input units (m for metre meshes): mean over vertices and frames of the L2 error",
    "fdd": "squared input units: mean_v std_t ||gt - template||^2 minus the same for the "
           "prediction (CodeTalker), signed",
    "cer": "character edits / reference characters (normalised text, spaces count)",
    "wer": "word edits / reference words",
    "ver": "viseme edits / reference visemes (espeak-ng en-us -> viseme classes)",
}


def _scaled(value: float, exponent: int) -> str:
    return f"{value / 10.0 ** exponent:.4f}"


def format_markdown(report: dict, cfg: EvaluateConfig) -> str:
    """A markdown summary table (plus the reader's ceiling row when present).

    Args:
        report: the dict returned by :func:`avguide.metrics.evaluate.evaluate`.
        cfg: gives the display exponents (values are divided by 10**exponent).
    Returns:
        Markdown text: one row for the predictions, one for the ground-truth reading ceiling.
    """
    s = report["summary"]
    reading = [m for m in READING_METRICS if m in s]
    head = [f"LVE (x1e{cfg.lve_exponent})", f"MVE (x1e{cfg.mve_exponent})",
            f"FDD (x1e{cfg.fdd_exponent})"] + [f"{m.upper()} (%)" for m in reading]
    cells = [_scaled(s["lve"]["mean_over_frames"], cfg.lve_exponent),
             _scaled(s["mve"]["mean_over_frames"], cfg.mve_exponent),
             _scaled(s["fdd"]["mean"], cfg.fdd_exponent)]
    cells += [f"{100 * s[m]['corpus']:.2f}" for m in reading]
    lines = ["| rows | " + " | ".join(head) + " |", "|---" * (len(head) + 1) + "|",
             f"| predictions ({s['count_sequences']} sequences, {s['count_predictions']} files) | "
             + " | ".join(cells) + " |"]
    ceiling = report.get("ceiling")
    if ceiling and reading:
        lines.append("| ground truth (reader ceiling) | - | - | - | "
                     + " | ".join(f"{100 * ceiling[m]['corpus']:.2f}" for m in reading) + " |")
    art = s.get("articulation")
    if art:
        lines += ["", "| articulation | lip-motion ratio | opening corr | bilabial closure (GT) | open-vowel aperture |",
                  "|---|---|---|---|---|",
                  f"| predictions | {art['lip_motion_ratio']:.3f} | {art['opening_corr']:.3f} | "
                  f"{art['bilabial_closure']:.3f} ({art['bilabial_closure_gt']:.3f}) | {art['open_vowel_aperture']:.3f} |"]
    notes = [f"LVE and MVE pooled over {s['frames']} frames ({s['truncated_frames']} truncated); "
             "FDD signed, mean over sequences; CER/WER/VER corpus-level; predictions sharing a "
             "ground truth (conditions) averaged per sequence first."]
    if "coverage" in report:
        notes.append(_coverage_note(report))
    return "\n".join(lines + [""] + notes) + "\n"


def _coverage_note(report: dict) -> str:
    """Which split was scored, how it was chosen, and what was left out (from
    :func:`avguide.metrics.evaluate.evaluate_dataset`)."""
    c = report["coverage"]
    per_split = ", ".join(f"{k} {v}" for k, v in c["predictions_by_split"].items())
    if c["split"] == "all":
        return f"Scored every prediction whatever its split (split=all): {per_split}."
    text = (f"Scored split {c['split']} ({c['split_source']}): {c['sequences_predicted']} of "
            f"{c['sequences_in_split']} sequences predicted.")
    missing, ignored = report.get("missing_predictions") or [], report.get("ignored_predictions") or []
    if missing:
        text += f" MISSING (not scored): {len(missing)}: {_listed(missing)}."
    if ignored:
        text += f" IGNORED, outside the split: {len(ignored)} file(s): {_listed([Path(p).name for p in ignored])}."
    return text


def _listed(names: list[str], shown: int = 5) -> str:
    return ", ".join(names[:shown]) + (f" and {len(names) - shown} more" if len(names) > shown else "")


def _check_outputs(path: str | Path, markdown_path: str | Path | None, report: dict) -> None:
    """Both outputs writable, distinct, and neither an input file of the report (nothing lost)."""
    outputs = {"-o": check_output_file(path, "-o")}
    if markdown_path is not None:
        outputs["--markdown"] = check_output_file(markdown_path, "--markdown")
        if outputs["--markdown"].resolve() == outputs["-o"].resolve():
            raise BadInputError(f"--markdown {markdown_path}: the same file as -o; give two names")
    inputs = {Path(r[k]).resolve() for r in report.get("rows", []) for k in ("pred_file", "gt_file") if k in r}
    for arg, out in outputs.items():
        if out.resolve() in inputs:
            raise BadInputError(f"{arg} {out}: is an input of this evaluation; writing it would destroy it")


def write_report(path: str | Path, report: dict, cfg: EvaluateConfig,
                 markdown_path: str | Path | None = None, extra_config: dict | None = None) -> None:
    """Write ``report.json`` atomically, with the avguide version, config and units.

    Args:
        path: JSON destination.
        report: the dict returned by ``evaluate`` / ``evaluate_dataset``.
        cfg: the evaluation options (saved under ``config``).
        markdown_path: optional destination of :func:`format_markdown`'s table.
        extra_config: more resolved settings to save (e.g. the CLI's paths, reader checkpoint).
    Raises:
        BadInputError: either output is a directory, cannot be written, is the other one, or
            is one of the report's input files (all checked before anything is written).
    """
    _check_outputs(path, markdown_path, report)
    config = config_to_dict(cfg) if dataclasses.is_dataclass(cfg) else dict(cfg)
    if extra_config:
        config.update(extra_config)
    payload = {"avguide_version": avguide.__version__, "config": config, "units": UNITS, **report}
    write_json_atomic(path, payload)
    if markdown_path is not None:
        write_text_atomic(markdown_path, format_markdown(report, cfg))
