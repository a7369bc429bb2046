"""Wavefront OBJ sequences: one mesh file per frame, for tools that import numbered OBJs
(Blender's "Stop-motion-OBJ", Houdini, MeshLab, Alembic converters).

Each file is ``v x y z`` lines (metres, 6 decimals: 1 micrometre) then ``f a b c`` lines
(1-based indices, counter-clockwise). The face block is formatted once and each frame's vertex
block in one C-level formatting call, so thousands of frames go as fast as the disk takes them;
every file is written atomically.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from avguide.errors import BadInputError
from avguide.export.checks import check_faces, check_finite, check_vertices, to_numpy
from avguide.io import write_bytes_atomic


def write_obj_sequence(out_dir: str | os.PathLike, vertices: Any, faces: Any, *,
                       stem: str = "frame") -> list[Path]:
    """Write ``{stem}_00000.obj``, ``{stem}_00001.obj``, ... one per frame.

    The frame number has 5 digits, or more when T > 100000, so names sort in frame order.

    Args:
        out_dir: directory to write into (created if needed); existing files of the same names
            are replaced.
        vertices: (T, V, 3) or (T, V*3) vertex positions in metres (numpy or torch), T >= 1.
        faces: (F, 3) 0-based triangles into the V vertices.
        stem: file name prefix: letters, digits, ``-`` and ``_`` only.
    Returns:
        The T paths written, in frame order.
    Raises:
        ValueError: a shape is wrong, T = 0, NaN/inf, a face index outside [0, V), or a bad
            ``stem``.
        BadInputError: ``out_dir`` is an existing file (or cannot be written).
    """
    where = "write_obj_sequence"
    if not stem or not all(c.isalnum() or c in "-_" for c in stem):
        raise ValueError(f"{where}: stem must be non-empty letters, digits, '-' or '_', got {stem!r}")
    raw = to_numpy(vertices)
    if raw.ndim not in (2, 3) or raw.shape[-1] % 3 or (raw.ndim == 3 and raw.shape[-1] != 3):
        raise ValueError(f"{where}: vertices must be (T, V, 3) or (T, V*3), got shape {raw.shape}")
    n_vert = raw.shape[1] if raw.ndim == 3 else raw.shape[1] // 3
    v = check_vertices(where, raw, n_vert)                              # (T, V*3)
    check_finite(where, "vertices", v)
    tri = check_faces(where, faces, n_vert)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise BadInputError(f"{where}: out_dir {out} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)

    face_block = (("f %d %d %d\n" * len(tri)) % tuple((tri + 1).reshape(-1).tolist())).encode()
    vertex_format = "v %.6f %.6f %.6f\n" * n_vert
    width = max(5, len(str(len(v) - 1)))
    paths = []
    for t in range(len(v)):
        text = f"# avguide frame {t}: {n_vert} vertices (metres), {len(tri)} triangles\n"
        body = vertex_format % tuple(v[t].astype(np.float64).tolist())
        path = out / f"{stem}_{t:0{width}d}.obj"
        write_bytes_atomic(path, text.encode() + body.encode() + face_block)
        paths.append(path)
    return paths
