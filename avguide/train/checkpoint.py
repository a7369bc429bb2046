"""Checkpoints: safetensors weights + JSON config, written atomically, resumed exactly.

A run directory holds::

    RUN/config.json                 the resolved config and avguide version (written at start)
    RUN/ckpt-000012/model.safetensors  weights (our own format; no pickle)
    RUN/ckpt-000012/train_state.pt  optimiser, scheduler and RNG states (loaded weights_only=True)
    RUN/ckpt-000012/meta.json       epoch, step, metrics, config, version
    RUN/last.json                   {"checkpoint": "ckpt-000012"}: written last, atomically

A checkpoint counts only once ``last.json`` points at it, so an interrupted save never replaces a
good one. ``best`` (by a validation metric) is a copy named in ``best.json``.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

import avguide
from avguide.errors import BadInputError, MissingFileError
from avguide.io import atomic_path, write_json_atomic


def rng_state() -> dict[str, Any]:
    """Python, numpy and torch RNG states (to resume a run exactly)."""
    return {"python": random.getstate(), "numpy": np.random.get_state(),
            "torch": torch.get_rng_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    np.random.set_state(tuple(state["numpy"]))
    torch.set_rng_state(state["torch"])


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def start_run(run_dir: str | Path, config: dict, *, resume: bool) -> Path:
    """Create (or check, when resuming) a run directory and save its config.

    Raises:
        BadInputError: the directory already holds a run and ``resume`` is False, or resuming a
            run with no checkpoint.
    """
    run = Path(run_dir)
    if resume:
        if not (run / "last.json").is_file():
            raise MissingFileError(f"--resume {run}: no checkpoint there (last.json missing)")
        return run
    if (run / "last.json").is_file() or (run / "config.json").is_file():
        raise BadInputError(f"--out {run}: already holds a run; use --resume {run} or another --out")
    write_json_atomic(run / "config.json", {"config": config, "avguide_version": avguide.__version__})
    return run


def save_checkpoint(run_dir: str | Path, model: torch.nn.Module, train_state: dict[str, Any],
                    meta: dict[str, Any], config: dict, *, best: bool = False, keep: int = 2) -> Path:
    """Write a checkpoint and make it the run's latest.

    Args:
        run_dir: the run directory.
        model: its ``state_dict`` (unwrapped from DDP by the caller) goes to safetensors.
        train_state: optimiser/scheduler state dicts etc. (tensors, numbers, strings, containers);
            the RNG states are added here.
        meta: must contain "epoch" and "step"; metrics welcome.
        config: the resolved config (saved with the weights).
        best: also record this checkpoint as ``best``.
        keep: how many latest checkpoints to keep (best is never deleted).
    Returns:
        The checkpoint directory.
    """
    run = Path(run_dir)
    name = f"ckpt-{int(meta['step']):08d}"
    ckpt = run / name
    ckpt.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(ckpt / "model.safetensors") as tmp:
        save_file(state, str(tmp), metadata={"avguide_version": avguide.__version__})
    with atomic_path(ckpt / "train_state.pt") as tmp:
        torch.save({**train_state, "rng": _rng_for_save()}, tmp)
    write_json_atomic(ckpt / "meta.json", {**meta, "config": config, "avguide_version": avguide.__version__})
    write_json_atomic(run / "last.json", {"checkpoint": name})
    if best:
        write_json_atomic(run / "best.json", {"checkpoint": name, **{k: v for k, v in meta.items() if k != "config"}})
    _prune(run, keep)
    return ckpt


def _rng_for_save() -> dict[str, Any]:
    s = rng_state()
    kind, keys, pos, has_gauss, cached = s["numpy"]
    return {"python": [s["python"][0], list(s["python"][1]), s["python"][2]],
            "numpy": [kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), pos, has_gauss, cached],
            "torch": s["torch"]}


def _prune(run: Path, keep: int) -> None:
    protected = {json.loads((run / f).read_text())["checkpoint"] for f in ("last.json", "best.json") if (run / f).is_file()}
    ckpts = sorted(p for p in run.glob("ckpt-*") if p.is_dir())
    for p in ckpts[:-keep]:
        if p.name not in protected:
            shutil.rmtree(p, ignore_errors=True)


def checkpoint_dir(run_or_ckpt: str | Path, which: str = "last") -> Path:
    """Resolve a run directory (its ``last``/``best`` checkpoint) or a checkpoint directory.

    Raises:
        MissingFileError: nothing loadable there.
    """
    p = Path(run_or_ckpt)
    if (p / "model.safetensors").is_file():
        return p
    pointer = p / f"{which}.json"
    if not pointer.is_file():
        pointer = p / "last.json"
    if not pointer.is_file():
        raise MissingFileError(f"{p}: not a run or checkpoint directory (no {which}.json / model.safetensors)")
    ckpt = p / json.loads(pointer.read_text())["checkpoint"]
    if not (ckpt / "model.safetensors").is_file():
        raise MissingFileError(f"{ckpt}: checkpoint named in {pointer.name} is missing")
    return ckpt


def load_checkpoint(run_or_ckpt: str | Path, which: str = "last") -> tuple[dict[str, torch.Tensor], dict, Path]:
    """Load weights and metadata.

    Returns:
        (state dict, meta dict with "config", checkpoint directory).
    Raises:
        MissingFileError / BadInputError: missing or corrupt files.
    """
    ckpt = checkpoint_dir(run_or_ckpt, which)
    try:
        state = load_file(str(ckpt / "model.safetensors"))
        meta = json.loads((ckpt / "meta.json").read_text())
    except (OSError, ValueError) as e:
        raise BadInputError(f"{ckpt}: corrupt checkpoint ({e})") from None
    return state, meta, ckpt


def load_train_state(ckpt: Path) -> dict[str, Any]:
    """Optimiser/scheduler/RNG state of a checkpoint (``torch.load(weights_only=True)``); the RNG
    states are restored as a side effect so the resumed run continues exactly."""
    state = torch.load(ckpt / "train_state.pt", weights_only=True)
    rng = state.pop("rng")
    set_rng_state({"python": (rng["python"][0], tuple(rng["python"][1]), rng["python"][2]),
                   "numpy": (rng["numpy"][0], rng["numpy"][1].numpy().astype(np.uint32), *rng["numpy"][2:]),
                   "torch": rng["torch"]})
    return state
