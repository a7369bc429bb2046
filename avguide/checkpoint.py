"""Checkpoints: safetensors weights + JSON metadata, written atomically, resumed exactly.

A run directory (see :mod:`avguide.train.run` for how a training run keeps it consistent)::

    RUN/config.json                    the resolved config and avguide version
    RUN/ckpt-00000012/model.safetensors   weights (our own format; no pickle)
    RUN/ckpt-00000012/train_state.pt   optimiser, scheduler and RNG states (loaded weights_only=True)
    RUN/ckpt-00000012/meta.json        epoch, step, metrics, config, version (written last)
    RUN/last.json                      {"checkpoint": "ckpt-00000012"}
    RUN/best.json                      {"checkpoint": ..., epoch, step, metrics} of the best one

Readers (:func:`load_checkpoint`, used by the lip reader, ``animate`` and resumed training) only
follow the pointers; every way a file can be broken is one
:class:`~avguide.errors.BadInputError` line naming the file (via :mod:`avguide.io`).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

import avguide
from avguide.errors import BadInputError, MissingFileError
from avguide.io import (load_json, load_safetensors, load_torch_state, save_safetensors_atomic, save_torch_atomic,
                        write_json_atomic)


def checkpoint_name(step: int) -> str:
    """The directory name of the checkpoint written after ``step`` optimiser steps."""
    return f"ckpt-{int(step):08d}"


def rng_state() -> dict[str, Any]:
    """Python, numpy and torch RNG states, in a form ``torch.load(weights_only=True)`` accepts."""
    py = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"python": [py[0], list(py[1]), py[2]],
            "numpy": [kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), pos, has_gauss, cached],
            "torch": torch.get_rng_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    py, npy = state["python"], state["numpy"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    np.random.set_state((npy[0], npy[1].numpy().astype(np.uint32), *npy[2:]))
    torch.set_rng_state(state["torch"])


def save_checkpoint(run_dir: str | Path, model: torch.nn.Module, train_state: dict[str, Any],
                    meta: dict[str, Any], config: dict) -> Path:
    """Write one checkpoint directory (it counts only once a pointer names it).

    Args:
        run_dir: the run directory.
        model: its ``state_dict`` (unwrapped from DDP by the caller) goes to safetensors.
        train_state: optimiser/scheduler state dicts etc. (tensors, numbers, strings, containers);
            the RNG states are added here.
        meta: must contain "epoch" and "step"; metrics welcome.
        config: the resolved config (saved with the weights).
    Returns:
        The checkpoint directory ``RUN/ckpt-<step>``; ``meta.json`` is its last file written.
    """
    ckpt = Path(run_dir) / checkpoint_name(meta["step"])
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_safetensors_atomic(ckpt / "model.safetensors", state, metadata={"avguide_version": avguide.__version__})
    save_torch_atomic(ckpt / "train_state.pt", {**train_state, "rng": rng_state()})
    write_json_atomic(ckpt / "meta.json", {**meta, "config": config, "avguide_version": avguide.__version__})
    return ckpt


def read_pointer(run: str | Path, which: str) -> str | None:
    """The checkpoint name in ``RUN/<which>.json`` ("last" or "best"), None when there is none.

    Raises:
        BadInputError: the pointer file is corrupt or names no checkpoint.
    """
    path = Path(run) / f"{which}.json"
    if not path.is_file():
        return None
    name = load_json(path, "run pointer").get("checkpoint")
    if not isinstance(name, str) or not name.startswith("ckpt-") or "/" in name:
        raise BadInputError(f"{path}: corrupt run pointer (no checkpoint name)")
    return name


def checkpoint_dir(run_or_ckpt: str | Path, which: str = "last") -> Path:
    """Resolve a run directory (its ``which`` checkpoint, "best" falling back to "last"), a
    checkpoint directory, or a shipped model's name (:func:`avguide.pretrained.resolve`, its files'
    sha256 checked): every command that takes a run takes a shipped name too. A run's best
    checkpoint is the one its last checkpoint's record names (``best_checkpoint`` in meta.json),
    so that a run killed between writing ``last.json`` and ``best.json`` reads consistently; runs
    saved before the record held it use ``best.json``.

    Raises:
        MissingFileError: nothing loadable there. BadInputError: a corrupt pointer or shipped file.
    """
    from avguide.pretrained import resolve

    p = resolve(run_or_ckpt)
    if (p / "model.safetensors").is_file():
        return p
    last = read_pointer(p, "last")
    if last is None:
        raise MissingFileError(f"{p}: not a run or checkpoint directory (no last.json / model.safetensors)")
    name, named_in = last, p / "last.json"
    if which == "best":  # the last checkpoint's record names the best one; runs saved before it: best.json
        recorded = load_meta(p / last).get("best_checkpoint") if (p / last / "meta.json").is_file() else None
        if recorded:
            name, named_in = recorded, p / last / "meta.json"
        elif read_pointer(p, "best") is not None:
            name, named_in = read_pointer(p, "best"), p / "best.json"
    ckpt = p / name
    if not (ckpt / "model.safetensors").is_file():
        raise MissingFileError(f"{ckpt}: checkpoint named in {named_in} is missing")
    return ckpt


def load_meta(ckpt: Path) -> dict:
    """``meta.json`` of a checkpoint directory (epoch, step, metrics, config).

    Raises:
        MissingFileError / BadInputError: missing, corrupt, or without epoch and step.
    """
    meta = load_json(Path(ckpt) / "meta.json", "checkpoint metadata")
    if not isinstance(meta.get("epoch"), int) or not isinstance(meta.get("step"), int):
        raise BadInputError(f"{Path(ckpt) / 'meta.json'}: corrupt checkpoint metadata (no epoch / step)")
    return meta


def load_checkpoint(run_or_ckpt: str | Path, which: str = "last") -> tuple[dict[str, torch.Tensor], dict, Path]:
    """Load weights and metadata.

    Returns:
        (state dict, meta dict with "config", checkpoint directory).
    Raises:
        MissingFileError / BadInputError: missing or corrupt files (one line naming the file).
    """
    ckpt = checkpoint_dir(run_or_ckpt, which)
    state = load_safetensors(ckpt / "model.safetensors", "model weights")
    return state, load_meta(ckpt), ckpt


def load_train_state(ckpt: Path) -> dict[str, Any]:
    """Optimiser/scheduler/RNG state of a checkpoint (``torch.load(weights_only=True)``); the RNG
    states are restored as a side effect so the resumed run continues exactly.

    Raises:
        MissingFileError / BadInputError: missing, corrupt, or without the RNG states.
    """
    path = Path(ckpt) / "train_state.pt"
    state = load_torch_state(path, "training state")
    if not isinstance(state, dict) or not isinstance(state.get("rng"), dict):
        raise BadInputError(f"{path}: corrupt training state (no RNG states)")
    try:
        set_rng_state(state.pop("rng"))
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, RuntimeError) as e:
        raise BadInputError(f"{path}: corrupt training state (RNG states: {type(e).__name__})") from None
    return state


def load_weights(model: torch.nn.Module, state: dict[str, torch.Tensor], source: Path, what: str = "weights") -> None:
    """``model.load_state_dict(state, strict=True)``, a mismatch being the file's fault.

    Raises:
        BadInputError: names or shapes that do not fit ``model``, naming ``source``.
    """
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise BadInputError(f"{source}: {what} do not fit this model ({' '.join(str(e).split())[:300]})") from None
