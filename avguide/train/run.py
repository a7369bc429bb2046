"""The run core of the training loops (animator and expert): set-up, the run directory, resume.

Each loop is a recipe (setup -> train -> save) around these pieces::

    ctx = setup(cfg.device, cfg.seed)                      # torchrun/DDP or one process; seeds
    cfg = load_run_config(Cfg, yaml, overrides, resume=RUN, may_change=(...))   # before that
    with Run(out, resolved_config, ctx, resume=...) as run:  # lock, config.json, repair
        weights, state = run.restore()                      # None on a fresh start
        for epoch in range(run.epoch + 1, epochs + 1):
            if run.stalled(patience): break                    # early stopping (optim.patience)
            shuffle_for_epoch(loader, epoch, cfg.seed)
            ...
            run.save(model, train_state, epoch=, step=, metrics=, score=, seconds=)

**Run state.** A checkpoint's ``meta.json`` is the one record of the run's state: epoch, step,
metrics, the name and score of the best checkpoint so far and the epoch's ``metrics.jsonl``
line. :meth:`Run.save` writes the checkpoint, then ``last.json`` (atomically: this is the commit),
then the files derived from the record: ``best.json``, the ``metrics.jsonl`` line, pruning. A
kill at any instant leaves either the previous commit or the new one, and opening the run again
(:class:`Run`) repairs the derived files from the committed record: ``best.json`` rewritten, a
partial last line of ``metrics.jsonl`` dropped, lines past the commit dropped and a missing line
for it appended, uncommitted checkpoint directories removed. So ``last.json``, ``best.json``
and ``metrics.jsonl`` always agree once a run is opened. A run killed before its first
checkpoint starts again from scratch (``--resume`` with its saved config, or ``--out``).

**Lock.** The run directory is locked (``fcntl.flock`` on ``RUN/.lock``) while a process trains
it: a second one gets one clear error, whatever the order of their starts.

**Resume.** :func:`load_run_config` reloads ``RUN/config.json`` (upgrading an older layout) and
applies the overrides; a key that changed must be one the loop applies on resume
(``may_change``: learning rate, epochs, loss weights, ...), anything else (the model's shape,
the data, the seed) is refused, naming the key.

**Early stopping.** Besides the best score, the record keeps the last *improvement*: the epoch
whose score first fell below ``(1 - min_improvement)`` times the previous improvement's score.
:meth:`Run.stalled` is true once ``patience`` epochs have passed since it; the loops stop there,
and a resumed run that has already stalled stops before its first step.
"""

from __future__ import annotations

import fcntl
import math
import os
import random
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

import avguide
from avguide.checkpoint import (checkpoint_name, load_meta, load_train_state, load_weights, read_pointer,
                                save_checkpoint)
from avguide.config import config_to_dict, load_config
from avguide.errors import BadInputError, MissingFileError
from avguide.io import (append_jsonl, check_output_dir, load_json, load_jsonl, load_safetensors, write_json_atomic,
                        write_text_atomic)
from avguide.train import distributed as D
from avguide.train.logging import RunLogger


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def setup(device: str, seed: int) -> D.DistContext:
    """Join torchrun's process group (if launched by it), pick the device, seed this process
    with ``seed + rank``."""
    ctx = D.init_distributed(device)
    seed_everything(seed + ctx.rank)
    return ctx


def shuffle_for_epoch(loader: torch.utils.data.DataLoader, epoch: int, seed: int) -> None:
    """The one shuffling rule: epoch ``e``'s order is drawn from a generator seeded with
    ``seed * 100003 + e`` (with several processes: ``DistributedSampler(seed).set_epoch(e)``),
    so a resumed run sees the same order as an uninterrupted one."""
    if isinstance(loader.sampler, torch.utils.data.DistributedSampler):
        loader.sampler.set_epoch(epoch)
    elif loader.generator is not None:
        loader.generator.manual_seed(seed * 100_003 + epoch)


# ----------------------------------------------------------------------------- the config
def _flat(d: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = list(v) if isinstance(v, tuple) else v
    return out


def saved_config(run: str | Path) -> dict:
    """The config a run saved (``RUN/config.json``).

    Raises:
        MissingFileError: no run there. BadInputError: a corrupt file.
    """
    path = Path(run) / "config.json"
    if not path.is_file():
        raise MissingFileError(f"--resume {run}: no run there (config.json missing)")
    config = load_json(path, "run config").get("config")
    if not isinstance(config, dict):
        raise BadInputError(f"{path}: corrupt run config (no 'config' mapping)")
    return config


def load_run_config(cls: type, config_path: str | Path | None, overrides: list[str] | tuple[str, ...],
                    resume: str | Path | None, *, may_change: tuple[str, ...] = (),
                    upgrade: Callable[[dict], dict] | None = None):
    """The config of a new run, or of a resumed one: its saved config with the overrides on top.

    Args:
        cls: the loop's config dataclass.
        config_path: optional YAML file; overrides: ``key=value`` strings (after the file).
        resume: the run being resumed, or None for a new run.
        may_change: keys (``optim.lr``) or sections (``audio.``) the loop applies when a resumed
            run changes them; a change to any other key is refused.
        upgrade: turns an older saved layout into today's (and drops what is not a config key).
    Returns:
        A validated ``cls``.
    Raises:
        BadInputError: invalid values, or a resumed run's key that cannot change (all named).
    """
    if resume is None:
        return load_config(cls, config_path, overrides)
    saved = saved_config(resume)
    if upgrade is not None:
        saved = upgrade(saved)
    try:
        before = load_config(cls, base=saved)
    except BadInputError as e:
        raise BadInputError(f"{Path(resume) / 'config.json'}: not a run of this stage, or of another avguide "
                            f"version ({e})") from None
    after = load_config(cls, config_path, overrides, base=saved)
    old, new = _flat(config_to_dict(before)), _flat(config_to_dict(after))
    changed = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    refused = [k for k in changed if not any(k in (m, m.rstrip(".")) or (m.endswith(".") and k.startswith(m))
                                             for m in may_change)]
    if refused:
        what = ", ".join(f"{k} ({old.get(k)!r} -> {new.get(k)!r})" for k in refused)
        raise BadInputError(f"--resume {resume}: cannot change {what} when a run resumes (only "
                            f"{', '.join(m.rstrip('.') + ('.*' if m.endswith('.') else '') for m in may_change)} "
                            f"can); start a new run with --out")
    if changed:
        print(f"resuming {resume} with " + ", ".join(f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in changed),
              flush=True)
    return after


# ----------------------------------------------------------------------------- the run directory
class Run:
    """A run directory held by this process for the run's lifetime (see the module docstring).

    Args:
        path: the run directory (created for a new run).
        config: the resolved config, saved in ``config.json`` and in every checkpoint.
        ctx: the process context (None: one process); only rank 0 writes.
        resume: continue the run in ``path`` (a run without a checkpoint starts again).
        keep: how many latest checkpoints to keep (the best one is always kept).
        min_improvement: the relative gain over the last improvement that counts as a new one
            (early stopping, :meth:`stalled`).
    Attributes:
        epoch, step: of the last checkpoint (0, 0 on a fresh start).
        best_score, best_checkpoint: the lowest score saved so far and its checkpoint.
        improved: (score, epoch) of the last improvement (``(inf, 0)`` on a fresh start).
        log: the :class:`~avguide.train.logging.RunLogger` (progress bars, TensorBoard).
    Raises:
        BadInputError: another process holds the run; ``--out`` names a run that has a
            checkpoint; corrupt run files (named). MissingFileError: resuming where no run is.
    """

    def __init__(self, path: str | Path, config: dict, ctx: D.DistContext | None = None, *, resume: bool = False,
                 keep: int = 2, min_improvement: float = 0.0):
        if not resume and not os.fspath(path).strip():
            raise BadInputError("--out: empty path; give a run directory")
        self.path, self.config, self.keep, self.min_improvement = Path(path), config, keep, min_improvement
        self.main = ctx is None or ctx.is_main
        self.ctx = ctx
        self._lock = None
        self.epoch, self.step, self.best_score, self.best_checkpoint = 0, 0, math.inf, None
        self.improved: tuple[float, int] = (math.inf, 0)
        self.meta: dict | None = None
        try:
            if self.main:
                self._open(resume)
            if ctx is not None:
                D.barrier(ctx)
            last = read_pointer(self.path, "last")
            if last is not None:
                self.meta = load_meta(self.path / last)
                self.epoch, self.step = self.meta["epoch"], self.meta["step"]
                self.best_checkpoint = self.meta.get("best_checkpoint") or read_pointer(self.path, "best") or last
                self.best_score = float(self.meta.get("best_score", self.meta.get("best_val", math.inf)))
                self.improved = self._saved_improvement()
            self.log = RunLogger(self.path, enabled=self.main, start_step=self.step)
        except BaseException:
            self._unlock()
            raise

    # ---- opening ------------------------------------------------------------------------------
    def _open(self, resume: bool) -> None:
        if resume and not (self.path / "config.json").is_file():
            raise MissingFileError(f"--resume {self.path}: no run there (config.json missing)")
        if not resume:  # before anything is created: a file in the way, a read-only place, someone's folder
            check_output_dir(self.path, "--out")
            if (self.path.is_dir() and not (self.path / "config.json").is_file()
                    and any(not p.name.startswith(".") for p in self.path.iterdir())):
                raise BadInputError(f"--out {self.path}: directory is not empty and holds no run; choose a new or "
                                    "empty directory")
        self.path.mkdir(parents=True, exist_ok=True)
        self._take_lock()
        for p in [*self.path.glob(".*.tmp*"), *self.path.glob("ckpt-*/.*.tmp*")]:  # writes cut by a kill
            p.unlink(missing_ok=True)
        last = read_pointer(self.path, "last")
        if last is not None and not resume:
            raise BadInputError(f"--out {self.path}: already holds a run; use --resume {self.path} or another --out")
        if last is None:  # a new run, or one that never reached its first checkpoint: start afresh
            if (self.path / "config.json").is_file():
                print(f"{self.path}: no checkpoint yet; training starts from the beginning", flush=True)
                for p in [*self.path.glob("ckpt-*"), self.path / "tb"]:
                    shutil.rmtree(p, ignore_errors=True)
                for name in ("metrics.jsonl", "best.json"):
                    (self.path / name).unlink(missing_ok=True)
        else:
            self._repair(last)
        self._write_config()

    def _take_lock(self) -> None:
        fd = os.open(self.path / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise BadInputError(f"{self.path}: another process is training this run (it holds "
                                f"{self.path / '.lock'}); wait for it to end or stop it") from None
        self._lock = fd

    def _unlock(self) -> None:
        if self._lock is not None:
            os.close(self._lock)  # releases the flock
            self._lock = None

    def _write_config(self) -> None:
        path = self.path / "config.json"
        if path.is_file() and load_json(path, "run config").get("config") == self.config:
            return
        write_json_atomic(path, {"config": self.config, "avguide_version": avguide.__version__})

    def _repair(self, last: str) -> None:
        """Bring best.json, metrics.jsonl and the checkpoint directories in line with the
        committed record (the meta.json ``last.json`` names)."""
        meta = load_meta(self.path / last)
        step = meta["step"]
        for p in self.path.glob("ckpt-*"):  # written after the commit: never counted
            if p.is_dir() and p.name > last:
                shutil.rmtree(p, ignore_errors=True)
        if meta.get("best_checkpoint"):  # runs saved before the record held it trust best.json
            best = meta["best_checkpoint"]
            record = {"checkpoint": best, **_pointer_fields(load_meta(self.path / best))}
            path = self.path / "best.json"
            try:
                current = load_json(path, "run pointer") if path.is_file() else None
            except BadInputError:
                current = None  # derived from the record: rewritten below
            if current != record:
                write_json_atomic(path, record)
        metrics = self.path / "metrics.jsonl"
        if metrics.is_file():
            rows = load_jsonl(metrics, "metrics log", partial_tail="drop")
            kept = [r for r in rows if r.get("step", 0) <= step]
            if meta.get("log") and not any(r.get("step") == step for r in kept):
                kept.append(meta["log"])
            text = "".join(_json_line(r) for r in kept)
            if text != metrics.read_text(errors="replace"):
                write_text_atomic(metrics, text)
        elif meta.get("log"):
            append_jsonl(metrics, meta["log"])

    # ---- resuming and saving ------------------------------------------------------------------
    def restore(self, model: torch.nn.Module) -> dict | None:
        """Load the last checkpoint's weights into ``model`` and return its train state (the RNG
        states are restored as a side effect); None on a fresh start.

        Raises:
            BadInputError: corrupt or unfitting weights or train state (the file named).
        """
        if self.meta is None:
            return None
        ckpt = self.path / checkpoint_name(self.step)
        load_weights(model, load_safetensors(ckpt / "model.safetensors", "model weights"), ckpt / "model.safetensors")
        state = load_train_state(ckpt)
        if "best_score" not in self.meta and "best" in state:  # expert runs saved before the record held it
            self.best_score = float(state["best"])
        return state

    def _saved_improvement(self) -> tuple[float, int]:
        """The record's last improvement; runs saved before it was recorded: the best checkpoint."""
        if "improved" in self.meta:
            score, epoch = self.meta["improved"]
            return float(score), int(epoch)
        best = self.path / str(self.best_checkpoint)
        epoch = load_meta(best)["epoch"] if (best / "meta.json").is_file() else self.epoch
        return self.best_score, int(epoch)

    def stalled(self, patience: int) -> bool:
        """Whether ``patience`` (> 0) epochs have passed since the last improvement; prints why
        training stops when it is so. Always False for ``patience`` 0."""
        if patience <= 0 or self.epoch - self.improved[1] < patience:
            return False
        if self.main:
            print(f"{self.path}: stopping early at epoch {self.epoch}: no improvement since epoch {self.improved[1]} "
                  f"(score {self.improved[0]:.6g}) for {patience} epochs (optim.patience)", flush=True)
        return True

    @property
    def checkpoint(self) -> Path | None:
        """The last checkpoint directory (None before the first)."""
        return None if self.meta is None else self.path / checkpoint_name(self.step)

    def save(self, model: torch.nn.Module, train_state: dict[str, Any], *, epoch: int, step: int,
             metrics: dict[str, float], score: float, seconds: float, extra: dict | None = None) -> None:
        """Save the epoch's checkpoint and log its metrics (rank 0; a no-op on the others).

        Args:
            model: unwrapped from DDP. train_state: optimiser etc. (RNG states are added).
            epoch, step: completed so far. metrics: the epoch's ``metrics.jsonl`` values.
            score: lower is better; the lowest so far is ``best``.
            seconds: the epoch's duration (logged). extra: more meta.json fields.
        """
        if not self.main:
            return
        name = checkpoint_name(step)
        if score < self.best_score:
            self.best_score, self.best_checkpoint = score, name
        if score < self.improved[0] * (1 - self.min_improvement):
            self.improved = (score, epoch)
        line = {"epoch": epoch, "step": step, "seconds": round(seconds, 3), **metrics}
        meta = {"epoch": epoch, "step": step, **metrics, **(extra or {}), "best_checkpoint": self.best_checkpoint,
                "best_score": self.best_score, "improved": list(self.improved), "log": line}
        save_checkpoint(self.path, model, train_state, meta, self.config)
        write_json_atomic(self.path / "last.json", {"checkpoint": name})  # the commit
        if self.best_checkpoint == name:
            write_json_atomic(self.path / "best.json", {"checkpoint": name, **_pointer_fields(meta)})
        append_jsonl(self.path / "metrics.jsonl", line)
        self.epoch, self.step, self.meta = epoch, step, meta
        self._prune()
        self.log.epoch_line(epoch, step, metrics, seconds)

    def _prune(self) -> None:
        ckpts = sorted(p for p in self.path.glob("ckpt-*") if p.is_dir())
        protected = {checkpoint_name(self.step), self.best_checkpoint}
        for p in ckpts[:-self.keep]:
            if p.name not in protected:
                shutil.rmtree(p, ignore_errors=True)

    def close(self) -> None:
        self.log.close()
        self._unlock()

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _pointer_fields(meta: dict) -> dict:
    """What ``best.json`` repeats of a checkpoint's meta (all but the config and the log line)."""
    return {k: v for k, v in meta.items() if k not in ("config", "log")}


def _json_line(row: dict) -> str:
    import json

    return json.dumps(row) + "\n"
