"""The blendshape rig of the synthetic benchmark: weights -> vertices, and random subject identities.

A face mesh is ``template + sum_k w_k * delta_k`` with the 52 ARKit Face Units of the embedded
head (:func:`avguide.assets.head.load_head`), and a subject's template is the head's rest mesh plus
a random mixture of its identity shape targets (:func:`sample_identity`). All numpy, metres.
"""

from __future__ import annotations

import numpy as np

from avguide.assets.head import HeadAsset

_PAIRS = (("-decr", "-incr"), ("-down", "-up"), ("-backward", "-forward"))
"""Name suffixes of the two directions of one MakeHuman modifier (negative, positive)."""

LIP_GAP_CLOSED_M = (-0.5e-3, 1.0e-3)
MAX_TEETH_SKIN_PIXELS = 0
"""Tolerance of :func:`teeth_poke_through` (teeth pixels above the lips in a 64x64 lip render)."""
"""Accepted range (metres) of the rest lip gap along the mouth (see :func:`lip_gaps`): the lips
touch (at most 0.5 mm of overlap, below a pixel of the lip camera) and are never apart by more
than 1 mm. The embedded head's own gaps at rest are 0.24..0.63 mm."""


def clamp_weights(weights: np.ndarray, lo: float = 0.0, hi: float = 1.0) -> np.ndarray:
    """Clip blendshape weights to the rig's valid range.

    Args:
        weights: (..., K) float array of blendshape weights.
        lo, hi: bounds; ARKit weights live in [0, 1].
    Returns:
        float32 array of the same shape, clipped (NaN raises).
    Raises:
        ValueError: ``weights`` contains NaN or ``lo > hi``.
    """
    w = np.asarray(weights, dtype=np.float32)
    if lo > hi:
        raise ValueError(f"clamp_weights: lo={lo} > hi={hi}")
    if np.isnan(w).any():
        raise ValueError("clamp_weights: weights contain NaN")
    return np.clip(w, lo, hi)


def apply_blendshapes(base: np.ndarray, deltas: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Linear blendshape model: ``verts[t] = base + sum_k weights[t, k] * deltas[k]``.

    Args:
        base: (V, 3) float rest vertices (a subject template), metres.
        deltas: (K, V, 3) float blendshape deltas at weight 1, metres (e.g. ``head.blendshapes``).
        weights: (T, K) float weights per frame (or (K,) for a single frame). Not clamped: call
            :func:`clamp_weights` first if they may leave [0, 1].
    Returns:
        (T, V, 3) float32 vertices ((V, 3) if ``weights`` was 1-D).
    Raises:
        ValueError: shapes disagree or an input is not finite.
    """
    base = np.asarray(base, dtype=np.float32)
    deltas = np.asarray(deltas, dtype=np.float32)
    w = np.asarray(weights, dtype=np.float32)
    single = w.ndim == 1
    if single:
        w = w[None]
    if base.ndim != 2 or base.shape[1] != 3:
        raise ValueError(f"apply_blendshapes: base must be (V, 3), got {base.shape}")
    if deltas.ndim != 3 or deltas.shape[1:] != base.shape:
        raise ValueError(f"apply_blendshapes: deltas must be (K, {base.shape[0]}, 3), "
                         f"got {deltas.shape}")
    if w.ndim != 2 or w.shape[1] != deltas.shape[0]:
        raise ValueError(f"apply_blendshapes: weights must be (T, {deltas.shape[0]}), "
                         f"got {np.shape(weights)}")
    if not np.isfinite(w).all():
        raise ValueError("apply_blendshapes: weights contain NaN or inf")
    k, v = deltas.shape[:2]
    out = w @ deltas.reshape(k, v * 3)                    # (T, V*3)
    out = out.reshape(-1, v, 3) + base                    # (T, V, 3)
    return out[0] if single else out


def lip_gaps(verts: np.ndarray, head: HeadAsset, n_columns: int = 9,
             half_width_m: float = 0.016, column_m: float = 0.0035) -> np.ndarray:
    """Vertical lip gap in columns across the mouth (how far apart the lips are).

    In each column (``|x - c| < column_m`` for ``n_columns`` centres ``c`` from
    ``-half_width_m`` to ``+half_width_m``, chosen in the rest mesh), the gap is the lowest
    upper-lip vertex minus the highest lower-lip vertex. Positive: the lips are apart by that much;
    negative: the lower lip reaches above the upper lip's lower edge (pressed / overlapping).

    Args:
        verts: (V, 3) or (T, V, 3) float vertices of ``head`` (metres).
        head: the head asset (its regions ``upper_lip`` / ``lower_lip`` and rest x positions).
    Returns:
        (n_columns,) or (T, n_columns) float32 gaps in metres.
    """
    x = np.asarray(verts, dtype=np.float32)
    rest_x = head.vertices[:, 0]
    up, low = head.regions["upper_lip"], head.regions["lower_lip"]
    gaps = []
    for c in np.linspace(-half_width_m, half_width_m, n_columns):
        u = up[np.abs(rest_x[up] - c) < column_m]
        lo = low[np.abs(rest_x[low] - c) < column_m]
        assert len(u) and len(lo), "every lip column holds vertices of both lips"
        gaps.append(x[..., u, 1].min(-1) - x[..., lo, 1].max(-1))
    return np.stack(gaps, axis=-1).astype(np.float32)


def _modifiers(names: tuple[str, ...]) -> list[tuple[int, int]]:
    """Group identity targets into modifiers: (negative index or -1, positive index)."""
    index = {n: i for i, n in enumerate(names)}
    used: set[int] = set()
    mods = []
    for i, n in enumerate(names):
        for neg, pos in _PAIRS:
            if n.endswith(pos) and n[: -len(pos)] + neg in index:
                j = index[n[: -len(pos)] + neg]
                mods.append((j, i))
                used |= {i, j}
    mods += [(-1, i) for i in range(len(names)) if i not in used]
    return mods


def sample_identity(head: HeadAsset, rng: np.random.Generator, strength: float = 1.0,
                    max_tries: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """Draw a random plausible subject: identity coefficients and its rest template.

    Each two-sided modifier (``x-decr``/``x-incr`` ...) gets a value s ~ N(0, 0.4) clipped to
    [-1, 1], put on its ``-incr`` target if s > 0 else (as |s|) on its ``-decr`` target; each
    one-sided target (head shapes such as ``head-oval``) is used with probability 0.3 at a weight
    ~ U(0, 1). All values are multiplied by ``strength``. A draw is kept only if the mouth stays
    closed without the lips running into each other at rest (every :func:`lip_gaps` column in
    :data:`LIP_GAP_CLOSED_M`) and the teeth never show through the skin in extreme mouth poses
    (:func:`teeth_poke_through`); otherwise it is drawn again.

    Args:
        head: the head asset.
        rng: numpy random generator (the only source of randomness).
        strength: scale of the identity variation, >= 0 (0 gives the rest head; 1 is the default
            spread; above ~1.5 faces start to look caricatured).
        max_tries: draws before giving up.
    Returns:
        coeffs: (K_id,) float32 weights of ``head.identity_targets``, in [0, strength].
        template: (V, 3) float32 rest vertices of the subject, metres.
    Raises:
        ValueError: ``strength`` is negative or not finite.
        RuntimeError: no draw passed the closed-mouth check in ``max_tries`` tries.
    """
    if not np.isfinite(strength) or strength < 0:
        raise ValueError(f"sample_identity: strength must be finite and >= 0, got {strength}")
    mods = _modifiers(head.identity_names)
    k = len(head.identity_names)
    for _ in range(max_tries):
        coeffs = np.zeros(k, dtype=np.float32)
        for neg, pos in mods:
            if neg >= 0:
                s = float(np.clip(rng.normal(0.0, 0.4), -1.0, 1.0))
                coeffs[pos if s > 0 else neg] = abs(s)
            elif rng.random() < 0.3:
                coeffs[pos] = rng.random()
        coeffs *= strength
        template = apply_blendshapes(head.vertices, head.identity_targets, coeffs)
        gaps = lip_gaps(template, head)
        if not (gaps.min() >= LIP_GAP_CLOSED_M[0] and gaps.max() <= LIP_GAP_CLOSED_M[1]):
            continue
        if teeth_poke_through(template, head) <= MAX_TEETH_SKIN_PIXELS:
            return coeffs, template
    raise RuntimeError(f"sample_identity: no identity with a closed mouth and hidden teeth in "
                       f"{max_tries} draws at strength {strength}")


TEETH_CHECK_POSES: tuple[dict[str, float], ...] = (
    {"mouthFunnel": 1.0, "jawOpen": 0.4},
    {"mouthPucker": 1.0, "jawOpen": 0.2},
    {"mouthFunnel": 0.6, "mouthPucker": 0.4, "jawOpen": 0.5},
    {"jawOpen": 0.8},
)
"""Extreme mouth poses in which :func:`teeth_poke_through` must find no teeth showing through skin."""


def teeth_poke_through(template: np.ndarray, head: HeadAsset, size: int = 64) -> int:
    """Largest number of teeth pixels seen above the lips in the lip camera over
    :data:`TEETH_CHECK_POSES`.

    Identity shapes move the skin but not the teeth, so a narrow nose or a flat upper lip can let
    the upper teeth show through the skin beside the nose once the lips round. Teeth seen
    legitimately through the mouth opening are always below the top of the upper lip.

    Args:
        template: (V, 3) float rest vertices of a subject.
        head: the head asset (blendshapes, faces, part labels, lips).
        size: image side of the check render (pixels).
    Returns:
        The worst pose's count of teeth pixels in rows above the topmost lip pixel.
    """
    import torch

    from avguide.assets.arkit import ARKIT_INDEX
    from avguide.render.camera import project
    from avguide.render.lipcam import lip_camera
    from avguide.render.raster import rasterize

    faces_np = np.asarray(head.faces, dtype=np.int64)
    face_part = torch.from_numpy(np.asarray(head.vertex_part, dtype=np.int64)[faces_np[:, 0]])
    teeth, lips = list(head.part_names).index("teeth"), list(head.part_names).index("lips")
    weights = np.zeros((len(TEETH_CHECK_POSES), len(head.blendshape_names)), np.float32)
    for i, pose in enumerate(TEETH_CHECK_POSES):
        for name, w in pose.items():
            weights[i, ARKIT_INDEX[name]] = w
    verts = torch.from_numpy(apply_blendshapes(template, head.blendshapes, weights))  # (P, V, 3)
    cam = lip_camera(torch.tensor(np.asarray(template, np.float32)),
                     torch.tensor(np.asarray(head.regions["lips"], dtype=np.int64)), size=size)
    with torch.no_grad():
        fid = rasterize(project(verts, cam), torch.tensor(faces_np), (size, size))  # (P, H, W)
    part = torch.where(fid >= 0, face_part[fid.clamp(min=0)], torch.full_like(fid, -1))
    rows = torch.arange(size)[None, :, None].expand_as(part)
    lip_top = torch.where(part == lips, rows, size).flatten(1).amin(1)  # (P,)
    above = (part == teeth) & (rows < lip_top[:, None, None])
    return int(above.flatten(1).sum(1).max())
