"""Reading: text formats (JSON, JSON lines, YAML), restricted pickles, safetensors, torch state.

Each loader checks that the file exists and is a file, parses it and turns every way the
content can be broken (OSError, UnicodeDecodeError, JSON/YAML/pickle/zip/safetensors errors)
into one :class:`~avguide.errors.BadInputError` line: ``<path>: <what is wrong>``. A missing
file is a :class:`~avguide.errors.MissingFileError`.
"""

from __future__ import annotations

import functools
import io
import json
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

from avguide.errors import BadInputError, MissingFileError
from avguide.io.output import os_reason


def one_line(text: str, limit: int = 300) -> str:
    """``text`` with every run of whitespace (newlines too) collapsed to one space, shortened."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def existing_file(path: str | os.PathLike, what: str = "file") -> Path:
    """``path`` as a Path, checked to be an existing regular file.

    Raises:
        MissingFileError: nothing there.
        BadInputError: a directory (or anything but a file) is there.
    """
    path = Path(path)
    if not path.exists():
        raise MissingFileError(f"{path}: {what} not found")
    if not path.is_file():
        raise BadInputError(f"{path}: is a directory, expected a {what}" if path.is_dir()
                            else f"{path}: not a regular file, expected a {what}")
    return path


def read_bytes(path: str | os.PathLike, what: str = "file") -> bytes:
    """The bytes of a file.

    Raises:
        MissingFileError / BadInputError: missing, a directory, or unreadable (permissions, I/O).
    """
    path = existing_file(path, what)
    try:
        return path.read_bytes()
    except OSError as e:
        raise BadInputError(f"{path}: cannot read {what} ({os_reason(e)})") from None


def read_text(path: str | os.PathLike, what: str = "text file") -> str:
    """The text of a UTF-8 file (a leading byte-order mark is dropped).

    Raises:
        MissingFileError / BadInputError: as :func:`read_bytes`, or not UTF-8 (a binary file).
    """
    data = read_bytes(path, what)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise BadInputError(f"{path}: not a UTF-8 {what} (byte 0x{data[e.start]:02x} at offset "
                            f"{e.start}; a binary file?)") from None


def load_json(path: str | os.PathLike, what: str = "JSON file", *, expect: type | None = dict) -> Any:
    """Parse a JSON file.

    Args:
        path: the file.
        what: its role, used in messages ("run pointer", "manifest").
        expect: required type of the top-level value (None: any).
    Returns:
        The parsed value.
    Raises:
        MissingFileError / BadInputError: missing, unreadable, not UTF-8, empty, invalid JSON
            (line and column given), or a top level of another type than ``expect``.
    """
    text = read_text(path, what)
    if not text.strip():
        raise BadInputError(f"{path}: empty {what} (truncated write?)")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise BadInputError(f"{path}: corrupt {what}: {e.msg} at line {e.lineno} column {e.colno}") from None
    if expect is not None and not isinstance(obj, expect):
        raise BadInputError(f"{path}: expected a JSON {_json_type(expect)} at the top level, got "
                            f"{_json_type(type(obj))}")
    return obj


def _json_type(tp: type) -> str:
    return {dict: "object", list: "array", str: "string", int: "number", float: "number",
            bool: "boolean", type(None): "null"}.get(tp, tp.__name__)


def load_jsonl(path: str | os.PathLike, what: str = "JSON-lines file", *,
               partial_tail: str = "error") -> list[dict]:
    """Parse a file of one JSON object per line (e.g. ``metrics.jsonl``); blank lines are skipped.

    Args:
        path: the file.
        what: its role, used in messages.
        partial_tail: "error", or "drop": a last line without its newline that does not parse
            (a write cut by a kill) is left out instead of being an error.
    Returns:
        The objects, in file order.
    Raises:
        MissingFileError / BadInputError: missing, unreadable, not UTF-8, or a line that is not
            a JSON object (its number given).
    """
    if partial_tail not in ("error", "drop"):
        raise ValueError(f"partial_tail={partial_tail!r}; allowed: error, drop")
    text = read_text(path, what)
    lines = text.split("\n")  # the last element is "" when the file ends with a newline
    out = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            if i == len(lines) - 1 and partial_tail == "drop":
                break
            raise BadInputError(f"{path}: corrupt {what}: line {i + 1} is not JSON ({e.msg})") from None
        if not isinstance(obj, dict):
            raise BadInputError(f"{path}: corrupt {what}: line {i + 1} is not a JSON object")
        out.append(obj)
    return out


@functools.lru_cache(maxsize=None)
def _unique_key_loader():
    """A ``yaml.SafeLoader`` that refuses a key given twice in one mapping (plain YAML keeps the
    last one silently: ``lr: 1e-3`` then ``lr: 1e-4`` would train with a value the user may not see)."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":  # "<<: *anchor": its keys may be overridden
                    continue
                key = self.construct_object(key_node, deep=True)
                if isinstance(key, (str, int, float, bool)) and key in seen:
                    raise yaml.constructor.ConstructorError(None, None, f"key {key!r} given twice",
                                                            key_node.start_mark)
                seen.add(key)
            return super().construct_mapping(node, deep)

    return UniqueKeyLoader


def load_yaml(path: str | os.PathLike, what: str = "YAML file") -> Any:
    """Parse a YAML file like ``yaml.safe_load`` (no tags that build Python objects), refusing a
    key given twice in one mapping.

    Returns:
        The parsed value (None for an empty file).
    Raises:
        MissingFileError / BadInputError: missing, unreadable, not UTF-8 (a binary file),
            invalid YAML or a duplicate key (line and column given).
    """
    import yaml

    text = read_text(path, what)
    try:
        return yaml.load(text, Loader=_unique_key_loader())  # noqa: S506 (a SafeLoader)
    except yaml.MarkedYAMLError as e:
        where = f" at line {e.problem_mark.line + 1} column {e.problem_mark.column + 1}" if e.problem_mark else ""
        raise BadInputError(f"{path}: invalid {what}{where}: {one_line(e.problem or e.context or '')}") from None
    except yaml.YAMLError as e:
        raise BadInputError(f"{path}: invalid {what}: {one_line(e)}") from None


# ----------------------------------------------------------------------------- pickles
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


class _ForbiddenGlobal(pickle.UnpicklingError):
    """The pickle names a callable outside :data:`_ALLOWED_GLOBALS`."""


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only numpy-array reconstruction and plain containers."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise _ForbiddenGlobal(f"forbidden global {module}.{name}")


def safe_load_pickle(path: str | os.PathLike, what: str = "pickle") -> Any:
    """Load a pickle that may contain only numpy arrays, numbers, strings and containers.

    Used for ``templates.pkl`` (VOCASET / BIWI), which users download from third parties.
    Python-2 pickles (latin1 strings) are accepted.

    Args:
        path: the pickle file.
        what: its role, used in messages.
    Returns:
        The unpickled object.
    Raises:
        MissingFileError: the file does not exist.
        BadInputError: the file is corrupt or references anything but numpy arrays and plain
            containers (a malicious pickle is rejected before any of its code can run).
    """
    data = read_bytes(path, what)
    try:
        return _RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()
    except _ForbiddenGlobal as e:
        raise BadInputError(f"{path}: refused to unpickle ({one_line(e)}); only numpy arrays and plain "
                            "containers are allowed") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError, MemoryError,
            UnicodeDecodeError) as e:
        raise BadInputError(f"{path}: corrupt {what} ({type(e).__name__}: {one_line(e)})") from None


# ----------------------------------------------------------------------------- tensors
def load_safetensors(path: str | os.PathLike, what: str = "safetensors file", *,
                     with_metadata: bool = False) -> dict | tuple[dict, dict[str, str]]:
    """Load every tensor of a ``.safetensors`` file onto the CPU.

    Args:
        path: the file.
        what: its role ("model weights", "render assets"), used in messages.
        with_metadata: also return the header's ``__metadata__`` strings.
    Returns:
        ``{name: torch.Tensor}``, or (that, metadata) with ``with_metadata``.
    Raises:
        MissingFileError / BadInputError: missing, unreadable, empty, truncated or not
            safetensors at all (random bytes).
    """
    from safetensors import SafetensorError
    from safetensors.torch import load

    data = read_bytes(path, what)
    if not data:
        raise BadInputError(f"{path}: empty {what} (0 bytes; an interrupted write?)")
    try:
        tensors = load(data)
        if not with_metadata:
            return tensors
        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            return tensors, dict(f.metadata() or {})
    except (SafetensorError, ValueError, OSError, RuntimeError, UnicodeDecodeError) as e:
        raise BadInputError(f"{path}: corrupt or truncated {what} ({one_line(e, 160)})") from None


def load_torch_state(path: str | os.PathLike, what: str = "torch state file") -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)``: tensors, numbers, strings and
    containers only, never arbitrary code.

    Raises:
        MissingFileError / BadInputError: missing, unreadable, empty, truncated, not a torch
            file, or holding objects ``weights_only`` refuses.
    """
    import torch

    path = existing_file(path, what)
    if path.stat().st_size == 0:
        raise BadInputError(f"{path}: empty {what} (0 bytes; an interrupted write?)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise BadInputError(f"{path}: refused or corrupt {what} ({one_line(first, 160)})") from None
    except OSError as e:
        raise BadInputError(f"{path}: cannot read {what} ({os_reason(e)})") from None
    except (RuntimeError, EOFError, ValueError, zipfile.BadZipFile, UnicodeDecodeError, KeyError,
            IndexError, AttributeError, TypeError, MemoryError) as e:
        raise BadInputError(f"{path}: corrupt or truncated {what} ({type(e).__name__}: "
                            f"{one_line(e, 160)})") from None
