"""Writing: output paths checked before the work starts, then atomic writes.

Every output of avguide goes through :func:`atomic_path` (or a writer built on it), so an
interrupted run or a full disk never leaves a half-written file under the final name. A
problem of the user's environment (read-only directory, full disk, a file where a directory is
expected) becomes one :class:`~avguide.errors.BadInputError` line naming the path.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from avguide.errors import BadInputError

_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM,
                 errno.EISDIR, errno.ENOTDIR, errno.ENAMETOOLONG}
"""OSError numbers of a write or rename that describe the user's disk or paths, not a bug."""


def os_reason(e: OSError) -> str:
    """A short reason for an OSError ("No space left on device"), without the path."""
    return e.strerror or type(e).__name__


# ------------------------------------------------------------------------- checks before work
MAX_NAME_BYTES = 200
"""Longest output file name (bytes, last path component) accepted: file systems allow 255, and
the temporary files written beside an output add up to ~40 bytes to its name."""


def _check_name(path: Path, arg: str) -> None:
    """The last component of ``path`` is short enough (see :data:`MAX_NAME_BYTES`)."""
    n = len(os.fsencode(path.name))
    if n > MAX_NAME_BYTES:
        raise BadInputError(f"{arg} {path}: file name of {n} bytes; at most {MAX_NAME_BYTES}")


def _nearest_existing(path: Path) -> Path:
    """``path`` or its closest existing ancestor."""
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _check_can_create_in(directory: Path, arg: str, target: Path) -> None:
    """The directory ``directory`` exists or can be created, and files can be written in it."""
    base = _nearest_existing(directory.absolute())
    if not base.is_dir():
        raise BadInputError(f"{arg} {target}: {base} is a file, not a directory")
    try:  # probe with a real file: os.access is wrong for root and for read-only filesystems
        fd, probe = tempfile.mkstemp(prefix=".avguide-probe.", dir=base)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise BadInputError(f"{arg} {target}: cannot write in {base} ({os_reason(e)})") from None


def check_output_file(path: str | os.PathLike, arg: str = "-o", *, overwrite: bool = True) -> Path:
    """Check, before any work, that ``path`` can be written as a file.

    Nothing is created: missing parent directories are only checked to be creatable (they are
    made when the file is written).

    Args:
        path: the output file.
        arg: the argument that named it, used in messages (``-o``, ``--markdown``).
        overwrite: False refuses an existing file.
    Returns:
        ``path`` as a Path.
    Raises:
        BadInputError: ``path`` is empty or a directory (or ends with a separator), its name is
            longer than :data:`MAX_NAME_BYTES`, it exists while ``overwrite`` is False, lies
            under a regular file, or its directory is not writable.
    """
    text = os.fspath(path)
    if not text.strip():
        raise BadInputError(f"{arg}: empty path; give a file name")
    path = Path(path)
    if path.is_dir() or text.endswith(os.sep):
        raise BadInputError(f"{arg} {text}: is a directory; give a file name")
    _check_name(path, arg)
    if path.exists() and not overwrite:
        raise BadInputError(f"{arg} {path}: already exists; remove it or choose another name")
    _check_can_create_in(path.parent, arg, path)
    return path


def check_output_dir(path: str | os.PathLike, arg: str = "--out") -> Path:
    """Check, before any work, that ``path`` is (or can be created as) a writable directory.

    Args:
        path: the output directory.
        arg: the argument that named it, used in messages.
    Returns:
        ``path`` as a Path (not created).
    Raises:
        BadInputError: ``path`` is empty or its name longer than :data:`MAX_NAME_BYTES`, ``path``
            or an ancestor is a regular file, or it is not writable.
    """
    if not os.fspath(path).strip():
        raise BadInputError(f"{arg}: empty path; give a directory")
    path = Path(path)
    _check_name(path, arg)
    if path.exists() and not path.is_dir():
        raise BadInputError(f"{arg} {path}: exists and is not a directory")
    _check_can_create_in(path, arg, path)
    return path


# ----------------------------------------------------------------------------- atomic writing
@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it over ``path``.

    Args:
        path: final destination. Its parent directory is created if needed.
    Yields:
        A temporary file path in the same directory (same filesystem, so the rename is atomic).
        On an exception the temporary file is removed and ``path`` is left untouched.
    Raises:
        BadInputError: the directory cannot be created or written, the disk is full, or
            ``path`` is a directory (an OSError of the writes in the ``with`` body with such a
            cause is turned into this too; any other exception passes unchanged).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
        os.close(fd)
    except OSError as e:
        raise BadInputError(f"{path}: cannot write ({os_reason(e)})") from None
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual mode
        os.replace(tmp_path, path)
    except OSError as e:
        if e.errno in _WRITE_ERRNOS:
            raise BadInputError(f"{path}: cannot write ({os_reason(e)})") from None
        raise
    finally:
        with contextlib.suppress(OSError):
            tmp_path.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path` for the errors)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:  # a full disk raises here (write or close), before the rename
            f.write(data)


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


def save_safetensors_atomic(path: str | os.PathLike, tensors: dict, metadata: dict[str, str] | None = None) -> None:
    """Save ``{name: torch.Tensor}`` as .safetensors atomically (serialised in memory first,
    so a full disk is one clear error)."""
    from safetensors.torch import save

    write_bytes_atomic(path, save(tensors, metadata=metadata))


def save_torch_atomic(path: str | os.PathLike, obj: Any) -> None:
    """``torch.save`` ``obj`` (tensors, numbers, containers) atomically, through memory."""
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    write_bytes_atomic(path, buf.getvalue())


def append_jsonl(path: str | os.PathLike, record: dict) -> None:
    """Append one JSON line to ``path`` (created if needed) and fsync it.

    A line is written with a single ``write`` call, so a kill leaves at most one partial last
    line, which :func:`avguide.io.load_jsonl` can drop (``partial_tail="drop"``).

    Raises:
        BadInputError: the file cannot be written (read-only, disk full).
    """
    path = Path(path)
    line = (json.dumps(record, default=_json_default) + "\n").encode("utf-8")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "ab") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise BadInputError(f"{path}: cannot write ({os_reason(e)})") from None
