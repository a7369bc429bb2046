"""Reading arrays: vertex sequences, face lists and vertex-index lists, validated.

:func:`load_array` reads a ``.npy`` or ``.npz`` file (never a pickle), :func:`load_npz` the named
arrays of an archive; the others check the content a caller needs and name the file and the
problem in one line:

* :func:`load_vertices` -> (T, V, 3) float32: float dtype, (T, V*3) or (T, V, 3), the expected
  V, at least ``min_frames`` frames, only finite values (the first bad frame named).
* :func:`load_faces` -> (F, 3) int64: integers in [0, V), at least one face.
* :func:`load_indices` -> (R,) int64: a ``.npy`` or a text list (", " or whitespace
  separated) of integers in [0, V), at least one.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from avguide.errors import BadInputError
from avguide.io.files import existing_file, one_line, read_text

_ZIP_MAGIC = b"PK\x03\x04"
_NPY_MAGIC = b"\x93NUMPY"


def load_array(path: str | os.PathLike, what: str = "array file", *,
               npz_keys: tuple[str, ...] = ("vertices",)) -> np.ndarray:
    """The array in a ``.npy`` file, or in a ``.npz`` archive (whatever its file name says).

    Args:
        path: the file.
        what: its role, used in messages ("vertex file", "faces file").
        npz_keys: preferred array names in an archive; otherwise it must hold exactly one array.
    Returns:
        The array, as stored (any dtype but object, any shape).
    Raises:
        MissingFileError / BadInputError: missing, a directory, unreadable, truncated, pickled
            Python objects, an archive without one clear array, or not numpy data at all.
    """
    path = existing_file(path, what)
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
        if not magic:
            raise BadInputError(f"{path}: empty {what} (0 bytes)")
        if magic[:4] == _ZIP_MAGIC:
            with np.load(path, allow_pickle=False) as z:
                keys = list(z.keys())
                key = next((k for k in npz_keys if k in keys), keys[0] if len(keys) == 1 else None)
                if key is None:
                    raise BadInputError(f"{path}: a .npz archive with arrays {keys or 'none'}; expected "
                                        f"one array or one named {' or '.join(npz_keys)}")
                return z[key]
        if magic != _NPY_MAGIC:
            raise BadInputError(f"{path}: not a .npy or .npz {what} (no numpy header; "
                                f"starts with {magic!r})")
        return np.load(path, allow_pickle=False)
    except BadInputError:
        raise
    except ValueError as e:
        msg = str(e)
        if "allow_pickle" in msg:
            raise BadInputError(f"{path}: holds pickled Python objects, not a numeric array "
                                "(refused; save it with numpy.save and a numeric dtype)") from None
        raise BadInputError(f"{path}: not a readable .npy/.npz {what} ({one_line(msg, 160)})") from None
    except OSError as e:
        raise BadInputError(f"{path}: cannot read {what} ({one_line(e.strerror or e, 160)})") from None
    except (EOFError, zipfile.BadZipFile, KeyError, MemoryError) as e:
        raise BadInputError(f"{path}: truncated or corrupt {what} ({type(e).__name__}: "
                            f"{one_line(e, 160)})") from None


def array_header(path: str | os.PathLike, what: str = "array file") -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of the array in a ``.npy`` file, from its header only (a cheap check
    before a long job reads the data); a ``.npz`` is read (:func:`load_array`).

    Raises:
        MissingFileError / BadInputError: as :func:`load_array`, or a damaged header.
    """
    path = existing_file(path, what)
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
        if magic == _NPY_MAGIC:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)  # a map: the header only is read
            return arr.shape, arr.dtype
    except (ValueError, EOFError, OSError):
        pass  # load_array names the problem
    arr = load_array(path, what)
    return arr.shape, arr.dtype


def load_npz(path: str | os.PathLike, keys: tuple[str, ...], what: str = "array archive") -> dict[str, np.ndarray]:
    """The named arrays of a ``.npz`` archive (never pickled objects).

    Args:
        path: the archive.
        keys: the arrays it must hold (others are ignored).
        what: its role, used in messages.
    Returns:
        ``{key: array}`` for every key of ``keys``, as stored.
    Raises:
        MissingFileError / BadInputError: missing, a directory, unreadable, empty, not a zip
            archive, truncated, pickled objects, or an array of ``keys`` missing.
    """
    path = existing_file(path, what)
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
        if magic != _ZIP_MAGIC:
            raise BadInputError(f"{path}: not a .npz {what} ({'empty file' if not magic else f'starts with {magic!r}'})")
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in keys if k not in z.files]
            if missing:
                raise BadInputError(f"{path}: {what} lacks the array(s) {', '.join(missing)} (has "
                                    f"{', '.join(z.files) or 'none'})")
            return {k: z[k] for k in keys}
    except BadInputError:
        raise
    except ValueError as e:
        if "allow_pickle" in str(e):
            raise BadInputError(f"{path}: holds pickled Python objects, not numeric arrays (refused)") from None
        raise BadInputError(f"{path}: not a readable {what} ({one_line(e, 160)})") from None
    except OSError as e:
        raise BadInputError(f"{path}: cannot read {what} ({one_line(e.strerror or e, 160)})") from None
    except (EOFError, zipfile.BadZipFile, KeyError, MemoryError) as e:
        raise BadInputError(f"{path}: truncated or corrupt {what} ({type(e).__name__}: {one_line(e, 160)})") from None


def load_vertices(path: str | os.PathLike, n_vertices: int | None = None, *, stride: int = 1,
                  min_frames: int = 1, what: str = "vertex file") -> np.ndarray:
    """Load and check a vertex sequence.

    Args:
        path: ``.npy`` (or ``.npz`` holding ``vertices`` or a single array), float,
            (T, V*3) or (T, V, 3).
        n_vertices: expected V; None accepts any (a (T, 3V) array gives V = 3V / 3).
        stride: keep every ``stride``-th frame (2 for VOCASET's 60 fps -> 30 fps).
        min_frames: fewest frames accepted after the stride.
        what: the file's role, used in messages.
    Returns:
        (T, V, 3) float32.
    Raises:
        MissingFileError / BadInputError naming the file: unreadable, not float, 0-d, wrong
            width or V, too few frames, NaN/inf (the first bad frame given, in file frames).
    """
    assert stride >= 1 and min_frames >= 0
    arr = load_array(path, what)
    if arr.ndim == 0:
        raise BadInputError(f"{path}: a single number (0-d array), expected vertices (T, V*3) or (T, V, 3)")
    if not np.issubdtype(arr.dtype, np.floating):
        raise BadInputError(f"{path}: expected floating-point vertices, got dtype {arr.dtype}")
    shape = arr.shape
    if arr.ndim == 2 and arr.shape[1] % 3 == 0 and arr.shape[1] > 0:
        arr = arr.reshape(arr.shape[0], arr.shape[1] // 3, 3)  # (T, V, 3)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[1] == 0:
        raise BadInputError(f"{path}: shape {arr.shape}, expected vertices (T, V*3) or (T, V, 3)")
    if n_vertices is not None and arr.shape[1] != n_vertices:
        raise BadInputError(f"{path}: {arr.shape[1]} vertices per frame (shape {shape}), expected "
                            f"{n_vertices}: (T, {3 * n_vertices}) or (T, {n_vertices}, 3)")
    arr = arr[::stride]
    if arr.shape[0] < min_frames:
        raise BadInputError(f"{path}: {arr.shape[0]} frame(s){f' after taking every {stride}th' if stride > 1 else ''}"
                            f", need at least {min_frames}")
    bad = ~np.isfinite(arr).all(axis=(1, 2))  # (T,)
    if bad.any():
        raise BadInputError(f"{path}: {int(bad.sum())} frame(s) contain NaN or inf (first: frame "
                            f"{int(np.argmax(bad)) * stride})")
    return arr.astype(np.float32, copy=False)


def _check_indices(idx: np.ndarray, path: str | os.PathLike, n_vertices: int | None, what: str) -> np.ndarray:
    if idx.size == 0:
        raise BadInputError(f"{path}: empty {what}")
    if not np.issubdtype(idx.dtype, np.integer):
        raise BadInputError(f"{path}: {what} must be integers, got dtype {idx.dtype}")
    lo, hi = int(idx.min()), int(idx.max())
    if lo < 0:
        raise BadInputError(f"{path}: {what} holds the negative index {lo}; indices must lie in "
                            f"[0, {n_vertices if n_vertices is not None else 'V'})")
    if n_vertices is not None and hi >= n_vertices:
        raise BadInputError(f"{path}: {what} holds index {hi}, but the mesh has {n_vertices} vertices "
                            f"(indices must lie in [0, {n_vertices}))")
    return idx.astype(np.int64)


def load_faces(path: str | os.PathLike, n_vertices: int | None = None, what: str = "faces file") -> np.ndarray:
    """Load and check a (F, 3) triangle list from ``.npy``/``.npz``.

    Args:
        path: the file.
        n_vertices: V of the mesh the faces index; None checks only for negative indices.
        what: the file's role, used in messages.
    Returns:
        (F, 3) int64 vertex indices.
    Raises:
        MissingFileError / BadInputError naming the file: unreadable, not (F, 3), not integers,
            empty, or an index outside [0, V).
    """
    arr = load_array(path, what, npz_keys=("faces",))
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise BadInputError(f"{path}: shape {arr.shape}, expected faces (F, 3)")
    return _check_indices(arr, path, n_vertices, what)


def load_indices(path: str | os.PathLike, n_vertices: int | None = None,
                 what: str = "vertex index list") -> np.ndarray:
    """Load and check a list of vertex indices (a region such as ``regions/lips.txt``).

    Args:
        path: ``.npy`` (1-D integers) or text: integers separated by commas and/or whitespace.
        n_vertices: V of the mesh; None checks only for negative indices.
        what: the file's role, used in messages.
    Returns:
        (R,) int64.
    Raises:
        MissingFileError / BadInputError naming the file: unreadable, not integers (the first
            bad token given), empty, or an index outside [0, V).
    """
    path = Path(path)
    if path.suffix in (".npy", ".npz"):
        arr = load_array(path, what, npz_keys=("indices",))
        if arr.ndim != 1:
            raise BadInputError(f"{path}: shape {arr.shape}, expected a 1-D {what}")
    else:
        values = []
        for token in read_text(path, what).replace(",", " ").split():
            try:
                values.append(int(token))
            except ValueError:
                raise BadInputError(f"{path}: not a {what}: {token[:40]!r} is not an integer") from None
        arr = np.array(values, dtype=np.int64)
    return _check_indices(arr, path, n_vertices, what)
