"""Named losses combined in one place.

Every stage returns its loss terms as a dict ``{name: scalar tensor}``; :func:`combine` forms the
weighted sum that is optimised and the float values that are logged, so the balance of the terms
is visible in one line of config and in every log.
"""

from __future__ import annotations

import math

import torch

from avguide.errors import TrainingDivergedError


def combine(losses: dict[str, torch.Tensor], weights: dict[str, float]) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted sum of named losses.

    Args:
        losses: ``{name: scalar tensor}``; every name must have a weight.
        weights: ``{name: weight}``; a weight of 0 keeps the term logged but out of the sum.
    Returns:
        (total scalar tensor, ``{name: float, ..., "total": float}`` for logging).
    Raises:
        KeyError: a loss has no weight (a wiring bug, not a user error).
    """
    missing = set(losses) - set(weights)
    if missing:
        raise KeyError(f"no weight for loss term(s) {sorted(missing)}")
    total = None
    for name, value in losses.items():
        w = weights[name]
        if w != 0.0:
            total = value * w if total is None else total + value * w
    if total is None:
        total = next(iter(losses.values())) * 0.0
    logs = {k: float(v.detach()) for k, v in losses.items()}
    logs["total"] = float(total.detach())
    return total, logs


def check_finite(logs: dict[str, float], where: str) -> None:
    """Stop training with a clear message if any logged loss is NaN/inf.

    Raises:
        TrainingDivergedError: naming the terms and ``where`` (e.g. "epoch 3, step 120").
    """
    bad = [k for k, v in logs.items() if not math.isfinite(v)]
    if bad:
        raise TrainingDivergedError(f"non-finite loss ({', '.join(f'{k}={logs[k]}' for k in bad)}) at "
                                    f"{where}; the last checkpoint is kept. Lower the learning rate "
                                    "or check the data.")


class WeightedSum:
    """The objective of a training step without guidance: :func:`combine` and one backward.

    It has the interface of :class:`avguide.train.avguidance.AVGuidance` (the objective of stage
    "av"), so the animator loop reads the same for every stage.

    Args:
        weights: ``{name: weight}`` of every term the model returns.
    """

    def __init__(self, weights: dict[str, float]):
        self.weights = weights

    def step(self, pred: torch.Tensor, batch, losses: dict[str, torch.Tensor], step: int):
        """Returns (``backward``: the gradient of the weighted sum into ``.grad``, ``logs``: floats)."""
        total, logs = combine(losses, self.weights)
        return total.backward, logs

    def train(self, mode: bool) -> None:
        """Nothing to switch (no module of its own)."""

    def param_groups(self) -> list[dict]:
        return []

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, train_state: dict, source) -> None:
        """Nothing to restore."""

    def end_epoch(self, first: bool) -> dict[str, float]:
        return {}
