"""The benchmark's report: per (animator, condition) mean +- std over seeds, the ground-truth row
(the reader's ceiling) and the static-face row (its floor), the claim checked, as JSON and markdown."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import avguide
from avguide.io import write_json_atomic, write_text_atomic

METRICS = ("lve", "fdd", "mve", "cer", "wer", "ver")
"""Tabulated metrics: LVE / FDD in m^2 (shown x1e-5), MVE in m (shown in mm), reading rates."""
ARTICULATION = ("lip_motion_ratio", "opening_corr", "bilabial_closure", "open_vowel_aperture")
"""Articulation metrics (:mod:`avguide.metrics.articulation`; the paper's Figure 2: lip closure
and opening), where the data has timed phones."""
GRAD_KEYS = ("gnorm_av_first", "gnorm_mse_first", "gnorm_av_last", "gnorm_mse_last", "gnorm_av_lips_last",
             "cos_av_truth_first", "cos_av_truth_last")


def mean_std(values: list[float]) -> dict:
    """{"mean", "std" (sample std, ddof=1; 0 for one value), "n"} of finite values."""
    arr = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)
    if arr.size == 0:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": float(arr.mean()), "std": float(arr.std(ddof=1)) if arr.size > 1 else 0.0, "n": int(arr.size)}


def aggregate(results: list[dict]) -> dict:
    """Group per-run rows by animator and condition.

    Args:
        results: rows {"animator", "seed", "condition", metric: value, ...}.
    Returns:
        {animator: {condition: {metric or gradient key: mean_std, "seeds": [...]}}}, conditions
        in the order first seen.
    """
    table: dict[str, dict[str, dict]] = {}
    for row in results:
        table.setdefault(row["animator"], {}).setdefault(row["condition"], {"rows": []})["rows"].append(row)
    for conds in table.values():
        for name, entry in conds.items():
            rows = entry.pop("rows")
            entry["seeds"] = [r["seed"] for r in rows]
            for key in METRICS + ARTICULATION + GRAD_KEYS:
                if any(key in r for r in rows):
                    entry[key] = mean_std([r.get(key) for r in rows])
    return table


def check_claim(table: dict, guided: str = "av_tuned", control: str = "baseline") -> dict:
    """The paper's claim per animator: ``guided`` lowers CER and VER by more than the seed-to-seed
    spread (its mean + std below the ``control``'s mean - std), with LVE no worse (mean LVE below
    the control's mean + std).

    Returns:
        {animator: {"control", "cer_delta", "ver_delta", "lve_delta" (guided - control means),
        "cer_beyond_spread", "ver_beyond_spread", "lve_no_worse", "holds"}}; animators lacking
        either condition or the reading metrics are left out.
    """
    out = {}
    for animator, conds in table.items():
        base, av = conds.get(control), conds.get(guided)
        if not base or not av or "cer" not in base or base["cer"]["mean"] is None:
            continue
        res: dict = {"control": control}
        for m in ("cer", "ver", "lve"):
            b, a = base[m], av[m]
            res[f"{m}_delta"] = a["mean"] - b["mean"]
            if m == "lve":
                res["lve_no_worse"] = a["mean"] <= b["mean"] + b["std"]
            else:
                res[f"{m}_beyond_spread"] = a["mean"] + a["std"] < b["mean"] - b["std"]
        res["holds"] = res["cer_beyond_spread"] and res["ver_beyond_spread"] and res["lve_no_worse"]
        out[animator] = res
    return out


def paired_deltas(results: list[dict], guided: str = "av_tuned", control: str = "baseline") -> dict:
    """The claim's differences paired by seed: per animator, ``guided - control`` within each seed
    that ran both, then mean +- std over those seeds. Where seeds differ a lot from each other (a
    CodeTalker codebook that cannot decode a closed mouth, say), the unpaired spread of :func:`check_claim`
    hides a difference that every seed shows; the paired one does not.

    Returns:
        {animator: {"seeds": [...], "improved": {metric: seeds whose guided run is lower},
        metric: mean_std of the per-seed differences}} for the metrics in ``METRICS`` and
        ``ARTICULATION``; animators without a seed that ran both are left out.
    """
    runs = {(r["animator"], r["condition"], r["seed"]): r for r in results}
    out: dict = {}
    for animator in dict.fromkeys(r["animator"] for r in results):
        seeds = sorted(s for (a, c, s) in runs if a == animator and c == guided and (a, control, s) in runs)
        if not seeds:
            continue
        entry: dict = {"seeds": seeds, "improved": {}}
        for m in METRICS + ARTICULATION:
            pairs = [(runs[animator, guided, s].get(m), runs[animator, control, s].get(m)) for s in seeds]
            diffs = [g - c for g, c in pairs if g is not None and c is not None]
            if diffs:
                entry[m] = mean_std(diffs)
                entry["improved"][m] = sum(d < 0 for d in diffs)
        out[animator] = entry
    return out


def build_report(config: dict, results: list[dict], static: dict, timings: dict[str, float],
                 control: str = "baseline", mechanism: dict | None = None, pending: list[str] | None = None
                 ) -> dict:
    """The report dict (written by :func:`write_bench_report`).

    Args:
        config: the resolved benchmark config. results: one row per trained run.
        static: :func:`avguide.bench.runner.summarize` of the static-face evaluation, holding the
            reader's ceiling on ground truth as ``gt_cer``/``gt_wer``/``gt_ver``.
        timings: seconds per step.
        control: the condition the claim is checked against (see :func:`check_claim`).
        mechanism: {expert name: :func:`avguide.bench.mechanism.lip_dependence` result}.
        pending: the steps not finished yet (``avguide bench --report-only``): the report is
            then provisional, and says so.
    """
    table = aggregate(results)
    gt = {"lve": 0.0, "fdd": 0.0, "mve": 0.0, **{m: static[f"gt_{m}"] for m in ("cer", "wer", "ver") if f"gt_{m}" in static}}
    if "bilabial_closure_gt" in static:  # the ground truth against itself: ratios and correlation 1
        gt |= {"lip_motion_ratio": 1.0, "opening_corr": 1.0, "bilabial_closure": static["bilabial_closure_gt"],
               "open_vowel_aperture": 1.0}
    return {"avguide_version": avguide.__version__, "config": config, "ground_truth": gt,
            "static": {k: v for k, v in static.items() if not k.startswith("gt_") and not k.endswith("_gt")},
            "table": table,
            "order": ordered(table),
            "claim": check_claim(table, control=control), "paired": paired_deltas(results, control=control),
            "mechanism": mechanism or {}, "runs": results,
            "timings_s": timings, "pending": list(pending or [])}


def ordered(table: dict) -> list[list]:
    """[[animator, [condition, ...]], ...] in run order (JSON files sort dict keys; this keeps it)."""
    return [[animator, list(conds)] for animator, conds in table.items()]


def rows_in_order(report: dict):
    """(animator, condition, entry) of ``report["table"]`` in run order."""
    for animator, names in report["order"]:
        for name in names:
            yield animator, name, report["table"][animator][name]


def _cell(entry: dict | None, scale: float, digits: int = 3) -> str:
    if not entry or entry.get("mean") is None:
        return "-"
    if entry["n"] > 1:
        return f"{entry['mean'] * scale:.{digits}f} ± {entry['std'] * scale:.{digits}f}"
    return f"{entry['mean'] * scale:.{digits}f}"


SCALES = {"lve": 1e5, "fdd": 1e5, "mve": 1e3, "cer": 100.0, "wer": 100.0, "ver": 100.0}
ARTICULATION_HEADERS = ["lip-motion ratio", "opening corr.", "bilabial closure", "open-vowel aperture"]
HEADERS = ["LVE (x1e-5 m²)", "FDD (x1e-5 m²)", "MVE (mm)", "CER (%)", "WER (%)", "VER (%)"]


def format_markdown(report: dict) -> str:
    """Markdown: the results table (mean ± std over seeds), the claim, gradient norms, timings."""
    cfg = report["config"]
    lines = [f"# avguide bench (preset {cfg['preset']}, avguide {report['avguide_version']})", "",
             f"Seeds {cfg['seeds']}; reader: separate visual-only expert; CER/WER/VER corpus rates on the "
             "test split; LVE/MVE over frames; FDD signed mean over sequences. ± is the sample std over "
             "seeds.", ""]
    if report.get("pending"):
        lines += [f"**Provisional**: {len(report['pending'])} steps have not finished yet, so the rows below "
                  "hold the seeds finished so far and the verdict may change. Pending: "
                  + ", ".join(report["pending"]) + ".", ""]
    lines += ["| animator | condition | seeds | " + " | ".join(HEADERS) + " |", "|---" * (len(HEADERS) + 3) + "|"]
    fixed = {"ground truth (reader ceiling)": report["ground_truth"], "static face (floor)": report["static"]}
    for name, row in fixed.items():
        cells = [f"{row[m] * SCALES[m]:.3f}" if m in row else "-" for m in METRICS]
        lines.append(f"| - | {name} | - | " + " | ".join(cells) + " |")
    for animator, name, entry in rows_in_order(report):
        lines.append(f"| {animator} | {name} | {len(entry['seeds'])} | "
                     + " | ".join(_cell(entry.get(m), SCALES[m]) for m in METRICS) + " |")
    if any(m in e for _, _, e in rows_in_order(report) for m in ARTICULATION):
        lines += ["", "## Articulation (lip closure and opening, the paper's Figure 2)", "",
                  "Lip-motion ratio: temporal std of the lip vertices, prediction / ground truth; opening "
                  "correlation with the ground truth; share of /p b m/ segments whose lips close; aperture at "
                  "open vowels, prediction / ground truth.", "",
                  "| animator | condition | seeds | " + " | ".join(ARTICULATION_HEADERS) + " |",
                  "|---" * (len(ARTICULATION) + 3) + "|"]
        for name, row in fixed.items():
            cells = [f"{row[m]:.3f}" if m in row else "-" for m in ARTICULATION]
            lines.append(f"| - | {name} | - | " + " | ".join(cells) + " |")
        for animator, name, entry in rows_in_order(report):
            lines.append(f"| {animator} | {name} | {len(entry['seeds'])} | "
                         + " | ".join(_cell(entry.get(m), 1.0) for m in ARTICULATION) + " |")
    lines += ["", "## The claim (av_tuned vs its control)", ""]
    if not report["claim"]:
        lines.append("Not checked (no reading metrics or missing conditions).")
    for animator, c in report["claim"].items():
        lines.append(f"- {animator} (vs {c['control']}): ΔCER {100 * c['cer_delta']:+.2f} pts (beyond spread: {c['cer_beyond_spread']}), "
                     f"ΔVER {100 * c['ver_delta']:+.2f} pts (beyond spread: {c['ver_beyond_spread']}), "
                     f"ΔLVE {1e5 * c['lve_delta']:+.3f} x1e-5 (no worse: {c['lve_no_worse']}) -> "
                     f"**{'holds' if c['holds'] else 'does not hold'}**")
    if report.get("paired"):
        lines += ["", "Paired by seed (av_tuned minus its control within each seed, mean ± std over the seeds "
                  "that ran both; \"lower in\" counts the seeds where av_tuned is lower):", ""]
        for animator, p in report["paired"].items():
            n = len(p["seeds"])
            cells = [f"Δ{m.upper()} {_cell(p[m], s)}{unit} (lower in {p['improved'][m]}/{n})"
                     for m, s, unit in (("cer", 100.0, " pts"), ("ver", 100.0, " pts"), ("lve", 1e5, " x1e-5"))
                     if m in p]
            if "bilabial_closure" in p:
                cells.append(f"Δclosure {_cell(p['bilabial_closure'], 1.0)}")
            lines.append(f"- {animator}, seeds {p['seeds']}: " + ", ".join(cells))
    lines += ["", "## Gradient norms on the predicted vertices (first / last epoch means)", "",
              "| animator | condition | |d(l_av L_av)/dV| | |d(l_mse L_mse)/dV| | lips part of AV "
              "| cos(AV descent, to the truth) |", "|---|---|---|---|---|---|"]
    for animator, name, e in rows_in_order(report):
        if "gnorm_av_last" in e:
            cos = (f"{e['cos_av_truth_first']['mean']:.4f} / {e['cos_av_truth_last']['mean']:.4f}"
                   if "cos_av_truth_last" in e else "-")  # runs probed before it was logged
            lines.append(f"| {animator} | {name} | {e['gnorm_av_first']['mean']:.3g} / {e['gnorm_av_last']['mean']:.3g} | "
                         f"{e['gnorm_mse_first']['mean']:.3g} / {e['gnorm_mse_last']['mean']:.3g} | "
                         f"{e['gnorm_av_lips_last']['mean']:.3g} | {cos} |")
    if report.get("mechanism"):
        from avguide.bench.mechanism import dependence_table

        lines += ["", "## The mechanism: how much the experts' reading depends on the lips", ""]
        for result in report["mechanism"].values():
            lines += [dependence_table(result)]
    total = sum(report["timings_s"].values())
    lines += ["", f"## Step times (s): {total:.0f} s in all ({total / 60:.1f} min)", ""]
    lines += [f"- {k}: {v}" for k, v in report["timings_s"].items()]
    figs = report.get("figures") or {}
    if figs:
        lines += ["", "## Figures", ""] + [f"- {k}: {v}" for k, v in figs.items()]
    return "\n".join(lines) + "\n"


def write_bench_report(out: str | Path, report: dict) -> None:
    """``OUT/report.json`` and ``OUT/report.md`` (atomically)."""
    out = Path(out)
    write_json_atomic(out / "report.json", report)
    write_text_atomic(out / "report.md", format_markdown(report))
