"""Geometric metrics of predicted vertex sequences against ground truth: LVE, MVE, FDD.

All functions are stateless numpy primitives. Inputs may be float32/float64 numpy arrays (or
CPU torch tensors); errors are accumulated in float64. Units follow the input: vertex
coordinates in metres (VOCASET, the synthetic benchmark) give LVE and FDD in m^2 and MVE in m.
The literature prints LVE "x 1e-5" for VOCASET and "x 1e-4" for BIWI (i.e. the value divided by
that power of ten); :mod:`avguide.metrics.evaluate` keeps raw values and scales only for display.

Exact definitions (T frames, V vertices, x prediction, y ground truth, tau template (V,3)):

* **LVE** (lip vertex error): ``e_t = max_{v in lips} ||x_tv - y_tv||^2`` (squared L2, per
  frame), then the mean of ``e_t`` over frames.
* **MVE** (mean vertex error): mean over frames and all vertices of ``||x_tv - y_tv||`` (L2, not
  squared).
* **FDD** (upper-face dynamics deviation, CodeTalker, CVPR 2023): per upper-face vertex
  ``m_tv = ||x_tv - tau_v||^2`` (the *squared* norm of the displacement from the template;
  CodeTalker's ``cal_metric.py`` names it ``L2_dis_upper`` but sums the squared coordinates
  without a square root), ``sigma_v = std_t(m_tv)`` (population std, ``ddof=0`` as
  ``np.std``), ``motion_std = mean_{v in upper} sigma_v``, and
  ``FDD = motion_std(y) - motion_std(x)`` (signed: positive = prediction moves the upper face
  less than ground truth). The dataset-level FDD is the mean over sequences; |FDD| is reported
  beside it by the evaluator. This reproduces CodeTalker's formula; the one deviation is that
  CodeTalker truncates only the prediction to the ground-truth length, while avguide truncates
  both to the shorter (see :func:`avguide.metrics.evaluate.reconcile_lengths`).
"""

from __future__ import annotations

from typing import Any

import numpy as np



def _as_vertices(x: Any, name: str) -> np.ndarray:
    """Return ``x`` as a numpy array of shape (..., V, 3); torch tensors are detached to CPU."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if x.ndim < 2 or x.shape[-1] != 3:
        raise ValueError(f"{name}: expected vertices of shape (..., V, 3), got {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"{name}: expected floating-point vertices, got dtype {x.dtype}")
    return x


def _check_pair(pred: Any, gt: Any) -> tuple[np.ndarray, np.ndarray]:
    """Convert and check that ``pred`` and ``gt`` have the same (..., V, 3) shape."""
    pred = _as_vertices(pred, "pred")
    gt = _as_vertices(gt, "gt")
    if pred.shape != gt.shape:
        raise ValueError(f"pred and gt must have the same shape, got {pred.shape} and "
                         f"{gt.shape} (truncate to a common length first)")
    return pred, gt


def check_indices(idx: Any, n_vertices: int, name: str) -> np.ndarray:
    """Validate a vertex index array (a region such as the lips or the upper face).

    Args:
        idx: 1-D integer sequence of vertex indices.
        n_vertices: V of the mesh the indices address.
        name: argument name used in the error message.
    Returns:
        (R,) int64 array.
    Raises:
        ValueError: empty, not 1-D, not integer, or any index outside [0, V).
    """
    arr = np.asarray(idx)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name}: expected a non-empty 1-D array of vertex indices, "
                         f"got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name}: vertex indices must be integers, got dtype {arr.dtype}")
    if arr.min() < 0 or arr.max() >= n_vertices:
        raise ValueError(f"{name}: vertex indices must lie in [0, {n_vertices}), got range "
                         f"[{arr.min()}, {arr.max()}]")
    return arr.astype(np.int64)


def lip_max_sq_error(pred: Any, gt: Any, lip_idx: Any) -> np.ndarray:
    """Per-frame lip error: max over lip vertices of the squared L2 vertex error.

    Args:
        pred: (..., V, 3) predicted vertices (e.g. (T, V, 3) or (B, T, V, 3)).
        gt: (..., V, 3) ground-truth vertices, same shape.
        lip_idx: (R,) integer indices of the lip vertices.
    Returns:
        (...) float64 array, squared input units (m^2 for metres); one value per frame.
    Raises:
        ValueError: shapes differ, not (..., V, 3), or indices out of range.
    """
    pred, gt = _check_pair(pred, gt)
    idx = check_indices(lip_idx, pred.shape[-2], "lip_idx")
    diff = pred[..., idx, :].astype(np.float64) - gt[..., idx, :]  # (..., R, 3)
    return np.max(np.sum(diff * diff, axis=-1), axis=-1)  # (...)


def lve(pred: Any, gt: Any, lip_idx: Any) -> float:
    """Lip vertex error of one sequence: mean over frames of :func:`lip_max_sq_error`.

    Args:
        pred: (T, V, 3) predicted vertices.
        gt: (T, V, 3) ground-truth vertices (same T; see ``reconcile_lengths``).
        lip_idx: (R,) integer lip vertex indices.
    Returns:
        LVE in squared input units (m^2 for metres) as a Python float.
    Raises:
        ValueError: as :func:`lip_max_sq_error`, or T == 0.

    Example:
        >>> gt = np.zeros((2, 3, 3)); pred = gt.copy(); pred[:, 0, 0] = [1.0, 3.0]
        >>> lve(pred, gt, [0, 1])  # frames: max(1, 0) and max(9, 0)
        5.0
    """
    per_frame = lip_max_sq_error(pred, gt, lip_idx)
    if per_frame.size == 0:
        raise ValueError("lve: the sequences have no frames")
    return float(per_frame.mean())


def vertex_l2_error(pred: Any, gt: Any) -> np.ndarray:
    """Per-frame mean over all vertices of the L2 (not squared) vertex error.

    Args:
        pred: (..., V, 3) predicted vertices.
        gt: (..., V, 3) ground-truth vertices, same shape.
    Returns:
        (...) float64 array in input units (m for metres).
    Raises:
        ValueError: shapes differ or are not (..., V, 3).
    """
    pred, gt = _check_pair(pred, gt)
    diff = pred.astype(np.float64) - gt  # (..., V, 3)
    return np.sqrt(np.sum(diff * diff, axis=-1)).mean(axis=-1)  # (...)


def mve(pred: Any, gt: Any) -> float:
    """Mean vertex error of one sequence: mean over frames and vertices of the L2 error.

    Args:
        pred: (T, V, 3) predicted vertices.
        gt: (T, V, 3) ground-truth vertices.
    Returns:
        MVE in input units (m for metres).
    Raises:
        ValueError: as :func:`vertex_l2_error`, or T == 0.
    """
    per_frame = vertex_l2_error(pred, gt)
    if per_frame.size == 0:
        raise ValueError("mve: the sequences have no frames")
    return float(per_frame.mean())


def _mean_valid_frames(per_frame: np.ndarray, lengths: Any | None) -> float:
    """Mean of (B, T) per-frame values over the first ``lengths[b]`` frames of each row."""
    if per_frame.ndim != 2:
        raise ValueError(f"expected batched vertices (B, T, V, 3), got per-frame shape "
                         f"{per_frame.shape}")
    n_seq, n_frames = per_frame.shape
    if lengths is None:
        lengths = np.full(n_seq, n_frames)
    lengths = np.asarray(lengths)
    if lengths.shape != (n_seq,) or lengths.min(initial=1) < 1 or lengths.max(initial=0) > n_frames:
        raise ValueError(f"lengths: expected {n_seq} integers in [1, {n_frames}], got {lengths}")
    valid = np.arange(n_frames)[None, :] < lengths[:, None]  # (B, T)
    return float(per_frame[valid].mean())


def lve_batch(pred: Any, gt: Any, lip_idx: Any, lengths: Any | None = None) -> float:
    """LVE pooled over all valid frames of a padded batch (every frame weighs the same).

    Args:
        pred: (B, T, V, 3) predicted vertices, padded along T.
        gt: (B, T, V, 3) ground-truth vertices, padded the same way.
        lip_idx: (R,) integer lip vertex indices.
        lengths: optional (B,) valid frame counts (default: all T frames are valid).
    Returns:
        Mean of :func:`lip_max_sq_error` over the valid frames, squared input units.
    Raises:
        ValueError: bad shapes, indices or lengths.
    """
    return _mean_valid_frames(lip_max_sq_error(pred, gt, lip_idx), lengths)


def mve_batch(pred: Any, gt: Any, lengths: Any | None = None) -> float:
    """MVE pooled over all valid frames of a padded batch.

    Args:
        pred: (B, T, V, 3) predicted vertices, padded along T.
        gt: (B, T, V, 3) ground-truth vertices.
        lengths: optional (B,) valid frame counts (default: all T frames are valid).
    Returns:
        Mean of :func:`vertex_l2_error` over the valid frames, input units.
    Raises:
        ValueError: bad shapes or lengths.
    """
    return _mean_valid_frames(vertex_l2_error(pred, gt), lengths)


def motion_std(vertices: Any, template: Any, upper_idx: Any) -> np.ndarray:
    """Per-vertex temporal std of the squared displacement norm from the template.

    Args:
        vertices: (T, V, 3) vertex sequence.
        template: (V, 3) neutral template of the same subject.
        upper_idx: (U,) integer indices of the upper-face vertices.
    Returns:
        (U,) float64: ``std_t ||vertices[t, v] - template[v]||^2`` (population std, ddof=0),
        squared input units.
    Raises:
        ValueError: bad shapes, T == 0, or indices out of range.
    """
    vertices = _as_vertices(vertices, "vertices")
    template = _as_vertices(template, "template")
    if vertices.ndim != 3 or template.shape != vertices.shape[1:]:
        raise ValueError(f"motion_std: expected vertices (T, V, 3) and template (V, 3), got "
                         f"{vertices.shape} and {template.shape}")
    if vertices.shape[0] == 0:
        raise ValueError("motion_std: the sequence has no frames")
    idx = check_indices(upper_idx, vertices.shape[1], "upper_idx")
    disp = vertices[:, idx, :].astype(np.float64) - template[idx]  # (T, U, 3)
    sq_norm = np.sum(disp * disp, axis=-1)  # (T, U)
    return sq_norm.std(axis=0)  # (U,)


def fdd(pred: Any, gt: Any, template: Any, upper_idx: Any) -> float:
    """Upper-face dynamics deviation of one sequence (CodeTalker's definition, signed).

    Args:
        pred: (T, V, 3) predicted vertices.
        gt: (T, V, 3) ground-truth vertices.
        template: (V, 3) template of the ground-truth subject.
        upper_idx: (U,) integer upper-face vertex indices.
    Returns:
        ``mean_v motion_std(gt) - mean_v motion_std(pred)`` in squared input units.
    Raises:
        ValueError: as :func:`motion_std`, or pred and gt shapes differ.
    """
    pred, gt = _check_pair(pred, gt)
    return float(motion_std(gt, template, upper_idx).mean()
                 - motion_std(pred, template, upper_idx).mean())
