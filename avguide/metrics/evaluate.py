"""Evaluate predicted vertex sequences against ground truth: geometry and lip readability.

:func:`evaluate` takes (prediction, ground truth) pairs, one row per prediction, and returns a
report dict; :func:`evaluate_dataset` builds those pairs from a prediction folder and a dataset
(:mod:`avguide.data`); :mod:`avguide.metrics.report` writes ``report.json`` and markdown.

Aggregation, stated once:

* **Length reconciliation**: prediction and ground truth are truncated to the shorter length;
  the dropped frames are counted per row (``truncated_frames``). A gross mismatch (more than
  ``max_frame_diff`` frames or more than ``max_frame_ratio`` of the ground-truth length) is an
  error naming both files.
* **Conditions**: several predictions may share one ground truth (one per training-subject
  speaking-style condition for unseen subjects, e.g. BIWI test-B). Each metric is first
  averaged over the conditions of a ground truth, giving one **sequence** entry per ground
  truth; every summary statistic then weighs each ground-truth sequence once. (CodeTalker's
  public ``cal_metric.py`` scores test-A only, one prediction per sequence conditioned on its
  own subject; with one condition per sequence both protocols coincide.)
* **LVE / MVE** are given both ways: ``mean_over_frames`` pools all frames of all sequences
  (the literature's LVE; a sequence's weight is its frame count, conditions averaged) and
  ``mean_over_sequences`` averages the per-sequence values. ``std`` is the population std over
  sequences.
* **FDD** is signed (``gt - pred`` motion std), mean over sequences, with ``abs_of_mean`` (the
  |FDD| usually printed) and ``mean_abs`` (mean of per-sequence |FDD|).
* **CER / WER / VER**: ``corpus`` = total edits / total reference length (edits averaged over
  conditions per sequence); ``mean_over_sequences`` averages per-sequence rates. Computed only
  when both a reader and transcripts are given. The ``ceiling`` block holds the same rates for
  the reader on the ground-truth meshes (read once per sequence): the best a prediction can do.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from avguide.data.splits import SPLIT_NAMES
from avguide.errors import BadInputError
from avguide.metrics import geometry
from avguide.metrics.matching import check_vertices, find_motion_files, match_predictions, subject_of
from avguide.metrics.text import EditCounts, char_counts, normalise_text, viseme_counts, word_counts

Reader = Callable[[list[np.ndarray], float], list[str]]
"""``reader(vertex sequences [(T, V, 3) float32, ...], fps) -> one hypothesis string each``."""

READING_METRICS = ("cer", "wer", "ver")

ALL_SPLITS = "all"
"""``EvaluateConfig.split`` value that scores every prediction whatever its split."""


@dataclasses.dataclass
class EvaluateConfig:
    """Options of an evaluation run (saved in ``report.json``).

    Attributes:
        split: the dataset split scored (e.g. "test", "test_b"): every sequence of it must have
            a prediction, predictions outside it are ignored and listed. None: the one split
            all predictions belong to (an error if they span several or fall in none). "all":
            every prediction, whatever its split (the report counts them per split).
        allow_missing: score a subset of the split; its sequences without a prediction are
            listed (``missing_predictions``) instead of being an error.
        max_frame_diff: largest tolerated |T_pred - T_gt| in frames.
        max_frame_ratio: largest tolerated |T_pred - T_gt| / T_gt.
        reader_batch: sequences handed to the reader per call.
        read_ground_truth: also read the ground-truth meshes (the ceiling rows).
        compute_ver: compute VER (needs espeak-ng through avguide.speech.visemes).
        lve_exponent: markdown shows LVE divided by 10**lve_exponent (-5: VOCASET tables,
            -4: BIWI tables).
        fdd_exponent: same for FDD (-5 in CodeTalker's BIWI table).
        mve_exponent: same for MVE (-3: millimetres for metre inputs).
    """

    split: str | None = None
    allow_missing: bool = False
    max_frame_diff: int = 5
    max_frame_ratio: float = 0.10
    reader_batch: int = 8
    read_ground_truth: bool = True
    compute_ver: bool = True
    lve_exponent: int = -5
    fdd_exponent: int = -5
    mve_exponent: int = -3

    def check(self) -> list[str]:
        """Errors in the option values (empty if valid)."""
        errors = []
        if self.split is not None and self.split not in (*SPLIT_NAMES, ALL_SPLITS):
            errors.append(f"split: unknown split {self.split!r}; allowed: "
                          f"{', '.join(SPLIT_NAMES)}, {ALL_SPLITS} or null")
        if self.max_frame_diff < 0:
            errors.append(f"max_frame_diff: must be >= 0, got {self.max_frame_diff}")
        if not 0 <= self.max_frame_ratio < 1:
            errors.append(f"max_frame_ratio: must be in [0, 1), got {self.max_frame_ratio}")
        if self.reader_batch < 1:
            errors.append(f"reader_batch: must be >= 1, got {self.reader_batch}")
        return errors


@dataclasses.dataclass
class SequencePair:
    """A prediction and its ground truth.

    Attributes:
        name: ground-truth sequence name, ``<subject>_<sentence>``.
        condition: speaking-style condition of the prediction, or None.
        pred: (T_pred, V, 3) predicted vertices.
        gt: (T_gt, V, 3) ground-truth vertices.
        pred_source: the prediction's file (or any label), used in messages and rows.
        gt_source: the ground truth's file (or label).
    """

    name: str
    condition: str | None
    pred: np.ndarray
    gt: np.ndarray
    pred_source: str
    gt_source: str


def truncate_to_common_length(pair: SequencePair, max_frame_diff: int = 5,
                              max_frame_ratio: float = 0.10) -> tuple[np.ndarray, np.ndarray, int]:
    """Cut prediction and ground truth to the shorter length.

    Args:
        pair: the two sequences.
        max_frame_diff: largest tolerated |T_pred - T_gt|.
        max_frame_ratio: largest tolerated |T_pred - T_gt| / T_gt.
    Returns:
        (pred (T, V, 3), gt (T, V, 3), dropped) with T = min(T_pred, T_gt) and
        dropped = |T_pred - T_gt|.
    Raises:
        BadInputError: the mismatch exceeds either limit (names both files).
    """
    t_pred, t_gt = pair.pred.shape[0], pair.gt.shape[0]
    diff = abs(t_pred - t_gt)
    if diff > max_frame_diff or diff > max_frame_ratio * t_gt:
        raise BadInputError(f"{pair.pred_source} has {t_pred} frames but {pair.gt_source} has "
                            f"{t_gt}: mismatch of {diff} frames exceeds {max_frame_diff} frames / "
                            f"{max_frame_ratio:.0%} (wrong frame rate or wrong file?)")
    t = min(t_pred, t_gt)
    return pair.pred[:t], pair.gt[:t], diff


def _check_pair(pair: SequencePair, templates: Mapping[str, np.ndarray]) -> np.ndarray:
    """Validate shapes and finiteness of a pair; return the ground-truth subject's template.

    Files are checked (naming them) when they are loaded; arrays that get here wrong are the
    caller's bug, hence ValueError, not the user-facing BadInputError.
    """
    for arr, source in ((pair.pred, pair.pred_source), (pair.gt, pair.gt_source)):
        try:
            check_vertices(arr, f"{source} ({pair.name})")
        except BadInputError as e:
            raise ValueError(str(e)) from None
    if pair.pred.shape[1] != pair.gt.shape[1]:
        raise ValueError(f"{pair.pred_source} has {pair.pred.shape[1]} vertices per frame but "
                         f"{pair.gt_source} has {pair.gt.shape[1]}")
    subject = subject_of(pair.name)
    if subject not in templates:
        raise ValueError(f"{pair.name}: no template for subject {subject!r} (have: "
                         f"{', '.join(sorted(templates))})")
    template = np.asarray(templates[subject])
    if template.shape != pair.gt.shape[1:]:
        raise ValueError(f"template of {subject!r} has shape {template.shape}, but "
                         f"{pair.gt_source} has {pair.gt.shape[1]} vertices")
    return template


def _geometry_row(pair: SequencePair, template: np.ndarray, lip_idx: np.ndarray,
                  upper_idx: np.ndarray, cfg: EvaluateConfig) -> tuple[dict, np.ndarray]:
    """One report row with LVE, MVE, FDD; also returns the truncated prediction."""
    pred, gt, dropped = truncate_to_common_length(pair, cfg.max_frame_diff, cfg.max_frame_ratio)
    row = {
        "name": pair.name, "subject": subject_of(pair.name), "condition": pair.condition,
        "pred_file": pair.pred_source, "gt_file": pair.gt_source,
        "frames": int(pred.shape[0]), "frames_pred": int(pair.pred.shape[0]),
        "frames_gt": int(pair.gt.shape[0]), "truncated_frames": dropped,
        "lve": geometry.lve(pred, gt, lip_idx),
        "mve": geometry.mve(pred, gt),
        "fdd": geometry.fdd(pred, gt, template, upper_idx),
    }
    return row, pred


class _ReadingQueue:
    """Batches vertex sequences for the reader and stores edit counts into their target dicts."""

    def __init__(self, reader: Reader, fps: float, batch: int,
                 counters: Mapping[str, Callable[[str, str], EditCounts]]):
        self.reader, self.fps, self.batch, self.counters = reader, fps, batch, counters
        self.items: list[tuple[dict, np.ndarray, str]] = []

    def add(self, target: dict, vertices: np.ndarray, reference: str) -> None:
        self.items.append((target, vertices, reference))
        if len(self.items) >= self.batch:
            self.flush()

    def flush(self) -> None:
        if not self.items:
            return
        hyps = self.reader([v for _, v, _ in self.items], self.fps)
        if not isinstance(hyps, (list, tuple)) or len(hyps) != len(self.items) or not all(
                isinstance(h, str) for h in hyps):
            raise RuntimeError(f"the reader must return {len(self.items)} strings for "
                               f"{len(self.items)} sequences, got {hyps!r:.200}")
        for (target, _, ref), hyp in zip(self.items, hyps):
            target["hypothesis"] = hyp
            for metric, counter in self.counters.items():
                counts = counter(ref, hyp)
                target[metric] = counts.rate
                target[f"{metric}_edits"] = counts.edits
                target[f"{metric}_ref_len"] = counts.ref_len
        self.items = []


def evaluate(pairs: Iterable[SequencePair], lip_idx: Sequence[int] | np.ndarray,
             upper_idx: Sequence[int] | np.ndarray, templates: Mapping[str, np.ndarray],
             transcripts: Mapping[str, str] | None = None, reader: Reader | None = None,
             fps: float | None = None, cfg: EvaluateConfig | None = None,
             to_visemes: Callable[[str], str] | None = None) -> dict:
    """Compute per-prediction rows, per-sequence entries and a summary.

    Pairs are consumed one at a time (a generator keeps memory to one pair plus the reader's
    batch).

    Args:
        pairs: the (prediction, ground truth) pairs; any iterable.
        lip_idx: (R,) lip vertex indices (LVE).
        upper_idx: (U,) upper-face vertex indices (FDD).
        templates: {subject: (V, 3)} neutral meshes (FDD displacements).
        transcripts: {sequence name: transcript}; with ``reader``, enables CER/WER/VER.
        reader: ``reader([(T, V, 3) arrays], fps) -> [hypothesis str]``.
        fps: frame rate of the sequences, passed to the reader (required with ``reader``).
        cfg: options; defaults to :class:`EvaluateConfig`.
        to_visemes: text -> viseme string for VER; default avguide.speech.visemes.text_to_visemes.
    Returns:
        ``{"rows": [...], "sequences": [...], "summary": {...}, "ceiling": {...} or None}``;
        see the module docstring for the aggregation, :mod:`avguide.metrics.geometry` for units.
    Raises:
        BadInputError: invalid ``cfg``, no pairs, a gross length mismatch (naming both files),
            a missing transcript.
        ValueError: arrays of a bad shape or with NaN/inf, a missing template, a reader without
            transcripts (or the reverse), a reader without fps (the caller's bugs).
        RuntimeError: the reader returned other than one string per sequence.

    Example:
        >>> gt = np.zeros((4, 3, 3), np.float32); pred = gt + 0.01
        >>> pair = SequencePair("F2_e37", None, pred, gt, "F2_e37.npy", "gt/F2_e37.npy")
        >>> report = evaluate([pair], [0, 1], [2], {"F2": np.zeros((3, 3))},
        ...                   {"F2_e37": "Hello!"}, lambda seqs, fps: ["hallo"] * len(seqs),
        ...                   fps=25.0, to_visemes=str.upper)
        >>> summary = report["summary"]
        >>> round(summary["lve"]["mean_over_frames"], 8), summary["cer"]["corpus"]
        (0.0003, 0.2)
    """
    cfg = cfg or EvaluateConfig()
    if errors := cfg.check():
        raise BadInputError("invalid EvaluateConfig: " + "; ".join(errors))
    if (reader is None) != (transcripts is None):
        raise ValueError("reading metrics need both a reader and transcripts; got only the "
                         + ("reader" if reader is not None else "transcripts"))
    queue = None
    if reader is not None:
        if fps is None or not fps > 0:
            raise ValueError(f"fps: the reader needs the sequences' frame rate, got {fps}")
        counters = {"cer": char_counts, "wer": word_counts}
        if cfg.compute_ver:
            counters["ver"] = lambda r, h: viseme_counts(r, h, to_visemes)
        queue = _ReadingQueue(reader, fps, cfg.reader_batch, counters)
    lip_idx, upper_idx = np.asarray(lip_idx), np.asarray(upper_idx)
    rows: list[dict] = []
    ceiling: dict[str, dict] = {}
    for pair in pairs:
        template = _check_pair(pair, templates)
        row, pred = _geometry_row(pair, template, lip_idx, upper_idx, cfg)
        rows.append(row)
        if queue is not None:
            ref = transcripts.get(pair.name)
            if not ref or not normalise_text(ref):
                raise BadInputError(f"{pair.name}: no transcript (or one without letters) for "
                                    "the reading metrics")
            row["reference"] = ref
            queue.add(row, pred, ref)
            if cfg.read_ground_truth and pair.name not in ceiling:
                ceiling[pair.name] = {"name": pair.name, "reference": ref}
                queue.add(ceiling[pair.name], pair.gt, ref)
    if queue is not None:
        queue.flush()
    if not rows:
        raise BadInputError("nothing to evaluate: no prediction/ground-truth pairs")
    sequences = _per_sequence(rows)
    return {
        "rows": rows,
        "sequences": sequences,
        "summary": _summary(sequences, rows),
        "ceiling": _reading_summary(list(ceiling.values())) if ceiling else None,
    }


def _stats(values: Sequence[float]) -> dict:
    """Mean, population std and count of per-sequence values."""
    arr = np.asarray(values, dtype=np.float64)
    return {"mean_over_sequences": float(arr.mean()), "std": float(arr.std()),
            "count": int(arr.size)}


def _per_sequence(rows: list[dict]) -> list[dict]:
    """Average the rows of each ground-truth sequence over its conditions."""
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(row["name"], []).append(row)
    sequences = []
    for name in sorted(groups):
        group = groups[name]
        entry = {"name": name, "subject": group[0]["subject"],
                 "conditions": [r["condition"] for r in group], "n_conditions": len(group),
                 "frames": float(np.mean([r["frames"] for r in group])),
                 "truncated_frames": int(sum(r["truncated_frames"] for r in group))}
        for key in ("lve", "mve", "fdd"):
            entry[key] = float(np.mean([r[key] for r in group]))
        for metric in READING_METRICS:
            if metric in group[0]:
                entry[metric] = float(np.mean([r[metric] for r in group]))
                entry[f"{metric}_edits"] = float(np.mean([r[f"{metric}_edits"] for r in group]))
                entry[f"{metric}_ref_len"] = group[0][f"{metric}_ref_len"]
        sequences.append(entry)
    return sequences


def _reading_stats(entries: list[dict]) -> dict:
    """Corpus and per-sequence CER/WER/VER of entries holding ``<metric>_edits/_ref_len``."""
    out = {}
    for metric in READING_METRICS:
        if entries and metric in entries[0]:
            edits = sum(e[f"{metric}_edits"] for e in entries)
            ref_len = sum(e[f"{metric}_ref_len"] for e in entries)
            out[metric] = {"corpus": edits / ref_len, **_stats([e[metric] for e in entries])}
    return out


def _frame_weighted(rows: list[dict], key: str) -> float:
    """Mean of ``key`` over all frames, each ground truth's conditions weighing 1 in total."""
    n_cond: dict[str, int] = {}
    for row in rows:
        n_cond[row["name"]] = n_cond.get(row["name"], 0) + 1
    weights = np.array([row["frames"] / n_cond[row["name"]] for row in rows])
    values = np.array([row[key] for row in rows])
    return float((weights * values).sum() / weights.sum())


def _summary(sequences: list[dict], rows: list[dict]) -> dict:
    """Dataset-level statistics (see the module docstring)."""
    fdd = np.array([s["fdd"] for s in sequences])
    summary = {
        "count_sequences": len(sequences),
        "count_predictions": len(rows),
        "max_conditions_per_sequence": max(s["n_conditions"] for s in sequences),
        "frames": int(sum(r["frames"] for r in rows)),
        "truncated_frames": int(sum(r["truncated_frames"] for r in rows)),
        "fdd": {"mean": float(fdd.mean()), "std": float(fdd.std()),
                "abs_of_mean": float(abs(fdd.mean())), "mean_abs": float(np.abs(fdd).mean()),
                "count": int(fdd.size)},
    }
    for key in ("lve", "mve"):
        summary[key] = {"mean_over_frames": _frame_weighted(rows, key),
                        **_stats([s[key] for s in sequences])}
    summary.update(_reading_stats(sequences))
    return summary


def _reading_summary(entries: list[dict]) -> dict:
    """The ceiling block: reader on ground-truth meshes, one entry per sequence."""
    entries = sorted(entries, key=lambda e: e["name"])
    return {"rows": entries, **_reading_stats(entries)}


def evaluate_dataset(pred_dir: str | Path, data_root: str | Path,
                     cfg: EvaluateConfig | None = None, reader: Reader | None = None,
                     layout: str = "auto", to_visemes: Callable[[str], str] | None = None) -> dict:
    """Evaluate a folder of predictions against a dataset (VOCASET, BIWI or synthetic layout).

    Predictions are matched by name (:mod:`avguide.metrics.matching`) to the dataset's
    recordings; ground truth is loaded at the dataset's evaluation frame rate (VOCASET 60 fps
    files are strided to 30 fps); lips and upper face come from the dataset's regions
    ('lips' / 'upper_face', i.e. BIWI ``regions/lve.txt`` / ``fdd.txt`` at full resolution);
    transcripts from ``sentencestext/``. Which split is scored, and how completely, is decided
    by ``cfg.split`` and ``cfg.allow_missing`` (see :class:`EvaluateConfig`) and recorded in
    the report.

    Args:
        pred_dir: folder of ``.npy`` / ``.npz`` predictions, each (T, V*3) or (T, V, 3).
        data_root: dataset folder (see :func:`avguide.data.layouts.open_dataset`).
        cfg: options.
        reader: optional lip reader (CER/WER/VER); needs the dataset's transcripts.
        layout: "auto", "vocaset", "biwi" or "synthetic".
        to_visemes: text -> viseme string for VER (default: avguide.speech.visemes).
    Returns:
        :func:`evaluate`'s report plus ``dataset`` (root, layout, fps, split and how it was
        chosen, vertex and region sizes), ``coverage`` (sequences in the split, predicted,
        predictions per split), ``ignored_predictions`` (files outside the split) and
        ``missing_predictions`` (sequences of the split without one).
    Raises:
        MissingFileError / BadInputError: missing folders, unmatched predictions, predictions
            spanning several splits (without ``split``), missing predictions (without
            ``allow_missing``), a dataset without lip/upper-face regions, bad files.
    """
    from avguide.data.layouts import open_dataset
    from avguide.data.samples import load_vertices
    from avguide.io import load_vertices as load_prediction

    cfg = cfg or EvaluateConfig()
    if errors := cfg.check():
        raise BadInputError("invalid EvaluateConfig: " + "; ".join(errors))
    index = open_dataset(data_root, layout)  # type: ignore[arg-type]
    refs = {s.name: s for s in index.samples}
    for region in ("lips", "upper_face"):
        if region not in index.regions:
            raise BadInputError(f"{index.root}: no '{region}' vertex region (expected regions/"
                                f"{'lve' if region == 'lips' else 'fdd'}.txt or FLAME_masks.pkl)")
    pred_files = find_motion_files(pred_dir)
    try:
        matches = match_predictions(pred_files, list(refs))
    except BadInputError as e:  # its list of problems, on one line
        raise BadInputError(f"{pred_dir}: " + str(e).replace(":\n  ", ": ").replace("\n  ", "; ")) from None
    split, source, in_split = _scored_split(pred_dir, index, refs, matches, cfg.split)
    predicted, wanted = {m.gt_name for m in matches}, set(in_split)
    ignored = [str(m.pred_path) for m in matches if m.gt_name not in wanted]
    missing = [name for name in in_split if name not in predicted]
    matches = [m for m in matches if m.gt_name in wanted]
    if missing and not cfg.allow_missing:
        raise BadInputError(f"{pred_dir}: {len(missing)} of {len(in_split)} sequence(s) of split {split} "
                            f"have no prediction: {_names(missing)}; predict them, or pass "
                            "allow_missing=true to score the others")
    if not matches:
        raise BadInputError(f"{pred_dir}: no prediction of split {split} ({len(ignored)} file(s), all "
                            "outside it)")
    n_vertices = index.n_vertices
    transcripts = None
    if reader is not None:
        for name in sorted({m.gt_name for m in matches}):
            if not refs[name].text:
                ref = refs[name]
                raise BadInputError(f"{index.root / 'sentencestext' / (ref.subject + '.txt')}: no transcript "
                                    f"line {ref.sentence} for {name} (the reading metrics need it)")
        transcripts = {m.gt_name: refs[m.gt_name].text for m in matches}

    def pairs() -> Iterator[SequencePair]:
        for m in matches:
            ref = refs[m.gt_name]
            yield SequencePair(m.gt_name, m.condition, load_prediction(m.pred_path, n_vertices, what="prediction"),
                               load_vertices(ref.vertices, n_vertices, index.stride),
                               str(m.pred_path), str(ref.vertices))

    report = evaluate(pairs(), index.regions["lips"], index.regions["upper_face"],
                      index.templates, transcripts, reader, index.fps, cfg, to_visemes)
    articulation = _articulation(index, refs, matches, load_prediction)
    if articulation is not None:
        report["summary"]["articulation"] = articulation
    by_split: dict[str, int] = {}
    for m in matches:
        key = refs[m.gt_name].split or "no split"
        by_split[key] = by_split.get(key, 0) + 1
    report["dataset"] = {"root": str(index.root), "layout": index.layout, "fps": index.fps,
                         "split": split, "split_source": source, "n_vertices": n_vertices,
                         "lip_vertices": int(len(index.regions["lips"])),
                         "upper_face_vertices": int(len(index.regions["upper_face"]))}
    report["coverage"] = {"split": split, "split_source": source,
                          "sequences_in_split": len(in_split) if split != ALL_SPLITS else None,
                          "sequences_predicted": len({m.gt_name for m in matches}),
                          "predictions_by_split": dict(sorted(by_split.items()))}
    report["ignored_predictions"] = ignored
    report["missing_predictions"] = missing
    return report


def _articulation(index, refs: dict, matches: list, load_prediction) -> dict | None:
    """Pooled articulation metrics (:mod:`avguide.metrics.articulation`) where the dataset has
    timed phones (``alignments/``, the synthetic layout) and upper / lower lip regions; else None."""
    from avguide.metrics.articulation import aggregate_articulation, articulation_metrics, opening_vertices

    folder = Path(index.root) / "alignments"
    if not folder.is_dir() or not all(r in index.regions for r in ("upper_lip", "lower_lip")):
        return None
    from avguide.data.samples import load_phones, load_vertices

    rows = []
    for subject in sorted({refs[m.gt_name].subject for m in matches}):  # the regions fit each face
        try:
            opening_vertices(index.templates[subject], index.regions["lips"], index.regions["upper_lip"],
                             index.regions["lower_lip"])
        except ValueError as e:
            raise BadInputError(f"{Path(index.root) / 'regions'}: the upper_lip / lower_lip regions do not fit "
                                f"the template of {subject} ({e})") from None
    for m in matches:
        ref = refs[m.gt_name]
        pred = load_prediction(m.pred_path, index.n_vertices, what="prediction")
        gt = load_vertices(ref.vertices, index.n_vertices, index.stride)
        n = min(len(pred), len(gt))
        phones = load_phones(folder / f"{m.gt_name}.json")
        rows.append(articulation_metrics(pred[:n], gt[:n], phones, index.fps, index.regions["lips"],
                                         index.regions["upper_lip"], index.regions["lower_lip"],
                                         index.templates[ref.subject]))
    return aggregate_articulation(rows)


def _scored_split(pred_dir: str | Path, index, refs: dict, matches: list,
                  requested: str | None) -> tuple[str, str, list[str]]:
    """(split scored, how it was chosen, its sequence names) for :func:`evaluate_dataset`.

    Raises:
        BadInputError: without a requested split, predictions in several splits or in none;
            a requested split with no recording in the dataset.
    """
    if requested == ALL_SPLITS:
        return ALL_SPLITS, "argument", sorted({m.gt_name for m in matches})
    if requested is not None:
        names = [s.name for s in index.split(requested)]
        if not names:
            raise BadInputError(f"split={requested}: the dataset {index.root} has no recording in this split")
        return requested, "argument", names
    of_split: dict[str | None, list[str]] = {}
    for m in matches:
        of_split.setdefault(refs[m.gt_name].split, []).append(m.pred_path.name)
    if None in of_split:
        raise BadInputError(f"{pred_dir}: {len(of_split[None])} prediction(s) are of recordings in no split "
                            f"({_names(of_split[None])}); pass split=NAME to score one split, or split=all")
    if len(of_split) > 1:
        counts = ", ".join(f"{sp} ({len(v)})" for sp, v in sorted(of_split.items()))
        raise BadInputError(f"{pred_dir}: the predictions span several splits: {counts}; pass split=NAME "
                            "to score one (the others are listed as ignored), or split=all")
    (split,) = of_split
    return split, "inferred from the predictions", [s.name for s in index.split(split)]


def _names(names: Sequence[str], shown: int = 5) -> str:
    """The first ``shown`` names, then how many more."""
    head = ", ".join(names[:shown])
    return head + (f" and {len(names) - shown} more" if len(names) > shown else "")
