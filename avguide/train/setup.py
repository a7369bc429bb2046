"""Set-up of the animator loop: datasets and loaders, animator configs resolved from a preset
plus overrides, and the per-run assets an animator run needs for inference."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from avguide.config import load_config, merge_dicts
from avguide.data.batching import RecordingDataset, make_loader
from avguide.data.layouts import DatasetIndex, open_dataset
from avguide.data.samples import check_recordings
from avguide.errors import BadInputError
from avguide.io import save_safetensors_atomic
from avguide.train.distributed import DistContext


# ------------------------------------------------------------------------------- animators

AnimatorKind = Literal["faceformer", "codetalker"]


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
    from avguide.presets import ANIMATORS, animator_preset

    if preset not in ("auto", *ANIMATORS[kind]):
        raise BadInputError(f"preset: {preset!r} is not one of {', '.join(('auto', *ANIMATORS[kind]))}")
    if preset == "auto":
        preset = "vocaset" if n_vertices < 10_000 else "biwi"
    base = animator_preset(kind, preset)
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
        BadInputError / MissingFileError: no training or validation recordings, or one whose files
            are unreadable or do not fit (:func:`avguide.data.samples.check_recordings`).
    """
    index = open_dataset(path, layout)  # type: ignore[arg-type]
    train, val = index.split("train"), index.split("val")
    if max_sequences:
        train, val = train[:max_sequences], val[:max(1, max_sequences // 4)]
    if not train:
        raise BadInputError(f"{path}: no recordings in the train split")
    if not val:
        raise BadInputError(f"{path}: no recordings in the val split")
    check_recordings(index, train + val)  # unreadable files, wrong rates or durations: before the run starts
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
    save_safetensors_atomic(run / "assets.safetensors", tensors)
