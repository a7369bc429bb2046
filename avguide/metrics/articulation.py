"""Articulation metrics: *how* predicted lips differ from the ground truth (CER only says *that*).

Pure numpy, stateless. Vertex sequences are (T, V, 3) float arrays in any length unit (metres for
VOCASET and the synthetic benchmark); x is the lateral axis and y the vertical axis (up), as in
FLAME, BIWI and the MakeHuman head. Prediction and ground truth must have the same number of
frames (cut them first, e.g. with :func:`avguide.metrics.evaluate.truncate_to_common_length`).
Frame k shows time ``k / fps`` seconds; phones are ``(ipa, start_s, end_s)`` as in the synthetic
benchmark's ``alignments/<name>.json`` (``Phone`` objects work too; silence is ``"_"``).

Definitions (pred x, ground truth y):

* **Mouth opening** ``o_t``: the vertical gap between the inner edges of the two lips at the
  mid-line. On a reference shape of the subject (its template, else the ground truth's mean over
  time) the mid-line band is the set of lip vertices whose lateral coordinate lies within
  ``band`` x the mouth width of the mouth centre (width and centre from the lateral extent of
  the ``lips`` region); in that band the ``n_inner`` upper-lip vertices with the lowest height
  and the ``n_inner`` lower-lip vertices with the highest height are selected, once per
  sequence, and ``o_t = mean_y(upper selection) - mean_y(lower selection)``. The selection
  follows each subject's own lips (robust to the template) and the gap is a difference of
  coordinates (invariant to translation); being linear in the vertices, scaling the motion
  about the template scales ``o_t - o_template`` exactly. Pressed lips give small negative
  values (the inner edges overlap).
* **Lip-motion ratio**: ``s = sqrt(mean_{v in lips, c in xyz} var_t(x_tvc))`` (population
  variance about each coordinate's own mean over time), ratio ``s(pred) / s(gt)``. 1 = as much
  lip motion as the truth; < 1 over-smoothed.
* **Opening correlation**: Pearson correlation over frames of ``o(pred)`` and ``o(gt)``. A
  prediction whose opening never changes has correlation 0 by convention (it co-varies with
  nothing); a ground truth whose opening never changes gives NaN.
* **Bilabial closure rate**: over /p b m/ segments, the share whose minimum opening over the
  frames with ``start - tol_s <= k / fps <= end + tol_s`` is at most the sequence's closure
  threshold ``min_t o_t(gt) + closure_frac * (max_t o_t(gt) - min_t o_t(gt))``. Defaults
  ``tol_s = 0.04`` (one frame at 25-30 fps either side: visual speech leads or lags the audio
  by tens of ms, Schwartz & Savariaux 2014) and ``closure_frac = 0.1`` (within 10 % of the
  subject's own opening range above its tightest closure; unit-free and per subject, so the same
  rule holds for any head and scale: about 2 mm for the synthetic heads' ~20 mm range). The
  ground truth's own rate under the same rule is the ceiling. Lips at rest touch, so a static
  mouth at rest passes this test: read the rate together with the motion ratio.
* **Open-vowel aperture**: mean ``o(pred)`` over the frames inside open-vowel segments
  (viseme class ``a``: æ aɪ aʊ ɑ ɐ ..., :mod:`avguide.speech.visemes`; frames with
  ``start <= k / fps <= end``, else the frame nearest the segment's centre), divided by the
  ground truth's mean over the same frames.

Without a ground truth (:func:`articulation_without_truth`, for speech of your own with phones
from :func:`avguide.speech.align.align_transcript`), the face at rest stands in for the ground
truth's tightest closure and the animation's own widest opening for its range.

Segments that lie wholly after the last frame are skipped. :func:`aggregate_articulation`
pools sequences: motion variance and open-vowel frames are frame-weighted, closures
segment-weighted, correlations frame-weighted means of the per-sequence values.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from avguide.errors import BadInputError
from avguide.metrics.geometry import check_indices
from avguide.speech.visemes import phoneme_to_viseme

TOL_S = 0.04
"""Tolerance (s) either side of a bilabial segment when looking for the closure."""
CLOSURE_FRAC = 0.1
"""Closure threshold as a fraction of the ground truth's opening range above its minimum."""
BAND = 0.1
"""Half-width of the mid-line band, as a fraction of the mouth width."""
N_INNER = 4
"""Vertices per lip whose heights define the opening."""
SUMMARY_KEYS = ("lip_motion_ratio", "opening_corr", "bilabial_closure", "bilabial_closure_gt",
                "open_vowel_aperture")
"""Keys of :func:`aggregate_articulation`'s metrics, in report order."""


def _vertices(x: Any, name: str) -> np.ndarray:
    """``x`` as a float64 (T, V, 3) array (torch tensors are detached to CPU)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if x.ndim != 3 or x.shape[-1] != 3 or x.shape[0] < 1:
        raise ValueError(f"{name}: expected vertices of shape (T, V, 3) with T >= 1, got {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"{name}: expected floating-point vertices, got dtype {x.dtype}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name}: contains NaN or inf")
    return x.astype(np.float64)


def _pair(pred: Any, gt: Any) -> tuple[np.ndarray, np.ndarray]:
    pred, gt = _vertices(pred, "pred"), _vertices(gt, "gt")
    if pred.shape != gt.shape:
        raise ValueError(f"pred and gt must have the same shape (T, V, 3), got {pred.shape} and "
                         f"{gt.shape} (cut both to the shorter length first, e.g. "
                         "avguide.metrics.evaluate.truncate_to_common_length)")
    return pred, gt


def _segments(phones: Iterable[Any]) -> list[tuple[str, float, float, str]]:
    """``(viseme class, start, end, ipa)`` of each non-silent phone, checked."""
    out = []
    for i, p in enumerate(phones):
        ipa, start, end = (p.ipa, p.start, p.end) if hasattr(p, "ipa") else tuple(p)[:3]
        start, end = float(start), float(end)
        if not (math.isfinite(start) and math.isfinite(end) and end >= start):
            raise ValueError(f"phones[{i}] = {ipa!r}: need finite start <= end, got {start}, {end}")
        if ipa == "_":
            continue
        try:
            out.append((phoneme_to_viseme(ipa), start, end, ipa))
        except ValueError as e:
            raise ValueError(f"phones[{i}]: {e}") from None
    return out


def _frames(n_frames: int, fps: float, start: float, end: float, tol: float) -> np.ndarray:
    """Indices of frames with ``start - tol <= k / fps <= end + tol`` (within [0, T))."""
    lo = max(0, math.ceil((start - tol) * fps - 1e-9))
    hi = min(n_frames - 1, math.floor((end + tol) * fps + 1e-9))
    return np.arange(lo, hi + 1)


def lip_motion_std(vertices: Any, lip_idx: Sequence[int] | np.ndarray) -> float:
    """Pooled temporal std of the lip vertices.

    Args:
        vertices: (T, V, 3) float sequence.
        lip_idx: (R,) lip vertex indices.
    Returns:
        ``sqrt(mean over lip vertices and xyz of the variance over time)`` (population
        variance, each coordinate about its own mean), in the vertices' unit.
    Raises:
        ValueError: bad shape, non-finite values or bad indices.
    """
    v = _vertices(vertices, "vertices")
    lips = check_indices(lip_idx, v.shape[1], "lip_idx")
    return float(np.sqrt(v[:, lips].var(axis=0).mean()))


def lip_motion_ratio(pred: Any, gt: Any, lip_idx: Sequence[int] | np.ndarray) -> float:
    """Lip motion of the prediction relative to the ground truth.

    Args:
        pred, gt: (T, V, 3) float sequences of equal shape.
        lip_idx: (R,) lip vertex indices.
    Returns:
        ``lip_motion_std(pred) / lip_motion_std(gt)`` (1 = as much motion as the truth; NaN if
        the ground truth's lips never move).
    Raises:
        ValueError: shapes differ, bad values or indices.
    """
    pred, gt = _pair(pred, gt)
    s_gt = lip_motion_std(gt, lip_idx)
    return lip_motion_std(pred, lip_idx) / s_gt if s_gt > 0 else float("nan")


def opening_vertices(reference: Any, lip_idx: Sequence[int] | np.ndarray,
                     upper_idx: Sequence[int] | np.ndarray, lower_idx: Sequence[int] | np.ndarray,
                     band: float = BAND, n_inner: int = N_INNER) -> tuple[np.ndarray, np.ndarray]:
    """The inner upper-lip and lower-lip vertices near the mid-line that define the opening.

    Args:
        reference: (V, 3) shape to select on (the subject's template, or a mean frame).
        lip_idx: (R,) the lips region (gives the mouth's centre and width along x).
        upper_idx, lower_idx: upper-lip and lower-lip vertex indices.
        band: half-width of the mid-line band as a fraction of the mouth width (> 0).
        n_inner: vertices kept per lip (>= 1); fewer if the band holds fewer.
    Returns:
        (upper (n,), lower (m,)) int64 indices: the lowest upper-lip and the highest lower-lip
        vertices (by y) within the band.
    Raises:
        ValueError: bad shapes, indices or parameters, or a lip with no vertex in the band.
    """
    ref = np.asarray(reference, dtype=np.float64)
    if ref.ndim != 2 or ref.shape[1] != 3:
        raise ValueError(f"reference: expected a (V, 3) shape, got {ref.shape}")
    if not band > 0 or int(n_inner) < 1:
        raise ValueError(f"band must be > 0 and n_inner >= 1, got {band}, {n_inner}")
    lips = check_indices(lip_idx, ref.shape[0], "lip_idx")
    x = ref[lips, 0]
    centre, width = 0.5 * (x.min() + x.max()), x.max() - x.min()
    chosen = []
    for name, idx, sign in (("upper_idx", upper_idx, 1.0), ("lower_idx", lower_idx, -1.0)):
        idx = check_indices(idx, ref.shape[0], name)
        near = idx[np.abs(ref[idx, 0] - centre) <= band * width]
        if near.size == 0:
            raise ValueError(f"{name}: no vertex within {band} x the mouth width of the mid-line "
                             f"(x = {centre:.4g}); wrong region or lateral axis?")
        order = np.argsort(sign * ref[near, 1], kind="stable")  # upper: lowest first; lower: highest
        chosen.append(near[order[:int(n_inner)]])
    return chosen[0], chosen[1]


def mouth_opening(vertices: Any, upper_sel: np.ndarray, lower_sel: np.ndarray) -> np.ndarray:
    """Mouth opening per frame (see the module docstring).

    Args:
        vertices: (T, V, 3) float sequence.
        upper_sel, lower_sel: vertex indices from :func:`opening_vertices`.
    Returns:
        (T,) float64 ``mean_y(upper_sel) - mean_y(lower_sel)`` in the vertices' unit
        (> 0 open, about 0 or below when the lips touch or press).
    """
    v = _vertices(vertices, "vertices")
    up = check_indices(upper_sel, v.shape[1], "upper_sel")
    lo = check_indices(lower_sel, v.shape[1], "lower_sel")
    return v[:, up, 1].mean(axis=1) - v[:, lo, 1].mean(axis=1)


def opening_correlation(pred_opening: Any, gt_opening: Any) -> float:
    """Pearson correlation over frames of two mouth-opening curves.

    Args:
        pred_opening, gt_opening: (T,) float curves of equal length.
    Returns:
        r in [-1, 1]; 0 when the prediction is constant; NaN when the ground truth is.
    Raises:
        ValueError: different lengths, fewer than 2 frames, or non-finite values.
    """
    p, g = np.asarray(pred_opening, np.float64), np.asarray(gt_opening, np.float64)
    if p.ndim != 1 or p.shape != g.shape or p.size < 2:
        raise ValueError(f"pred_opening and gt_opening must be (T,) curves of equal length "
                         f">= 2, got {p.shape} and {g.shape}")
    if not (np.isfinite(p).all() and np.isfinite(g).all()):
        raise ValueError("pred_opening / gt_opening: contain NaN or inf")
    p, g = p - p.mean(), g - g.mean()
    sp, sg = np.sqrt((p * p).mean()), np.sqrt((g * g).mean())
    if not sg > 0:
        return float("nan")
    if sp <= 1e-9 * sg:
        return 0.0
    return float(np.clip((p * g).mean() / (sp * sg), -1.0, 1.0))


def closure_threshold(gt_opening: Any, closure_frac: float = CLOSURE_FRAC) -> float:
    """Opening at or below which lips count as closed: ``min + closure_frac * (max - min)`` of
    the ground truth's (T,) opening curve (same unit)."""
    g = np.asarray(gt_opening, np.float64)
    return float(g.min() + closure_frac * (g.max() - g.min()))


def bilabial_closures(opening: Any, phones: Iterable[Any], fps: float, threshold: float,
                      tol_s: float = TOL_S) -> tuple[int, int]:
    """Count the bilabial (/p b m/) segments in which the lips close.

    Args:
        opening: (T,) mouth opening of the sequence judged.
        phones: timed phones ``(ipa, start_s, end_s)`` (or ``Phone``), silence ``"_"`` allowed.
        fps: frame rate (> 0); frame k shows time k / fps.
        threshold: closed when the minimum opening in the window is <= this (same unit).
        tol_s: window extension (s) before and after each segment (>= 0).
    Returns:
        (closed, segments): segments with at least one frame in the sequence, and how many of
        them reach the threshold.
    Raises:
        ValueError: fps <= 0, tol_s < 0, bad phones.
    """
    minima = bilabial_minima(opening, phones, fps, tol_s)
    return sum(m <= threshold for *_, m in minima), len(minima)


def bilabial_minima(opening: Any, phones: Iterable[Any], fps: float,
                    tol_s: float = TOL_S) -> list[tuple[str, float, float, float]]:
    """The smallest mouth opening within each bilabial (/p b m/) segment.

    Args:
        opening: (T,) mouth opening of the sequence judged.
        phones: timed phones ``(ipa, start_s, end_s)`` (or ``Phone``), silence ``"_"`` allowed.
        fps: frame rate (> 0); frame k shows time k / fps.
        tol_s: window extension (s) before and after each segment (>= 0).
    Returns:
        ``(ipa, start_s, end_s, min opening)`` of every segment with at least one frame in the
        window ``start - tol_s <= k / fps <= end + tol_s``, in order.
    Raises:
        ValueError: fps <= 0, tol_s < 0, bad phones.
    """
    o = np.asarray(opening, np.float64)
    if not fps > 0 or not tol_s >= 0:
        raise ValueError(f"fps must be > 0 and tol_s >= 0, got {fps}, {tol_s}")
    out = []
    for code, start, end, ipa in _segments(phones):
        k = _frames(o.shape[0], fps, start, end, tol_s) if code == "p" else ()
        if len(k):
            out.append((ipa, start, end, float(o[k].min())))
    return out


def open_vowel_frames(n_frames: int, phones: Iterable[Any], fps: float) -> np.ndarray:
    """Frames inside open-vowel (viseme class ``a``) segments: ``start <= k / fps <= end``, or
    the frame nearest the centre of a segment shorter than a frame. Returns (M,) int64 indices
    (a frame counted once per segment that holds it); segments past the last frame are skipped.

    Raises:
        ValueError: fps <= 0 or bad phones.
    """
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    out = []
    for code, start, end, _ in _segments(phones):
        if code != "a":
            continue
        k = _frames(n_frames, fps, start, end, 0.0)
        if k.size == 0:
            nearest = round(0.5 * (start + end) * fps)
            k = np.arange(nearest, nearest + 1) if 0 <= nearest < n_frames else k
        out.append(k)
    return np.concatenate(out).astype(np.int64) if out else np.zeros(0, np.int64)


def articulation_metrics(pred: Any, gt: Any, phones: Iterable[Any], fps: float,
                         lip_idx: Sequence[int] | np.ndarray, upper_idx: Sequence[int] | np.ndarray,
                         lower_idx: Sequence[int] | np.ndarray, template: Any = None, *,
                         tol_s: float = TOL_S, closure_frac: float = CLOSURE_FRAC,
                         band: float = BAND, n_inner: int = N_INNER) -> dict:
    """All articulation metrics of one sequence, with the sums that aggregation needs.

    Args:
        pred, gt: (T, V, 3) float sequences of equal shape (same unit).
        phones: the ground truth's timed phones ``(ipa, start_s, end_s)``.
        fps: frame rate of both sequences (frame k shows time k / fps).
        lip_idx, upper_idx, lower_idx: lips, upper-lip and lower-lip vertex indices.
        template: optional (V, 3) subject template to select the opening vertices on (default:
            the ground truth's mean over time).
        tol_s, closure_frac, band, n_inner: see the module docstring.
    Returns:
        {"frames", "lip_motion_ratio", "opening_corr", "bilabial_closure" (NaN without
        bilabials), "bilabial_closure_gt", "open_vowel_aperture" (NaN without open vowels),
        and the raw parts "lip_var_pred", "lip_var_gt" (pooled variances), "bilabial_segments",
        "bilabial_closed", "bilabial_closed_gt", "open_vowel_frames", "open_vowel_pred_sum",
        "open_vowel_gt_sum", "closure_threshold"}.
    Raises:
        ValueError: shapes differ, bad values, indices, phones or parameters.
    """
    pred, gt = _pair(pred, gt)
    lips = check_indices(lip_idx, gt.shape[1], "lip_idx")
    reference = gt.mean(axis=0) if template is None else np.asarray(template, np.float64)
    if reference.shape != gt.shape[1:]:
        raise ValueError(f"template: expected shape {gt.shape[1:]}, got {reference.shape}")
    up, lo = opening_vertices(reference, lips, upper_idx, lower_idx, band, n_inner)
    o_pred, o_gt = mouth_opening(pred, up, lo), mouth_opening(gt, up, lo)  # (T,), (T,)
    var_pred = float(pred[:, lips].var(axis=0).mean())
    var_gt = float(gt[:, lips].var(axis=0).mean())
    thr = closure_threshold(o_gt, closure_frac)
    closed, segs = bilabial_closures(o_pred, phones, fps, thr, tol_s)
    closed_gt, _ = bilabial_closures(o_gt, phones, fps, thr, tol_s)
    k = open_vowel_frames(gt.shape[0], phones, fps)
    pred_sum, gt_sum = float(o_pred[k].sum()), float(o_gt[k].sum())
    nan = float("nan")
    return {
        "frames": int(gt.shape[0]),
        "lip_motion_ratio": math.sqrt(var_pred / var_gt) if var_gt > 0 else nan,
        "opening_corr": opening_correlation(o_pred, o_gt) if gt.shape[0] >= 2 else nan,
        "bilabial_closure": closed / segs if segs else nan,
        "bilabial_closure_gt": closed_gt / segs if segs else nan,
        "open_vowel_aperture": pred_sum / gt_sum if k.size and gt_sum > 0 else nan,
        "lip_var_pred": var_pred, "lip_var_gt": var_gt,
        "bilabial_segments": segs, "bilabial_closed": closed, "bilabial_closed_gt": closed_gt,
        "open_vowel_frames": int(k.size), "open_vowel_pred_sum": pred_sum,
        "open_vowel_gt_sum": gt_sum, "closure_threshold": thr,
    }


def articulation_without_truth(vertices: Any, phones: Iterable[Any], fps: float,
                               lip_idx: Sequence[int] | np.ndarray, upper_idx: Sequence[int] | np.ndarray,
                               lower_idx: Sequence[int] | np.ndarray, template: Any, *,
                               tol_s: float = TOL_S, closure_frac: float = CLOSURE_FRAC,
                               band: float = BAND, n_inner: int = N_INNER) -> dict:
    """How one animation articulates its own phones, without a ground truth (speech of your own).

    The face at rest (``template``) is the reference: lips at rest touch. With ``a_t = o_t -
    o_rest`` the opening above rest and ``w = max(0, max_t a_t)`` the widest opening:

    * a bilabial segment closes when its minimum opening (window ``tol_s`` either side) is at
      most ``o_rest + closure_frac * w``: back to rest within 10 % of the animation's own widest
      opening (the ground-truth rule of :func:`closure_threshold`, with the rest shape in place
      of the ground truth's tightest closure);
    * the open-vowel opening is the mean ``a_t`` over open-vowel frames (as
      :func:`open_vowel_frames`), in the vertices' unit.

    A face that never moves closes every bilabial and opens no vowel: read the closure rate
    together with the open-vowel opening.

    Args:
        vertices: (T, V, 3) float animation.
        phones: its timed phones ``(ipa, start_s, end_s)`` (or ``Phone``), e.g. from
            :func:`avguide.speech.align.align_transcript`.
        fps: frame rate (frame k shows time k / fps).
        lip_idx, upper_idx, lower_idx: lips, upper-lip and lower-lip vertex indices.
        template: (V, 3) the face at rest (also where the opening vertices are selected).
        tol_s, closure_frac, band, n_inner: see the module docstring.
    Returns:
        {"frames", "fps", "rest_opening", "widest_opening", "closure_threshold",
        "bilabial_closure" (NaN without bilabials), "bilabial_closed", "bilabial_segments",
        "open_vowel_opening" (NaN without open vowels), "open_vowel_frames", "segments": one
        {"phone", "start", "end", "min_opening", "closed"} per bilabial}; lengths in the vertices'
        unit, "rest_opening" absolute and the others above rest.
    Raises:
        ValueError: bad shapes, values, indices, phones or parameters.
    """
    v = _vertices(vertices, "vertices")
    rest = _vertices(np.asarray(template, np.float64)[None], "template")[0]  # (V, 3)
    if rest.shape != v.shape[1:]:
        raise ValueError(f"template: expected shape {v.shape[1:]}, got {rest.shape}")
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    lips = check_indices(lip_idx, v.shape[1], "lip_idx")
    up, lo = opening_vertices(rest, lips, upper_idx, lower_idx, band, n_inner)
    o_rest = float(mouth_opening(rest[None], up, lo)[0])
    above = mouth_opening(v, up, lo) - o_rest  # (T,) opening above rest
    widest = max(0.0, float(above.max()))
    thr = closure_frac * widest
    minima = bilabial_minima(above, phones, fps, tol_s)
    closed = [m <= thr for *_, m in minima]
    k = open_vowel_frames(v.shape[0], phones, fps)
    nan = float("nan")
    return {
        "frames": int(v.shape[0]), "fps": float(fps), "rest_opening": o_rest, "widest_opening": widest,
        "closure_threshold": thr,
        "bilabial_closure": sum(closed) / len(closed) if closed else nan,
        "bilabial_closed": int(sum(closed)), "bilabial_segments": len(closed),
        "open_vowel_opening": float(above[k].mean()) if k.size else nan, "open_vowel_frames": int(k.size),
        "segments": [{"phone": ipa, "start": start, "end": end, "min_opening": m, "closed": bool(c)}
                     for (ipa, start, end, m), c in zip(minima, closed)],
    }


def aggregate_articulation(rows: Iterable[dict]) -> dict:
    """Pool the per-sequence results of :func:`articulation_metrics`.

    * ``lip_motion_ratio``: ``sqrt(sum_s T_s var_pred_s / sum_s T_s var_gt_s)`` (frame-weighted
      pooled variances).
    * ``opening_corr``: frame-weighted mean of the finite per-sequence correlations.
    * ``bilabial_closure`` / ``bilabial_closure_gt``: closed segments / all bilabial segments
      (segment-weighted); the latter is the ceiling.
    * ``open_vowel_aperture``: sum of the predicted openings over all open-vowel frames / the
      same sum for the ground truth (frame-weighted).

    Args:
        rows: dicts returned by :func:`articulation_metrics`.
    Returns:
        {the :data:`SUMMARY_KEYS` (NaN where nothing counts), "sequences", "frames",
        "bilabial_segments", "open_vowel_frames"}.
    Raises:
        ValueError: no rows, or a row without the needed keys.
    """
    rows = list(rows)
    if not rows:
        raise ValueError("rows: need at least one sequence")
    need = ("frames", "lip_var_pred", "lip_var_gt", "opening_corr", "bilabial_segments",
            "bilabial_closed", "bilabial_closed_gt", "open_vowel_frames", "open_vowel_pred_sum",
            "open_vowel_gt_sum")
    for i, r in enumerate(rows):
        missing = [k for k in need if k not in r]
        if missing:
            raise ValueError(f"rows[{i}]: missing {', '.join(missing)} (not from articulation_metrics?)")
    frames = np.array([r["frames"] for r in rows], np.float64)
    var_pred = float((frames * [r["lip_var_pred"] for r in rows]).sum())
    var_gt = float((frames * [r["lip_var_gt"] for r in rows]).sum())
    corr = np.array([r["opening_corr"] for r in rows], np.float64)
    ok = np.isfinite(corr)
    segs = sum(r["bilabial_segments"] for r in rows)
    gt_sum = sum(r["open_vowel_gt_sum"] for r in rows)
    n_open = sum(r["open_vowel_frames"] for r in rows)
    nan = float("nan")
    return {
        "lip_motion_ratio": math.sqrt(var_pred / var_gt) if var_gt > 0 else nan,
        "opening_corr": float((frames[ok] * corr[ok]).sum() / frames[ok].sum()) if ok.any() else nan,
        "bilabial_closure": sum(r["bilabial_closed"] for r in rows) / segs if segs else nan,
        "bilabial_closure_gt": sum(r["bilabial_closed_gt"] for r in rows) / segs if segs else nan,
        "open_vowel_aperture": (sum(r["open_vowel_pred_sum"] for r in rows) / gt_sum
                                if n_open and gt_sum > 0 else nan),
        "sequences": len(rows), "frames": int(frames.sum()), "bilabial_segments": int(segs),
        "open_vowel_frames": int(n_open),
    }


def articulation_of_split(pred_dir: str | Path, data_root: str | Path, split: str = "test") -> dict:
    """The pooled articulation metrics of a folder of predictions against a synthetic-layout split
    (its ``alignments/`` give the timed phones, ``regions/`` the lips).

    Args:
        pred_dir: ``<name>.npy`` predictions, (T, V*3) or (T, V, 3), for every recording of the split.
        data_root: the dataset. split: which split.
    Returns:
        :func:`aggregate_articulation` of every recording (prediction and ground truth cut to the
        shorter length).
    Raises:
        MissingFileError / BadInputError: a missing prediction or alignment, no lip regions.
    """
    from avguide.data.layouts import open_dataset
    from avguide.data.samples import load_phones, load_vertices

    index = open_dataset(data_root)
    missing = [r for r in ("lips", "upper_lip", "lower_lip") if r not in index.regions]
    if missing:
        raise BadInputError(f"{data_root}: articulation metrics need the regions {missing} (regions/*.txt)")
    rows = []
    for ref in index.split(split):
        pred = load_vertices(Path(pred_dir) / f"{ref.name}.npy", index.n_vertices)
        gt = load_vertices(ref.vertices, index.n_vertices, index.stride)
        n = min(len(pred), len(gt))
        phones = load_phones(Path(data_root) / "alignments" / f"{ref.name}.json")
        rows.append(articulation_metrics(pred[:n], gt[:n], phones, index.fps, index.regions["lips"],
                                         index.regions["upper_lip"], index.regions["lower_lip"],
                                         index.templates[ref.subject]))
    return aggregate_articulation(rows)
