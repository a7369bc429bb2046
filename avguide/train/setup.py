"""Set-up shared by the training stages: datasets and loaders, optimiser, animator configs
resolved from a preset plus overrides, and the per-run metadata an animator checkpoint needs."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from safetensors.torch import save_file

from avguide.config import load_config, merge_dicts
from avguide.data.batching import RecordingDataset, make_loader
from avguide.data.layouts import DatasetIndex, open_dataset
from avguide.errors import BadInputError
from avguide.io import atomic_path
from avguide.train.distributed import DistContext


@dataclass
class OptimConfig:
    """Adam and the epoch budget."""

    lr: float = 1e-4
    epochs: int = 50
    batch_size: int = 4
    weight_decay: float = 0.0
    grad_clip: float = 1.0          # max gradient norm; 0 disables clipping

    def check(self) -> list[str]:
        errors = []
        if not self.lr > 0:
            errors.append(f"lr: must be > 0, got {self.lr}")
        if self.epochs < 1:
            errors.append(f"epochs: must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            errors.append(f"batch_size: must be >= 1, got {self.batch_size}")
        if self.weight_decay < 0 or self.grad_clip < 0:
            errors.append("weight_decay and grad_clip: must be >= 0")
        return errors


def build_optimizer(model: torch.nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """Adam(W) over the trainable parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.weight_decay:
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(params, lr=cfg.lr)


def clip_and_step(model: torch.nn.Module, opt: torch.optim.Optimizer, cfg: OptimConfig) -> float:
    """Clip gradients (if enabled) and step; returns the gradient norm before clipping."""
    params = [p for p in model.parameters() if p.grad is not None]
    norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip if cfg.grad_clip > 0 else float("inf"))
    opt.step()
    return float(norm)


# ------------------------------------------------------------------------------- animators

AnimatorKind = Literal["faceformer", "codetalker"]
PRESETS = ("auto", "vocaset", "biwi", "cpu", "tiny")


def resolve_animator_config(kind: AnimatorKind, preset: str, overrides: dict[str, Any], *, fps: float,
                            n_vertices: int, stage: int | None = None):
    """The animator config: a preset, the dataset's frame rate, then the user's overrides.

    Args:
        kind: "faceformer" or "codetalker".
        preset: "vocaset" (published VOCASET size), "biwi", "cpu" (CPU-trainable), "tiny" (tests), or "auto"
            (vocaset below 10,000 vertices, else biwi).
        overrides: nested dict of field values (e.g. {"feature_dim": 128, "audio": {"kind": "hubert"}}).
        fps: the dataset's frame rate; sets ``fps`` and (but for "tiny") ``period`` and ``vq.period``.
        n_vertices: V, for the "auto" preset.
        stage: CodeTalker stage (1 VQ-VAE, 2 predictor).
    Returns:
        A validated FaceFormerConfig / CodeTalkerConfig.
    Raises:
        BadInputError: unknown preset or invalid overrides (all listed).
    """
    from avguide import animators as A

    if preset not in PRESETS:
        raise BadInputError(f"preset: {preset!r} is not one of {', '.join(PRESETS)}")
    if preset == "auto":
        preset = "vocaset" if n_vertices < 10_000 else "biwi"
    base = getattr(A, f"{kind}_{preset}")()
    data = dataclasses.asdict(base)
    data["fps"] = float(fps)
    if preset != "tiny":  # the tiny test preset keeps its short period
        data["period"] = int(round(fps))
        if kind == "codetalker":
            data["vq"]["period"] = int(round(fps))
    if stage is not None and kind == "codetalker":
        data["stage"] = stage
    merge_dicts(data, overrides)
    return load_config(type(base), base=data)


def open_training_data(path: str, layout: str, *, max_sequences: int = 0) -> tuple[DatasetIndex, list, list]:
    """Scan a dataset and return (index, train refs, val refs).

    Raises:
        BadInputError: no training or validation recordings.
    """
    index = open_dataset(path, layout)  # type: ignore[arg-type]
    train, val = index.split("train"), index.split("val")
    if max_sequences:
        train, val = train[:max_sequences], val[:max(1, max_sequences // 4)]
    if not train:
        raise BadInputError(f"{path}: no recordings in the train split")
    if not val:
        raise BadInputError(f"{path}: no recordings in the val split")
    return index, train, val


def loaders(index: DatasetIndex, train, val, batch_size: int, seed: int, ctx: DistContext, *,
            workers: int = 0, cache: bool = True, need_text: bool = False):
    """Train loader (shuffled, sharded over processes) and val loader (rank 0 only)."""
    train_ds = RecordingDataset(index, train, cache=cache, need_text=need_text)
    val_ds = RecordingDataset(index, val, cache=cache, need_text=need_text)
    sampler = None
    if ctx.world_size > 1:
        sampler = torch.utils.data.DistributedSampler(train_ds, ctx.world_size, ctx.rank, shuffle=True, seed=seed)
    return (make_loader(train_ds, batch_size, shuffle=True, seed=seed, workers=workers, sampler=sampler),
            make_loader(val_ds, batch_size, shuffle=False, seed=seed, workers=workers))


def save_run_assets(run: Path, index: DatasetIndex) -> None:
    """What inference needs without the dataset: training subjects' templates, faces, lips."""
    tensors = {f"template/{s}": torch.from_numpy(np.ascontiguousarray(index.templates[s]))
               for s in index.train_subjects if s in index.templates}
    if index.faces is not None:
        tensors["faces"] = torch.from_numpy(np.ascontiguousarray(index.faces, dtype=np.int64))
    for name in ("lips", "upper_face"):
        if name in index.regions:
            tensors[f"region/{name}"] = torch.from_numpy(np.ascontiguousarray(index.regions[name], dtype=np.int64))
    with atomic_path(run / "assets.safetensors") as tmp:
        save_file(tensors, str(tmp))
