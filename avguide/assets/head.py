"""The embedded CC0 head: MakeHuman hm08 head mesh, 52 ARKit Face Units, identity targets, regions.

``head.npz`` is built by ``tools/build_head_asset.py`` (see PROVENANCE.md). Units are **metres**,
+y up, the face looks along +z, +x is the subject's own left. The mesh holds the skin (with a
closed mouth cavity behind a lip slit), teeth, tongue and eyeballs.
"""

from __future__ import annotations

import functools
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avguide.assets.arkit import ARKIT_NAMES
from avguide.errors import BadInputError, MissingFileError

DEFAULT_HEAD = Path(__file__).with_name("head.npz")

REGION_NAMES = ("lips", "upper_lip", "lower_lip", "upper_face", "eyes", "teeth", "tongue",
                "mouth_cavity")
"""Region index sets stored in head.npz (as ``region_<name>``)."""


@dataclass(frozen=True, eq=False)
class HeadAsset:
    """The head template, its rig and its annotations (arrays are read-only).

    Attributes:
        vertices: (V, 3) float32, rest template in metres.
        faces: (F, 3) int64 vertex indices, counter-clockwise seen from outside (outward normals
            on the skin: the skin's signed volume is positive).
        orig_index: (V,) int64 index of each vertex in MakeHuman's base.obj.
        blendshapes: (52, V, 3) float32 deltas in metres of the ARKit Face Units at weight 1, in
            the order of ``blendshape_names``.
        blendshape_names: the 52 ARKit names, equal to ``avguide.assets.arkit.ARKIT_NAMES``.
        identity_targets: (K, V, 3) float32 deltas in metres of the identity shape targets at
            weight 1 (MakeHuman modifiers such as ``head-oval``, ``nose-scale-horiz-incr``).
        identity_names: K target names; ``*-decr`` / ``*-incr`` (``-up``/``-down``,
            ``-backward``/``-forward``) pairs are the two directions of one modifier.
        regions: region name -> sorted int64 vertex indices: ``lips`` (= upper_lip | lower_lip,
            the vertices of MakeHuman's lip-volume targets, used by LVE), ``upper_lip``,
            ``lower_lip``, ``upper_face`` (forehead, brows, eyelids, nose bridge: FDD),
            ``eyes`` (eyeballs), ``teeth``, ``tongue``, ``mouth_cavity`` (inner skin of the mouth).
        vertex_part: (V,) uint8 index into ``part_names`` (for albedo).
        part_names: ("skin", "lips", "teeth", "tongue", "eyes", "cavity").
    """

    vertices: np.ndarray
    faces: np.ndarray
    orig_index: np.ndarray
    blendshapes: np.ndarray
    blendshape_names: tuple[str, ...]
    identity_targets: np.ndarray
    identity_names: tuple[str, ...]
    regions: dict[str, np.ndarray]
    vertex_part: np.ndarray
    part_names: tuple[str, ...]

    @property
    def num_vertices(self) -> int:
        """V, the number of vertices."""
        return int(self.vertices.shape[0])


def _readonly(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


def _parse(path: Path) -> HeadAsset:
    try:
        with np.load(path, allow_pickle=False) as z:
            d = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise BadInputError(f"{path}: not a readable head .npz ({type(e).__name__}: {e})") from None
    required = ["vertices", "faces", "orig_index", "blendshapes", "blendshape_names",
                "identity_targets", "identity_names", "vertex_part", "part_names"]
    required += [f"region_{r}" for r in REGION_NAMES]
    missing = [k for k in required if k not in d]
    if missing:
        raise BadInputError(f"{path}: head .npz lacks arrays {missing}")
    v = d["vertices"]
    n = v.shape[0] if v.ndim == 2 else -1
    problems = []
    if v.ndim != 2 or v.shape[1] != 3 or not np.isfinite(v).all():
        problems.append(f"vertices has shape {v.shape}, expected finite (V, 3)")
    f = d["faces"]
    if f.ndim != 2 or f.shape[1] != 3 or f.size == 0 or f.min() < 0 or f.max() >= n:
        problems.append(f"faces has shape {f.shape} or indices outside [0, {n})")
    names = tuple(str(s) for s in d["blendshape_names"])
    if names != ARKIT_NAMES:
        problems.append("blendshape_names differ from the 52 ARKit names in canonical order")
    if d["blendshapes"].shape != (52, n, 3):
        problems.append(f"blendshapes has shape {d['blendshapes'].shape}, expected (52, {n}, 3)")
    ids = d["identity_targets"]
    if ids.ndim != 3 or ids.shape[1:] != (n, 3) or ids.shape[0] != len(d["identity_names"]):
        problems.append(f"identity_targets has shape {ids.shape}, expected (K, {n}, 3) with K = "
                        f"{len(d['identity_names'])} names")
    if d["vertex_part"].shape != (n,) or d["vertex_part"].max() >= len(d["part_names"]):
        problems.append("vertex_part must be (V,) indices into part_names")
    for r in REGION_NAMES:
        idx = d[f"region_{r}"]
        if idx.ndim != 1 or idx.size == 0 or idx.min() < 0 or idx.max() >= n:
            problems.append(f"region_{r} must be a non-empty 1-D index array into [0, {n})")
    if problems:
        raise BadInputError(f"{path}: corrupt head .npz: " + "; ".join(problems))
    return HeadAsset(
        vertices=_readonly(v.astype(np.float32)),
        faces=_readonly(f.astype(np.int64)),
        orig_index=_readonly(d["orig_index"].astype(np.int64)),
        blendshapes=_readonly(d["blendshapes"].astype(np.float32)),
        blendshape_names=names,
        identity_targets=_readonly(ids.astype(np.float32)),
        identity_names=tuple(str(s) for s in d["identity_names"]),
        regions={r: _readonly(d[f"region_{r}"].astype(np.int64)) for r in REGION_NAMES},
        vertex_part=_readonly(d["vertex_part"].astype(np.uint8)),
        part_names=tuple(str(s) for s in d["part_names"]),
    )


@functools.lru_cache(maxsize=4)
def _load_cached(path: Path) -> HeadAsset:
    return _parse(path)


def load_head(path: str | Path | None = None) -> HeadAsset:
    """Load the head asset (cached per path; the arrays are read-only, copy before editing).

    Args:
        path: a head .npz written by ``tools/build_head_asset.py``; ``None`` for the embedded
            ``avguide/assets/head.npz``.
    Returns:
        The :class:`HeadAsset` (metres; float32 geometry, int64 indices).
    Raises:
        MissingFileError: ``path`` does not exist.
        BadInputError: the file is not an .npz or lacks / has malformed arrays.
    """
    p = Path(path) if path is not None else DEFAULT_HEAD
    if not p.is_file():
        raise MissingFileError(f"{p}: head asset file not found"
                               + (" (rebuild it with tools/build_head_asset.py)" if path is None
                                  else ""))
    return _load_cached(p.resolve())
