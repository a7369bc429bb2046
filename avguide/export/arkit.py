"""ARKit blendshape weights from predicted vertices, and the files that carry them.

:func:`solve_arkit` fits, per frame, the 52 ARKit weights in [0, 1] whose blendshape mix best
reproduces an animator's vertices (bounded least squares); :func:`write_arkit_csv` writes them in
the layout of Epic's Live Link Face app (which Unreal imports), :func:`read_arkit_csv` reads that
layout back, and :func:`write_arkit_json` writes a plain JSON with the fit's error.

The rig is ``vertices[t] = template + sum_k w[t, k] * blendshapes[k]`` (as in
:mod:`avguide.synth.rig`); columns of every weight array follow
:data:`avguide.assets.arkit.ARKIT_NAMES`.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import avguide
from avguide.assets.arkit import ARKIT_NAMES
from avguide.errors import BadInputError, MissingFileError
from avguide.export.boxqp import solve_box_qp
from avguide.export.checks import (check_finite, check_fps, check_mesh, check_vertices,
                                   check_weights)
from avguide.io import write_text_atomic

CHUNK_FRAMES = 256
"""Frames reduced at once by :func:`solve_arkit`: float64 work arrays of CHUNK_FRAMES x V x 3
(26 MB each for the head), whatever the sequence length."""
MIN_CONDITION = 1e-12
"""Smallest accepted ratio of the blendshape Gram matrix's extreme eigenvalues (the head's is
6e-5); below it the blendshapes count as linearly dependent."""


@dataclass(frozen=True, eq=False)
class ArkitFit:
    """ARKit weights fitted to a vertex sequence, and how well they reproduce it.

    Attributes:
        weights: (T, 52) float32 weights in [0, 1], columns in ARKit order.
        rms_error_mm: root mean square over frames and vertices of the distance (mm) between
            the input vertices and ``template + weights @ blendshapes``.
        max_error_mm: the largest such per-vertex distance (mm) over all frames.
        relative_error: residual norm / motion norm, both Frobenius over all frames, where the
            motion is ``vertices - template`` (0 when there is no motion at all).
        iterations: the most projected Newton steps a frame's bounded fit took (0: every
            unconstrained fit already lay in [0, 1]).
    """

    weights: np.ndarray
    rms_error_mm: float
    max_error_mm: float
    relative_error: float
    iterations: int

    def reconstruction(self) -> dict[str, float]:
        """The error figures as a JSON-ready dict (the ``reconstruction`` entry of the JSON)."""
        return {"rms_error_mm": self.rms_error_mm, "max_error_mm": self.max_error_mm,
                "relative_error": self.relative_error}


def solve_arkit(vertices: Any, template: Any, blendshapes: Any, *,
                chunk_frames: int = CHUNK_FRAMES, tol: float = 1e-10) -> ArkitFit:
    """Per-frame ARKit weights by bounded least squares on the 52 blendshapes.

    For every frame t, exactly (to round-off) solves::

        minimise ||(vertices[t] - template) - sum_k w_k blendshapes[k]||^2  s.t.  0 <= w_k <= 1

    The (V*3)-row problem is reduced once to its 52x52 Gram matrix; the frames, in chunks of
    ``chunk_frames``, are reduced to 52-vectors in float64 and their 52-dimensional box QPs
    solved together (:func:`avguide.export.boxqp.solve_box_qp`, projected Newton to a KKT
    violation <= ``tol``). Memory stays bounded by the chunk, not the sequence length.

    Args:
        vertices: (T, V, 3) or (T, V*3) predicted vertices in metres (numpy array or torch
            tensor, any float dtype), T >= 1.
        template: (V, 3) the subject's neutral face (metres).
        blendshapes: (52, V, 3) ARKit deltas at weight 1 in ARKit order
            (``avguide.assets.head.load_head().blendshapes``).
        chunk_frames: frames reduced at once (memory: about 3 x chunk_frames x V x 3 float64).
        tol: KKT tolerance of each frame's fit (units of weight).
    Returns:
        :class:`ArkitFit` with (T, 52) float32 weights and the reconstruction error of those
        (float32) weights.
    Raises:
        ValueError: a shape does not match, T = 0, a value is NaN/inf, ``chunk_frames`` < 1,
            or the 52 blendshapes are linearly dependent (the weights would not be unique).
    """
    where = "solve_arkit"
    t, bs = check_mesh(where, template, blendshapes, n_shapes=len(ARKIT_NAMES))
    v = check_vertices(where, vertices, t.shape[0])                    # (T, V*3) view
    if int(chunk_frames) < 1:
        raise ValueError(f"{where}: chunk_frames must be >= 1, got {chunk_frames}")
    d64 = bs.reshape(len(ARKIT_NAMES), -1).astype(np.float64)           # (52, V*3)
    gram = d64 @ d64.T                                                  # (52, 52)
    eig = np.linalg.eigvalsh(gram)                                      # ascending
    if not eig[0] > MIN_CONDITION * eig[-1]:
        raise ValueError(f"{where}: the 52 blendshapes are linearly dependent (numerical rank "
                         f"{int((eig > MIN_CONDITION * eig[-1]).sum())}), so the weights are "
                         "not unique")
    t64 = t.reshape(-1).astype(np.float64)                              # (V*3,)
    n_frames, n_vert = v.shape[0], t.shape[0]
    weights = np.empty((n_frames, len(ARKIT_NAMES)), dtype=np.float32)
    sq_err = motion = 0.0
    max_err2 = 0.0
    iterations = 0
    for start in range(0, n_frames, int(chunk_frames)):
        stop = min(start + int(chunk_frames), n_frames)
        chunk = v[start:stop]
        if not np.isfinite(chunk).all():
            check_finite(where, f"vertices[{start}:{stop}]", chunk)
        motion_c = np.subtract(chunk, t64, dtype=np.float64)            # (C, V*3)
        fit = solve_box_qp(gram, motion_c @ d64.T, 0.0, 1.0, tol=tol)    # b: (C, 52)
        iterations = max(iterations, fit.iterations)
        w = fit.x.astype(np.float32)                                    # (C, 52)
        weights[start:stop] = w
        motion += float(np.einsum("ij,ij->", motion_c, motion_c))
        motion_c -= w.astype(np.float64) @ d64                          # residual, in place
        residual = motion_c.reshape(-1, n_vert, 3)                      # (C, V, 3)
        err2 = np.einsum("cvk,cvk->cv", residual, residual)             # (C, V) squared m
        sq_err += float(err2.sum())
        max_err2 = max(max_err2, float(err2.max()))
    return ArkitFit(
        weights=weights,
        rms_error_mm=1e3 * math.sqrt(sq_err / (n_frames * n_vert)),
        max_error_mm=1e3 * math.sqrt(max_err2),
        relative_error=math.sqrt(sq_err / motion) if motion > 0 else 0.0,
        iterations=iterations,
    )


# --------------------------------------------------------------------------- Live Link Face CSV

# Live Link Face's CSV layout, as matched in public importers that parse the app's exports:
# nmfisher/blender_livelinkface (bpylivelinkface.py, LIVE_LINK_FACE_HEADER) and the Unreal
# plugin J-Andersen-UvA/LiveLinkFaceCSVWriter (Timecode formatted "%02d:%02d:%02d:%02d.%03d").
# The header is "Timecode,BlendShapeCount," then the 52 ARKit names capitalised, in ARKit order
# except that the app lists JawRight before JawLeft and MouthRight before MouthLeft, then nine
# rotations HeadYaw,HeadPitch,HeadRoll,LeftEyeYaw,LeftEyePitch,LeftEyeRoll,RightEyeYaw,
# RightEyePitch,RightEyeRoll; BlendShapeCount is 61 (52 + 9) on every row.
_SWAPPED = {"jawLeft": "jawRight", "jawRight": "jawLeft",
            "mouthLeft": "mouthRight", "mouthRight": "mouthLeft"}
LIVE_LINK_SHAPES: tuple[str, ...] = tuple(
    _SWAPPED.get(n, n)[0].upper() + _SWAPPED.get(n, n)[1:] for n in ARKIT_NAMES)
"""The 52 blendshape column names of a Live Link Face CSV, in the app's column order."""
LIVE_LINK_ROTATIONS = ("HeadYaw", "HeadPitch", "HeadRoll", "LeftEyeYaw", "LeftEyePitch",
                       "LeftEyeRoll", "RightEyeYaw", "RightEyePitch", "RightEyeRoll")
"""The 9 head / eye rotation columns after the blendshapes (avguide writes 0: no head motion)."""
LIVE_LINK_COUNT = len(LIVE_LINK_SHAPES) + len(LIVE_LINK_ROTATIONS)   # 61
_CSV_ORDER = np.array([ARKIT_NAMES.index(_SWAPPED.get(n, n)) for n in ARKIT_NAMES])
"""ARKit column of each Live Link Face blendshape column."""
_TIMECODE = re.compile(r"^(\d+):(\d{1,2}):(\d{1,2}):(\d+)(?:\.(\d+))?$")


def _timecodes(n_frames: int, fps: float) -> list[str]:
    """``HH:MM:SS:FF.fff`` of frames 0..n-1 (time i / fps from 00:00:00:00).

    FF counts frames of the nominal rate ``ceil(fps)`` and ``.fff`` is the sub-frame in
    thousandths of a frame (always ``.000`` for an integer rate, the usual 25 / 30 / 60).
    """
    nominal = math.ceil(fps - 1e-9)
    i = np.arange(n_frames)
    if float(fps).is_integer():
        sec, ff = np.divmod(i, nominal)
        sub = np.zeros(n_frames, dtype=np.int64)
    else:
        t = i / fps
        sec = np.floor(t + 1e-12).astype(np.int64)
        frame = np.maximum(t - sec, 0.0) * nominal                       # frames into the second
        ff = np.floor(frame + 1e-9).astype(np.int64)
        sub = np.minimum(np.round((frame - ff) * 1000).astype(np.int64), 999)
    hh, rem = np.divmod(sec, 3600)
    mm, ss = np.divmod(rem, 60)
    return [f"{a:02d}:{b:02d}:{c:02d}:{e:02d}.{s:03d}"
            for a, b, c, e, s in zip(hh.tolist(), mm.tolist(), ss.tolist(), ff.tolist(), sub.tolist())]


def write_arkit_csv(path: str | os.PathLike, weights: Any, fps: float) -> Path:
    """Write weights as a Live Link Face CSV (what Epic's iPhone app exports; Unreal imports it).

    One row per frame: ``Timecode`` (``HH:MM:SS:FF.fff`` from 00:00:00:00.000), ``BlendShapeCount``
    (61), the 52 weights with 8 decimals in the app's column order (:data:`LIVE_LINK_SHAPES`),
    then 9 head / eye rotations written as 0. Written atomically.

    Args:
        path: the .csv to write (parent directories are created).
        weights: (T, 52) weights in ARKit order, T >= 1 (any finite values; ARKit uses [0, 1]).
        fps: frame rate (> 0) of the rows' timecodes.
    Returns:
        ``path`` as a Path.
    Raises:
        ValueError: weights not (T, 52), T = 0, NaN/inf, or fps not a finite number > 0.
    """
    w = check_weights("write_arkit_csv", weights, len(ARKIT_NAMES))
    rate = check_fps("write_arkit_csv", fps)
    header = ",".join(("Timecode", "BlendShapeCount") + LIVE_LINK_SHAPES + LIVE_LINK_ROTATIONS)
    row = "%s," + str(LIVE_LINK_COUNT) + ",%.8f" * len(LIVE_LINK_SHAPES) + ",0" * len(LIVE_LINK_ROTATIONS)
    cols = w[:, _CSV_ORDER].astype(np.float64).tolist()                # (T, 52) app order
    lines = [row % (tc, *r) for tc, r in zip(_timecodes(len(w), rate), cols)]
    write_text_atomic(path, header + "\n" + "\n".join(lines) + "\n")
    return Path(path)


def _infer_fps(path: Path, seconds: np.ndarray, frames: np.ndarray, ff: np.ndarray) -> float:
    """The frame rate of rows with timecodes ``seconds`` (whole) and ``frames`` (FF.fff)."""
    if len(seconds) < 2 or seconds.max() == seconds.min():
        raise BadInputError(f"{path}: cannot infer the frame rate from timecodes that do not cross "
                            "a second boundary; pass fps=")
    nominal = int(ff.max()) + 1                                          # FF runs 0..rate-1
    times = seconds + frames / nominal
    if np.all(frames == ff) and np.all(np.diff(times) > 0) and np.allclose(
            np.diff(times), 1.0 / nominal, rtol=0, atol=1e-6):
        return float(nominal)                                           # integer rate, no gaps
    span = times[-1] - times[0]
    if span <= 0:
        raise BadInputError(f"{path}: timecodes do not increase; pass fps=")
    return float((len(times) - 1) / span)                               # mean rate of the rows


def read_arkit_csv(path: str | os.PathLike, fps: float | None = None) -> tuple[np.ndarray, float]:
    """Read a Live Link Face CSV (written by :func:`write_arkit_csv` or by the app).

    Blendshape columns are found by name (case-insensitive, any order); rotation and unknown
    columns are ignored. Rows are taken as consecutive frames.

    Args:
        path: the .csv.
        fps: the frame rate, or None to infer it from the timecodes: the nominal rate (largest
            FF + 1) when every row is one frame after the previous, else the mean rate of the
            rows. Inference needs rows spanning a second boundary.
    Returns:
        ``(weights, fps)``: (T, 52) float32 weights in ARKit order, and the frame rate.
    Raises:
        MissingFileError: ``path`` does not exist.
        BadInputError: no header, a blendshape column missing, a row of the wrong length, a value
            or timecode that does not parse, no rows, or fps not inferable / not > 0.
    """
    p = Path(path)
    if not p.is_file():
        raise MissingFileError(f"{p}: Live Link Face CSV not found")
    lines = [ln for ln in p.read_text(encoding="utf-8-sig").splitlines() if ln.strip()]
    if not lines:
        raise BadInputError(f"{p}: empty file, expected a Live Link Face CSV header")
    header = [h.strip() for h in lines[0].split(",")]
    lower = {h.lower(): i for i, h in enumerate(header)}
    missing = [n for n in ARKIT_NAMES if n.lower() not in lower]
    if "timecode" not in lower or missing:
        raise BadInputError(f"{p}: not a Live Link Face CSV: header lacks "
                            f"{(['Timecode'] if 'timecode' not in lower else []) + missing[:5]}"
                            f"{' ...' if len(missing) > 5 else ''}")
    if len(lines) < 2:
        raise BadInputError(f"{p}: no frames after the header")
    rows = [ln.split(",") for ln in lines[1:]]
    bad = next((i for i, r in enumerate(rows) if len(r) != len(header)), None)
    if bad is not None:
        raise BadInputError(f"{p}: line {bad + 2} has {len(rows[bad])} fields, the header "
                            f"{len(header)}")
    cols = [lower[n.lower()] for n in ARKIT_NAMES]
    try:
        weights = np.array([[r[c] for c in cols] for r in rows], dtype=np.float64)
    except ValueError as e:
        raise BadInputError(f"{p}: a blendshape value is not a number ({e})") from None
    check_finite(str(p), "the weights", weights)
    if fps is not None:
        return weights.astype(np.float32), check_fps(f"read_arkit_csv({p})", fps)
    tc_col = lower["timecode"]
    parsed = [_TIMECODE.match(r[tc_col].strip()) for r in rows]
    bad = next((i for i, m in enumerate(parsed) if m is None), None)
    if bad is not None:
        raise BadInputError(f"{p}: line {bad + 2}: timecode {rows[bad][tc_col]!r} is not "
                            "HH:MM:SS:FF[.fff]")
    hms = np.array([[int(m[1]), int(m[2]), int(m[3])] for m in parsed], dtype=np.int64)
    seconds = hms @ np.array([3600, 60, 1])
    frames = np.array([float(f"{m[4]}.{m[5] or 0}") for m in parsed])
    ff = np.array([int(m[4]) for m in parsed])
    return weights.astype(np.float32), _infer_fps(p, seconds.astype(np.float64), frames, ff)


# --------------------------------------------------------------------------- JSON

def write_arkit_json(path: str | os.PathLike, weights: Any, fps: float,
                     fit: ArkitFit | None = None) -> Path:
    """Write weights as JSON: ``{"avguide_version", "fps", "names", "reconstruction", "weights"}``.

    ``names`` are the 52 ARKit names in order, ``weights`` one list of 52 numbers per frame
    (rounded to 1e-6, one frame per line), ``reconstruction`` the fit's
    :meth:`ArkitFit.reconstruction` (null without ``fit``). Written atomically.

    Args:
        path: the .json to write (parent directories are created).
        weights: (T, 52) weights in ARKit order, T >= 1.
        fps: frame rate (> 0).
        fit: the :class:`ArkitFit` the weights came from, for its error figures, or None.
    Returns:
        ``path`` as a Path.
    Raises:
        ValueError: weights not (T, 52), T = 0, NaN/inf, or fps not a finite number > 0.
    """
    w = check_weights("write_arkit_json", weights, len(ARKIT_NAMES))
    rate = check_fps("write_arkit_json", fps)
    head = {"avguide_version": avguide.__version__, "fps": rate, "names": list(ARKIT_NAMES),
            "reconstruction": fit.reconstruction() if fit is not None else None}
    parts = [f"  {json.dumps(k)}: {json.dumps(val)}" for k, val in head.items()]
    rows = ",\n".join("    " + json.dumps(r) for r in np.round(w.astype(np.float64), 6).tolist())
    text = "{\n" + ",\n".join(parts) + ',\n  "weights": [\n' + rows + "\n  ]\n}\n"
    write_text_atomic(path, text)
    return Path(path)
