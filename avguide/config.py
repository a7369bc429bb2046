"""Typed configs: plain dataclasses mirrored by YAML, with ``key=value`` overrides.

Every command builds its config the same way::

    cfg = load_config(SynthConfig, yaml_path, ["subjects=4", "motion.blink_rate=0.3"])

:func:`load_config` merges the YAML file and the overrides into the dataclass defaults, checks
every field's type, runs each (nested) dataclass's optional ``check() -> list[str]`` method, and
reports *all* problems in one :class:`~avguide.errors.BadInputError`. Two rules hold for every
config: numbers are finite (no NaN or inf), and a ``seed`` lies in [0, :data:`MAX_SEED`]. :func:`config_to_dict`
gives the resolved config that is saved in every checkpoint and result file.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from avguide.errors import BadInputError
from avguide.io.files import load_yaml

C = TypeVar("C")

MAX_SEED = 2 ** 32 - 1
"""Seeds (every config's ``seed`` and ``seeds``, ``--seed``) lie in [0, MAX_SEED]."""


def config_to_dict(cfg: Any) -> dict:
    """Resolved config as plain JSON/YAML-able data (nested dicts, lists, scalars)."""
    return dataclasses.asdict(cfg)


def load_config(cls: type[C], path: str | Path | None = None, overrides: typing.Sequence[str] = (),
                base: dict | None = None) -> C:
    """Build and validate a config dataclass.

    Args:
        cls: the config dataclass.
        path: optional YAML file whose mapping overrides the defaults.
        overrides: ``"a.b=value"`` strings applied after the file; values are parsed as YAML
            scalars/lists (``lr=1e-4``, ``subjects=[A,B]``, ``flag=true``).
        base: optional dict applied before the file (e.g. a checkpoint's saved config).
    Returns:
        A validated instance of ``cls``.
    Raises:
        MissingFileError: ``path`` does not exist.
        BadInputError: ``path`` is not a UTF-8 YAML mapping (a binary file, invalid YAML), or
            unknown keys, wrong types or failed checks, all listed in one line.
    """
    data: dict = {}
    errors: list[str] = []
    if base:
        merge_dicts(data, copy.deepcopy(base))  # overrides must not write into the caller's dict
    if path is not None:
        p = Path(path)
        loaded = load_yaml(p, "config file")
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise BadInputError(f"{p}: top level must be a mapping of config keys, got {type(loaded).__name__}")
        bad_keys = [k for k in loaded if not isinstance(k, str)]
        if bad_keys:
            raise BadInputError(f"{p}: config keys must be names, got {bad_keys[0]!r}")
        merge_dicts(data, loaded)
    for item in overrides:
        if "=" not in item:
            errors.append(f"override {item!r}: expected key=value")
            continue
        key, raw = item.split("=", 1)
        value = parse_value(raw)
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                errors.append(f"override {item!r}: {part} is not a section")
                break
        else:
            node[parts[-1]] = value
    cfg = _build(cls, data, "", errors)
    if not errors:
        _check(cfg, "", errors)
    if errors:  # all problems, on one line
        source = f" (from {path} and the overrides)" if path is not None else ""
        raise BadInputError(f"invalid {cls.__name__}{source}: " + "; ".join(errors))
    return cfg


def parse_value(raw: str) -> Any:
    """The value of a ``key=value`` override: a YAML scalar or list (``1e-4``, ``[A,B]``,
    ``true``), or the raw string when it is not valid YAML; "" stays ""."""
    try:
        return yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        return raw


def flag_overrides(flags: dict[str, Any], overrides: typing.Sequence[str]) -> list[str]:
    """Command-line flags as ``key=value`` overrides, followed by the given overrides.

    A flag is only a shorter way to write its override (``--seed 3`` is ``seed=3``): giving both
    is fine when they agree, and refused when they do not, so that no value silently wins.

    Args:
        flags: ``{config key: flag value}`` (the flag is ``--`` and the key's last part, e.g.
            ``av.expert`` -> ``--expert``); None means the flag was not given.
        overrides: the ``key=value`` strings given as well.
    Returns:
        The overrides to apply.
    Raises:
        BadInputError: a flag and an override set one key to different values (both named).
    """
    given = {}
    for item in overrides:
        if "=" in item:
            key, raw = item.split("=", 1)
            given[key.strip()] = (item, parse_value(raw))
    out, clashes = [], []
    for key, value in flags.items():
        if value is None:
            continue
        if key in given and given[key][1] != parse_value(str(value)):
            clashes.append(f"--{key.rsplit('.', 1)[-1]} {value} and {given[key][0]} set {key} to different values")
        out.append(f"{key}={value}")
    if clashes:
        raise BadInputError("; ".join(clashes) + " (give one of them)")
    return out + list(overrides)


def merge_dicts(dst: dict, src: dict) -> None:
    """Recursively merge ``src`` into ``dst`` (nested dicts merged, other values replaced)."""
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            merge_dicts(dst[k], v)
        else:
            dst[k] = v


def _build(cls: type, data: dict, prefix: str, errors: list[str]) -> Any:
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            errors.append(f"{prefix}{key}: unknown key (allowed: {', '.join(sorted(fields))})")
    kwargs = {}
    for name, f in fields.items():
        if name not in data:
            continue
        value, tp = data[name], hints[name]
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                errors.append(f"{prefix}{name}: expected a mapping, got {value!r}")
                continue
            if f.default_factory is not dataclasses.MISSING:  # a section's own defaults (e.g. the expert's optim)
                value = {**dataclasses.asdict(f.default_factory()), **value}
            kwargs[name] = _build(tp, value, f"{prefix}{name}.", errors)
        else:
            ok, coerced = _coerce(value, tp)
            if not ok:
                errors.append(f"{prefix}{name}: expected {_type_name(tp)}, got {value!r}")
            elif _has_nonfinite(coerced):
                errors.append(f"{prefix}{name}: must be a finite number, got {value!r}")
            else:
                kwargs[name] = coerced
    try:
        return cls(**kwargs)
    except TypeError as e:  # a required field missing
        errors.append(f"{prefix.rstrip('.') or cls.__name__}: {e}")
        return None


def _coerce(value: Any, tp: Any) -> tuple[bool, Any]:
    origin = get_origin(tp)
    if tp is Any:
        return True, value
    if origin in (Union, types.UnionType):
        for arg in get_args(tp):
            ok, v = _coerce(value, arg)
            if ok:
                return True, v
        return False, value
    if tp is type(None):
        return value is None, value
    if origin is Literal:
        return value in get_args(tp), value
    if tp is bool:
        return isinstance(value, bool), value
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return True, float(value)
        if isinstance(value, str):  # YAML reads 1e-4 as a string
            try:
                return True, float(value)
            except ValueError:
                return False, value
        return False, value
    if tp is str:
        return isinstance(value, str), value
    if origin in (list, tuple):
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            return False, value
        args = get_args(tp)
        elem = args[0] if args else Any
        out = []
        for v in value:
            ok, c = _coerce(v, elem)
            if not ok:
                return False, value
            out.append(c)
        return True, (tuple(out) if origin is tuple else out)
    if origin is dict:
        return isinstance(value, dict), value
    return isinstance(value, tp) if isinstance(tp, type) else True, value


def _has_nonfinite(value: Any) -> bool:
    """A float (or a list of floats) that is NaN or infinite: no config number may be."""
    if isinstance(value, float):
        return not math.isfinite(value)
    return isinstance(value, (list, tuple)) and any(_has_nonfinite(v) for v in value)


def _seed_errors(cfg: Any) -> list[str]:
    """``seed`` / ``seeds`` fields outside [0, MAX_SEED] (numpy refuses negative seeds, torch
    those of 64 bits and more)."""
    errors = []
    for name in ("seed", "seeds"):
        value = getattr(cfg, name, None)
        values = value if isinstance(value, (list, tuple)) else [value]
        if any(isinstance(v, int) and not 0 <= v <= MAX_SEED for v in values):
            errors.append(f"{name}: must be {'integers' if name == 'seeds' else 'an integer'} in [0, {MAX_SEED}], "
                          f"got {value}")
    return errors


def _type_name(tp: Any) -> str:
    if get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def _check(cfg: Any, prefix: str, errors: list[str]) -> None:
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            _check(value, f"{prefix}{f.name}.", errors)
    errors.extend(f"{prefix}{msg}" for msg in _seed_errors(cfg))
    check = getattr(cfg, "check", None)
    if callable(check):
        errors.extend(f"{prefix}{msg}" for msg in check())
