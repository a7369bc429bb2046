"""Argument checks shared by the exporters: each raises one ``ValueError`` naming the function
and the argument, with the shape or value that is wrong and what is allowed (a programming error
of the caller, which keeps its traceback; see :mod:`avguide.errors`)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def to_numpy(x: Any) -> np.ndarray:
    """An array-like (numpy array, nested lists, torch tensor on any device) as a numpy array,
    without copying when it already is one (a torch tensor is detached and moved to the CPU)."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch.Tensor, without importing torch here
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def check_finite(where: str, name: str, a: np.ndarray) -> None:
    """Raise if ``a`` holds NaN or inf (naming the first bad frame when ``a`` is (T, ...))."""
    ok = np.isfinite(a)
    if ok.all():
        return
    if a.ndim >= 2:
        bad = int(np.flatnonzero(~ok.reshape(a.shape[0], -1).all(axis=1))[0])
        raise ValueError(f"{where}: {name} contains NaN or inf (first at frame {bad})")
    raise ValueError(f"{where}: {name} contains NaN or inf")


def check_mesh(where: str, template: Any, blendshapes: Any | None = None,
               n_shapes: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Check a rest mesh and optionally its blendshape deltas.

    Args:
        where: the calling function's name, for messages.
        template: (V, 3) rest vertices (metres).
        blendshapes: (K, V, 3) deltas at weight 1, or None.
        n_shapes: required K, or None for any K >= 1.
    Returns:
        ``template`` as (V, 3) float32 and ``blendshapes`` as (K, V, 3) float32 (or None).
    Raises:
        ValueError: a shape is wrong or a value is not finite.
    """
    t = to_numpy(template)
    if t.ndim != 2 or t.shape[1] != 3 or t.shape[0] == 0:
        raise ValueError(f"{where}: template must be (V, 3) with V >= 1, got shape {t.shape}")
    check_finite(where, "template", t)
    if blendshapes is None:
        return t.astype(np.float32, copy=False), None
    b = to_numpy(blendshapes)
    k = n_shapes if n_shapes is not None else (b.shape[0] if b.ndim == 3 else "K")
    if b.ndim != 3 or b.shape[1:] != t.shape or b.shape[0] == 0 or (n_shapes and b.shape[0] != n_shapes):
        raise ValueError(f"{where}: blendshapes must be ({k}, {t.shape[0]}, 3) to match the "
                         f"template's {t.shape[0]} vertices, got shape {b.shape}")
    check_finite(where, "blendshapes", b)
    return t.astype(np.float32, copy=False), b.astype(np.float32, copy=False)


def check_vertices(where: str, vertices: Any, n_vertices: int) -> np.ndarray:
    """Check a vertex sequence (values are checked for NaN by the caller, chunk by chunk).

    Args:
        vertices: (T, V, 3) or (T, V*3) vertex positions, T >= 1.
        n_vertices: the V they must have.
    Returns:
        (T, V*3) view (no copy) of ``vertices``, any float dtype.
    Raises:
        ValueError: wrong rank or vertex count, T = 0, or not a float / integer array.
    """
    v = to_numpy(vertices)
    if v.dtype.kind not in "fiu":
        raise ValueError(f"{where}: vertices must be a numeric array, got dtype {v.dtype}")
    if not ((v.ndim == 3 and v.shape[1:] == (n_vertices, 3))
            or (v.ndim == 2 and v.shape[1] == 3 * n_vertices)):
        raise ValueError(f"{where}: vertices must be (T, {n_vertices}, 3) or "
                         f"(T, {3 * n_vertices}), got shape {v.shape}")
    if v.shape[0] == 0:
        raise ValueError(f"{where}: vertices has no frames (T = 0)")
    return v.reshape(v.shape[0], 3 * n_vertices)


def check_faces(where: str, faces: Any, n_vertices: int) -> np.ndarray:
    """Check a triangle list.

    Args:
        faces: (F, 3) integer vertex indices (0-based), F >= 1.
        n_vertices: V; every index must lie in [0, V).
    Returns:
        (F, 3) int64 array.
    Raises:
        ValueError: wrong shape, non-integer values or an index outside [0, V).
    """
    f = to_numpy(faces)
    if f.ndim != 2 or f.shape[1] != 3 or f.shape[0] == 0:
        raise ValueError(f"{where}: faces must be (F, 3) with F >= 1, got shape {f.shape}")
    if f.dtype.kind not in "iu":
        if f.dtype.kind != "f" or not np.isfinite(f).all() or (f != np.round(f)).any():
            raise ValueError(f"{where}: faces must hold integer vertex indices, got dtype {f.dtype}")
    f = f.astype(np.int64)
    lo, hi = int(f.min()), int(f.max())
    if lo < 0 or hi >= n_vertices:
        raise ValueError(f"{where}: faces index vertices {lo}..{hi}, outside [0, {n_vertices}) "
                         f"(faces are 0-based indices into the {n_vertices} vertices)")
    return f


def check_fps(where: str, fps: Any) -> float:
    """Return ``fps`` as a float; raise unless it is a finite number > 0."""
    try:
        value = float(fps)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: fps must be a number > 0, got {fps!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{where}: fps must be a finite number > 0, got {fps!r}")
    return value


def check_weights(where: str, weights: Any, n_shapes: int) -> np.ndarray:
    """Check per-frame blendshape weights.

    Args:
        weights: (T, K) weights, T >= 1, any finite values.
        n_shapes: the K they must have.
    Returns:
        (T, K) float32 array.
    Raises:
        ValueError: wrong shape, T = 0, NaN or inf.
    """
    w = to_numpy(weights)
    if w.ndim != 2 or w.shape[1] != n_shapes:
        raise ValueError(f"{where}: weights must be (T, {n_shapes}), got shape {w.shape}")
    if w.shape[0] == 0:
        raise ValueError(f"{where}: weights has no frames (T = 0)")
    if w.dtype.kind not in "fiu":
        raise ValueError(f"{where}: weights must be numeric, got dtype {w.dtype}")
    check_finite(where, "weights", w)
    return w.astype(np.float32, copy=False)
