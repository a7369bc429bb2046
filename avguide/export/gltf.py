"""glTF 2.0 binary (.glb): the head mesh, its blendshapes as morph targets, and the animation.

One file that Blender, three.js, Unity (glTFast) and Unreal open as an animated mesh: one node
holding one mesh (POSITION with min/max, NORMAL, triangle indices, optional COLOR_0) whose morph
targets are the blendshapes (POSITION deltas with min/max, NORMAL deltas), named through
``mesh.extras.targetNames`` (the convention Blender and three.js read), default weights 0, and
one animation whose LINEAR ``weights`` channel plays the per-frame weights at their frame times.

Written with numpy, struct and json following the glTF 2.0 specification
(https://registry.khronos.org/glTF/specs/2.0/glTF-2.0.html): little-endian, every bufferView
4-byte aligned, JSON chunk padded with spaces and BIN chunk with zeros to 4 bytes, exact
byteLengths. glTF units are metres, +Y up, front faces counter-clockwise: the head's own.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any, Sequence

import numpy as np

import avguide
from avguide.assets.arkit import ARKIT_NAMES
from avguide.export.checks import (check_faces, check_finite, check_fps, check_mesh,
                                   check_weights, to_numpy)
from avguide.io import write_bytes_atomic

GLB_MAGIC = 0x46546C67          # "glTF"
CHUNK_JSON = 0x4E4F534A         # "JSON"
CHUNK_BIN = 0x004E4942          # "BIN\0"
FLOAT, UNSIGNED_SHORT, UNSIGNED_INT = 5126, 5123, 5125
ARRAY_BUFFER, ELEMENT_ARRAY_BUFFER = 34962, 34963
TRIANGLES = 4


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unit vertex normals: area-weighted sum of the normals of the faces around each vertex.

    Args:
        vertices: (V, 3) float positions. faces: (F, 3) int64 counter-clockwise triangles.
    Returns:
        (V, 3) float32 unit normals; a vertex in no (non-degenerate) face gets +z.
    """
    v = vertices.astype(np.float64)
    fn = np.cross(v[faces[:, 1]] - v[faces[:, 0]], v[faces[:, 2]] - v[faces[:, 0]])  # (F, 3)
    corners = faces.reshape(-1)                                         # (3F,) face-major
    n = np.stack([np.bincount(corners, weights=np.repeat(fn[:, c], 3), minlength=len(v))
                  for c in range(3)], axis=1)                           # (V, 3) summed
    length = np.linalg.norm(n, axis=1, keepdims=True)                   # (V, 1)
    n = np.where(length > 0, n / np.where(length > 0, length, 1.0), [0.0, 0.0, 1.0])
    return n.astype(np.float32)


def head_vertex_colors(head: Any = None) -> np.ndarray:
    """Per-vertex linear RGB of the head's parts (skin, lips, teeth, ...) for ``COLOR_0``.

    Args:
        head: an :class:`avguide.assets.head.HeadAsset`, or None for the embedded head.
    Returns:
        (V, 3) float32 colours in [0, 1] from :data:`avguide.render.shading.PART_COLORS`.
    """
    from avguide.assets.head import load_head
    from avguide.render.shading import PART_COLORS

    head = load_head() if head is None else head
    table = np.array([PART_COLORS[p] for p in head.part_names], dtype=np.float32)  # (P, 3)
    return table[head.vertex_part]


class _BinBuilder:
    """Collects arrays into one BIN buffer: bufferViews 4-byte aligned, accessors over them."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.size = 0
        self.views: list[dict] = []
        self.accessors: list[dict] = []

    def add(self, array: np.ndarray, component: int, kind: str, *, target: int | None = None,
            min_max: bool = False) -> int:
        """Append ``array`` (already of the component's dtype) as a bufferView + accessor.

        Returns the accessor index. ``min_max`` adds the exact per-component min / max.
        """
        data = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"), copy=False)
        raw = data.tobytes()
        assert self.size % 4 == 0
        view = {"buffer": 0, "byteOffset": self.size, "byteLength": len(raw)}
        if target is not None:
            view["target"] = target
        self.views.append(view)
        pad = (-len(raw)) % 4
        self.chunks += [raw, b"\0" * pad]
        self.size += len(raw) + pad
        width = {"SCALAR": 1, "VEC3": 3}[kind]
        acc = {"bufferView": len(self.views) - 1, "componentType": component,
               "count": int(data.size // width), "type": kind}
        if min_max:
            flat = data.reshape(-1, width)
            acc["min"] = [_number(x) for x in flat.min(axis=0)]
            acc["max"] = [_number(x) for x in flat.max(axis=0)]
        self.accessors.append(acc)
        return len(self.accessors) - 1

    def blob(self) -> bytes:
        return b"".join(self.chunks)


def _number(x: np.generic) -> float | int:
    """A numpy scalar as the JSON number that parses back to the same value."""
    return int(x) if np.issubdtype(type(x), np.integer) else float(x)


def _glb(gltf: dict, binary: bytes) -> bytes:
    """Assemble a GLB: 12-byte header, JSON chunk (space padded), BIN chunk (zero padded)."""
    text = json.dumps(gltf, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * ((-len(text)) % 4)
    binary += b"\0" * ((-len(binary)) % 4)
    total = 12 + 8 + len(text) + 8 + len(binary)
    return b"".join([struct.pack("<III", GLB_MAGIC, 2, total),
                     struct.pack("<II", len(text), CHUNK_JSON), text,
                     struct.pack("<II", len(binary), CHUNK_BIN), binary])


def write_glb(path: str | os.PathLike, template: Any, faces: Any, blendshapes: Any, weights: Any,
              fps: float, *, vertex_colors: Any = None,
              names: Sequence[str] = ARKIT_NAMES) -> Path:
    """Write the animated head as a glTF 2.0 binary (.glb), atomically.

    Args:
        path: the .glb to write (parent directories are created).
        template: (V, 3) rest vertices in metres (the subject's neutral face).
        faces: (F, 3) 0-based counter-clockwise triangles into the V vertices.
        blendshapes: (K, V, 3) deltas at weight 1 in metres: the morph targets.
        weights: (T, K) per-frame weights (T >= 1), played at times t / fps by a LINEAR
            ``weights`` animation channel; any finite values (ARKit uses [0, 1]).
        fps: frame rate, a finite number > 0.
        vertex_colors: (V, 3) linear RGB in [0, 1] for COLOR_0 (e.g. :func:`head_vertex_colors`),
            or None for none.
        names: the K morph target names (``mesh.extras.targetNames``), default the 52 ARKit
            names.
    Returns:
        ``path`` as a Path.
    Raises:
        ValueError: a shape does not match, T = 0, NaN/inf, fps not > 0, a face index outside
            [0, V), colours outside [0, 1], or names not K distinct strings.
    """
    where = "write_glb"
    base, deltas = check_mesh(where, template, blendshapes)
    n_vert, n_targets = base.shape[0], deltas.shape[0]
    tri = check_faces(where, faces, n_vert)
    w = check_weights(where, weights, n_targets)
    rate = check_fps(where, fps)
    names = list(names)
    if len(names) != n_targets or len(set(names)) != n_targets or not all(
            isinstance(n, str) and n for n in names):
        raise ValueError(f"{where}: names must be {n_targets} distinct non-empty strings (one "
                         f"per blendshape), got {len(names)}")
    colors = None
    if vertex_colors is not None:
        colors = to_numpy(vertex_colors)
        if colors.shape != (n_vert, 3):
            raise ValueError(f"{where}: vertex_colors must be ({n_vert}, 3), got {colors.shape}")
        check_finite(where, "vertex_colors", colors)
        if colors.min() < 0 or colors.max() > 1:
            raise ValueError(f"{where}: vertex_colors must lie in [0, 1] (linear RGB), got "
                             f"[{colors.min():g}, {colors.max():g}]")
        colors = colors.astype(np.float32)

    normals = vertex_normals(base, tri)                                  # (V, 3)
    buf = _BinBuilder()
    index_type = (np.uint16, UNSIGNED_SHORT) if n_vert <= 65535 else (np.uint32, UNSIGNED_INT)
    attributes = {
        "POSITION": buf.add(base, FLOAT, "VEC3", target=ARRAY_BUFFER, min_max=True),
        "NORMAL": buf.add(normals, FLOAT, "VEC3", target=ARRAY_BUFFER),
    }
    if colors is not None:
        attributes["COLOR_0"] = buf.add(colors, FLOAT, "VEC3", target=ARRAY_BUFFER)
    indices = buf.add(tri.astype(index_type[0]).reshape(-1), index_type[1], "SCALAR",
                      target=ELEMENT_ARRAY_BUFFER)
    targets = []
    for k in range(n_targets):
        moved_normals = vertex_normals(base + deltas[k], tri)            # normals at weight 1
        targets.append({
            "POSITION": buf.add(deltas[k], FLOAT, "VEC3", target=ARRAY_BUFFER, min_max=True),
            "NORMAL": buf.add(moved_normals - normals, FLOAT, "VEC3", target=ARRAY_BUFFER),
        })
    times = (np.arange(len(w), dtype=np.float64) / rate).astype(np.float32)   # (T,)
    if len(times) > 1 and not np.all(np.diff(times) > 0):
        raise ValueError(f"{where}: {len(w)} frames at {rate:g} fps give frame times that "
                         "float32 cannot keep apart")
    time_acc = buf.add(times, FLOAT, "SCALAR", min_max=True)
    weight_acc = buf.add(w.reshape(-1), FLOAT, "SCALAR")                 # T*K, frame-major

    binary = buf.blob()
    gltf = {
        "asset": {"version": "2.0", "generator": f"avguide {avguide.__version__}"},
        "scene": 0,
        "scenes": [{"name": "avguide", "nodes": [0]}],
        "nodes": [{"name": "head", "mesh": 0}],
        "meshes": [{
            "name": "head",
            "primitives": [{"attributes": attributes, "indices": indices, "material": 0,
                            "mode": TRIANGLES, "targets": targets}],
            "weights": [0.0] * n_targets,
            "extras": {"targetNames": names},
        }],
        "materials": [{"name": "head",
                       "pbrMetallicRoughness": {"baseColorFactor": [1.0, 1.0, 1.0, 1.0],
                                                "metallicFactor": 0.0, "roughnessFactor": 0.7}}],
        "animations": [{
            "name": "avguide",
            "samplers": [{"input": time_acc, "output": weight_acc, "interpolation": "LINEAR"}],
            "channels": [{"sampler": 0, "target": {"node": 0, "path": "weights"}}],
        }],
        "accessors": buf.accessors,
        "bufferViews": buf.views,
        "buffers": [{"byteLength": len(binary)}],
    }
    write_bytes_atomic(path, _glb(gltf, binary))
    return Path(path)
