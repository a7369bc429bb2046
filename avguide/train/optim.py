"""The optimiser and its schedule, one config for every training loop (``optim.*``).

    optim.optimizer   adam | adamw          optim.lr, optim.betas, optim.weight_decay
    optim.schedule    none | cosine         cosine: linear warm-up over optim.warmup_epochs, then
                                            half a cosine down to 0 at the last step
    optim.epochs, optim.batch_size, optim.grad_clip (max gradient norm; 0: no clipping)
    optim.patience    stop early once this many epochs passed without the validation score
                      improving by more than optim.min_improvement (relative); 0: run every epoch

The schedule is a per-step factor of the learning rate (``LambdaLR``); "none" keeps the rate
constant and builds no scheduler. The animator loop defaults to Adam without a schedule, the
expert loop to AdamW (0.9, 0.98) with warm-up and cosine (:func:`expert_optim`).

On resume (:func:`restore_optimizer`) the saved optimiser and scheduler states are loaded and
then the config in force is applied to them: a new ``lr``, ``betas``, ``weight_decay``,
``epochs`` or ``warmup_epochs`` takes effect from the first resumed step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from avguide.errors import BadInputError


@dataclass
class OptimConfig:
    """Optimiser, schedule and epoch budget (defaults: the animator's Adam, constant rate)."""

    optimizer: Literal["adam", "adamw"] = "adam"
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0       # adam: L2 added to the gradient; adamw: decoupled decay
    epochs: int = 50
    batch_size: int = 4
    grad_clip: float = 1.0          # max gradient norm; 0 disables clipping
    schedule: Literal["none", "cosine"] = "none"
    warmup_epochs: float = 0.0      # cosine only: linear warm-up, in epochs (fractions allowed)
    patience: int = 0               # epochs without improvement before stopping early; 0: never stop early
    min_improvement: float = 0.0    # relative: a score counts as improved below (1 - this) x the last improvement

    def check(self) -> list[str]:
        errors = []
        if not self.lr > 0:
            errors.append(f"lr: must be > 0, got {self.lr}")
        if not all(0 <= b < 1 for b in self.betas):
            errors.append(f"betas: two numbers in [0, 1), got {list(self.betas)}")
        if self.epochs < 1:
            errors.append(f"epochs: must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            errors.append(f"batch_size: must be >= 1, got {self.batch_size}")
        if not (self.weight_decay >= 0 and self.grad_clip >= 0 and self.warmup_epochs >= 0):
            errors.append("weight_decay, grad_clip and warmup_epochs: must be >= 0")
        if self.patience < 0:
            errors.append(f"patience: must be >= 0 (0: no early stopping), got {self.patience}")
        if not 0 <= self.min_improvement < 1:
            errors.append(f"min_improvement: a fraction in [0, 1), got {self.min_improvement}")
        if self.warmup_epochs and self.schedule == "none":
            errors.append("warmup_epochs: only with schedule=cosine")
        return errors


def expert_optim() -> OptimConfig:
    """The expert loop's defaults (Auto-AVSR's recipe): AdamW (0.9, 0.98), weight decay 0.03,
    lr 1e-3 warmed up over 3 epochs then cosine, gradient norm clipped at 5, batch 8, 60 epochs."""
    return OptimConfig(optimizer="adamw", lr=1e-3, betas=(0.9, 0.98), weight_decay=0.03, epochs=60, batch_size=8,
                       grad_clip=5.0, schedule="cosine", warmup_epochs=3.0)


FLAT_OPTIM_KEYS = ("lr", "epochs", "batch_size", "weight_decay", "warmup_epochs", "grad_clip")
"""The optimiser keys the expert config had at its top level before ``optim.*`` existed."""


def upgrade_saved_optim(config: dict, loop: Literal["animator", "expert"]) -> dict:
    """A saved run config (``config.json``) in today's ``optim.*`` form.

    - Expert runs saved before ``optim`` existed hold ``lr, epochs, batch_size, weight_decay,
      warmup_epochs, grad_clip`` at the top level; they trained with AdamW (0.9, 0.98) and
      warm-up + cosine: those keys move into ``optim`` with ``optimizer=adamw``,
      ``betas=[0.9, 0.98]``, ``schedule=cosine``.
    - Animator runs saved before ``optim.optimizer`` existed trained with Adam, or AdamW when
      ``optim.weight_decay`` > 0, with betas (0.9, 0.999) and no schedule.

    A config already in today's form is returned as it is.

    Args:
        config: the saved config dict (not modified).
        loop: which loop saved it.
    Returns:
        A new dict.
    """
    out = dict(config)
    if loop == "expert" and "optim" not in out:
        flat = {k: out.pop(k) for k in FLAT_OPTIM_KEYS if k in out}
        out["optim"] = {"optimizer": "adamw", "betas": [0.9, 0.98], "schedule": "cosine", **flat}
    elif loop == "animator" and isinstance(out.get("optim"), dict) and "optimizer" not in out["optim"]:
        optim = dict(out["optim"])
        optim["optimizer"] = "adamw" if optim.get("weight_decay", 0.0) else "adam"
        out["optim"] = optim
    return out


def schedule_factor(cfg: OptimConfig, steps_per_epoch: int):
    """The learning-rate factor of optimiser step ``s`` (counted from 0): 1 for "none"; for
    "cosine", ``(s + 1) / W`` during ``W = round(warmup_epochs * steps_per_epoch)`` warm-up
    steps, then ``0.5 * (1 + cos(pi * p))`` with ``p`` going from 0 to 1 over the remaining steps
    of ``epochs * steps_per_epoch``."""
    total, warmup = cfg.epochs * steps_per_epoch, round(cfg.warmup_epochs * steps_per_epoch)

    def factor(step: int) -> float:
        if cfg.schedule == "none":
            return 1.0
        if step < warmup:
            return (step + 1) / warmup
        p = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, p)))
    return factor


def build_optimizer(groups: list[dict], cfg: OptimConfig, steps_per_epoch: int
                    ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR | None]:
    """The optimiser over parameter groups, and its scheduler (None for ``schedule=none``).

    Args:
        groups: ``[{"params": [...], "lr": ...}, ...]``: the first group takes ``cfg.lr`` when it
            gives none (e.g. the animator; a fine-tuned expert brings its own rate).
        cfg: the settings.
        steps_per_epoch: optimiser steps per epoch (the schedule's unit).
    """
    cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    opt = cls(groups, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    sched = None
    if cfg.schedule != "none":
        sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule_factor(cfg, steps_per_epoch))
    return opt, sched


def restore_optimizer(opt: torch.optim.Optimizer, sched, state: dict, cfg: OptimConfig, group_lrs: list[float],
                      steps_per_epoch: int, source) -> None:
    """Load a checkpoint's optimiser (and scheduler) state, then apply the config in force.

    Args:
        opt, sched: from :func:`build_optimizer` with the same groups.
        state: the checkpoint's train state ({"optimizer": ..., "scheduler": ... if scheduled}).
        cfg: the settings in force (possibly changed on resume).
        group_lrs: the base learning rate of each parameter group (its first is ``cfg.lr``).
        steps_per_epoch: as for :func:`build_optimizer`.
        source: the checkpoint (named in errors).
    Raises:
        BadInputError: the saved state does not fit this optimiser.
    """
    try:
        opt.load_state_dict(state["optimizer"])
        if sched is not None:
            sched.load_state_dict(state["scheduler"])
    except (KeyError, ValueError, RuntimeError, TypeError) as e:
        raise BadInputError(f"{source}/train_state.pt: its optimiser state does not fit this run "
                            f"({type(e).__name__}: {' '.join(str(e).split())[:200]})") from None
    factor = schedule_factor(cfg, steps_per_epoch)(sched.last_epoch) if sched is not None else 1.0
    if sched is not None:
        sched.base_lrs = list(group_lrs)
        sched.lr_lambdas = [schedule_factor(cfg, steps_per_epoch)] * len(opt.param_groups)
    for group, lr in zip(opt.param_groups, group_lrs):
        group["lr"] = lr * factor
        group["betas"] = tuple(cfg.betas)
        group["weight_decay"] = cfg.weight_decay
        if sched is not None:
            group["initial_lr"] = lr


def clip_gradients(params: list[torch.Tensor], max_norm: float) -> torch.Tensor:
    """Clip the gradient norm of ``params`` to ``max_norm`` (0: no clipping).

    Returns:
        () the norm before clipping (a tensor: reading it is the caller's choice of host sync).
    """
    return torch.nn.utils.clip_grad_norm_(params, max_norm if max_norm > 0 else float("inf"))
