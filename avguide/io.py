"""Atomic file output and safe loading of untrusted pickles.

Every output of avguide (arrays, audio, json, checkpoints) goes through :func:`atomic_path`
so an interrupted run never leaves a half-written file under the final name.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from avguide.errors import BadInputError, MissingFileError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it over ``path``.

    Args:
        path: final destination. Its parent directory is created if needed.
    Yields:
        A temporary file path in the same directory (same filesystem, so the rename is atomic).
        On an exception the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual mode
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented, key-sorted JSON (deterministic bytes) atomically."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def save_npy_atomic(path: str | os.PathLike, array: np.ndarray) -> None:
    """Save ``array`` as .npy atomically (no pickled objects allowed)."""
    buf = io.BytesIO()
    np.save(buf, np.asarray(array), allow_pickle=False)
    write_bytes_atomic(path, buf.getvalue())


# --------------------------------------------------------------------------- safe unpickling

# numpy reconstructs arrays through these callables; nothing else may be resolved.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("collections", "OrderedDict"),
    ("_codecs", "encode"),  # protocol-2 bytes: encode(str, "latin1")
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only numpy-array reconstruction and plain containers."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"forbidden global {module}.{name}")


def safe_load_pickle(path: str | os.PathLike) -> Any:
    """Load a pickle that may contain only numpy arrays, numbers, strings and containers.

    Used for ``templates.pkl`` (VOCASET / BIWI), which users download from third parties.
    Python-2 pickles (latin1 strings) are accepted.

    Args:
        path: the pickle file.
    Returns:
        The unpickled object.
    Raises:
        MissingFileError: the file does not exist.
        BadInputError: the file is corrupt or references anything but numpy arrays and plain
            containers (a malicious pickle is rejected before any of its code can run).
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: file not found")
    try:
        with open(path, "rb") as f:
            return _RestrictedUnpickler(f, encoding="latin1").load()
    except pickle.UnpicklingError as e:
        raise BadInputError(f"{path}: refused to unpickle ({e}); only numpy arrays and plain "
                            "containers are allowed") from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as e:
        raise BadInputError(f"{path}: corrupt pickle ({type(e).__name__}: {e})") from None
