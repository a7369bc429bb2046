"""Read a mesh's topology (and rest vertices) from the files users have: Wavefront .obj,
.ply (ASCII or binary, e.g. VOCASET's ``FLAME_sample.ply``), or a (F,3) .npy of face indices."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from avguide.errors import BadInputError, MissingFileError
from avguide.io import load_faces, one_line, read_bytes, read_text

_PLY_TYPES = {"char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
              "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
              "float": "f4", "float32": "f4", "double": "f8", "float64": "f8"}


def read_mesh(path: str | Path) -> tuple[np.ndarray | None, np.ndarray]:
    """Load vertices and triangle faces.

    Args:
        path: .obj, .ply or .npy / .npz (faces only).
    Returns:
        (vertices (V,3) float32 or None for a faces-only .npy, faces (F,3) int64); polygons are
        fan-triangulated.
    Raises:
        MissingFileError: no such file.
        BadInputError: unknown extension, unparsable file, or face indices out of range.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: mesh file not found")
    suffix = path.suffix.lower()
    try:
        if suffix in (".npy", ".npz"):
            return None, load_faces(path, what="mesh faces file")
        elif suffix == ".obj":
            verts, faces = _read_obj(path)
        elif suffix == ".ply":
            verts, faces = _read_ply(path)
        else:
            raise BadInputError(f"{path}: unknown mesh format {suffix!r}; use .obj, .ply or a faces .npy")
    except BadInputError:
        raise
    except (ValueError, IndexError, KeyError, TypeError, OSError, StopIteration) as e:
        raise BadInputError(f"{path}: cannot parse mesh ({type(e).__name__}: {one_line(e, 160)})") from None
    faces = np.asarray(faces)
    if faces.ndim != 2 or faces.shape[1] != 3 or not np.issubdtype(faces.dtype, np.integer) or faces.size == 0:
        raise BadInputError(f"{path}: faces must be a non-empty (F, 3) integer array, got {faces.shape} {faces.dtype}")
    if verts is not None and not np.isfinite(verts).all():
        raise BadInputError(f"{path}: vertex coordinates contain NaN or inf")
    if faces.min() < 0 or (verts is not None and faces.max() >= len(verts)):
        raise BadInputError(f"{path}: face indices out of range [0, {len(verts) if verts is not None else 'V'})")
    return verts, faces.astype(np.int64)


def _fan(polys: list[list[int]]) -> np.ndarray:
    tris = [(p[0], p[i], p[i + 1]) for p in polys for i in range(1, len(p) - 1)]
    return np.array(tris, dtype=np.int64).reshape(-1, 3)


def _read_obj(path: Path) -> tuple[np.ndarray, np.ndarray]:
    verts, polys = [], []
    for line in read_text(path, "mesh file").splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "v":
            verts.append([float(x) for x in parts[1:4]])
        elif parts[0] == "f":
            idx = [int(tok.split("/")[0]) for tok in parts[1:]]
            polys.append([i - 1 if i > 0 else len(verts) + i for i in idx])  # 1-based / negative
    return np.array(verts, np.float32).reshape(-1, 3), _fan(polys)


def _read_ply(path: Path) -> tuple[np.ndarray, np.ndarray]:
    data = read_bytes(path, "mesh file")
    end = data.find(b"end_header")
    if not data.startswith(b"ply") or end < 0:
        raise ValueError("missing ply header")
    body_start = data.index(b"\n", end) + 1
    header = data[:end].decode("ascii").splitlines()
    fmt = next(line.split()[1] for line in header if line.startswith("format"))
    elements: list[tuple[str, int, list[tuple]]] = []
    for line in header:
        t = line.split()
        if t[:1] == ["element"]:
            elements.append((t[1], int(t[2]), []))
        elif t[:1] == ["property"]:
            elements[-1][2].append(tuple(t[1:]))
    if fmt == "ascii":
        return _ply_ascii(data[body_start:].decode("ascii").split(), elements)
    if fmt not in ("binary_little_endian", "binary_big_endian"):
        raise ValueError(f"unsupported ply format {fmt}")
    order = "<" if fmt == "binary_little_endian" else ">"
    pos, verts, faces = body_start, None, None
    for name, count, props in elements:
        if all(p[0] != "list" for p in props):
            dtype = np.dtype([(p[1], order + _PLY_TYPES[p[0]]) for p in props])
            arr = np.frombuffer(data, dtype, count, pos)
            pos += dtype.itemsize * count
            if name == "vertex":
                verts = np.stack([arr["x"], arr["y"], arr["z"]], 1).astype(np.float32)
            continue
        if name != "face" or len(props) != 1:
            raise ValueError(f"unsupported list element {name!r}")
        _, count_t, index_t, _ = props[0]
        ct, it = np.dtype(order + _PLY_TYPES[count_t]), np.dtype(order + _PLY_TYPES[index_t])
        first = int(np.frombuffer(data, ct, 1, pos)[0])
        if count and first == 3:  # the common all-triangles case, read in one go
            rec = np.dtype([("n", ct), ("i", it, (3,))])
            arr = np.frombuffer(data, rec, count, pos)
            if (arr["n"] == 3).all():
                faces, pos = arr["i"].astype(np.int64), pos + rec.itemsize * count
                continue
        polys = []
        for _ in range(count):
            n = int(np.frombuffer(data, ct, 1, pos)[0])
            polys.append(np.frombuffer(data, it, n, pos + ct.itemsize).tolist())
            pos += ct.itemsize + n * it.itemsize
        faces = _fan(polys)
    if verts is None or faces is None:
        raise ValueError("ply has no vertex or face element")
    return verts, faces


def _ply_ascii(tokens: list[str], elements) -> tuple[np.ndarray, np.ndarray]:
    pos, verts, polys = 0, None, []
    for name, count, props in elements:
        if name == "vertex":
            names = [p[-1] for p in props]
            rows = []
            for _ in range(count):
                rows.append([float(x) for x in tokens[pos:pos + len(props)]])
                pos += len(props)
            arr = np.array(rows, np.float32).reshape(count, len(props))
            verts = arr[:, [names.index("x"), names.index("y"), names.index("z")]]
        elif name == "face":
            for _ in range(count):
                n = int(tokens[pos])
                polys.append([int(x) for x in tokens[pos + 1:pos + 1 + n]])
                pos += 1 + n
        else:
            pos += count * len(props)
    return verts, _fan(polys)
