"""Import published Auto-AVSR checkpoints into avguide's expert.

``avsr_trlrwlrs2lrs3vox2avsp_base.pth`` / ``vsr_trlrs3vox2_base.pth`` are plain state dicts
whose keys equal avguide's (``encoder.*``, ``aux_encoder.*``, ``fusion.*``, ``decoder.*``,
``ctc.*``), so they load with ``strict=True`` unchanged. The only rename avguide applies is for
training-framework wrappers around the same weights:

- a top-level ``{"state_dict": {...}}`` (PyTorch Lightning checkpoint) is unwrapped; if some
  of its keys start with ``model.`` (Auto-AVSR's Lightning module holds the network as
  ``self.model``), only those are kept (other module state, e.g. a beam-search scorer, is not
  the network's);
- a ``model.`` or ``module.`` (DistributedDataParallel) prefix carried by every key is stripped.

Files are read with ``torch.load(weights_only=True)``: tensors only, no arbitrary pickles.
"""

from __future__ import annotations

from pathlib import Path

import torch

from avguide.errors import BadInputError, MissingFileError
from avguide.lipreader.config import avsr_base, modality_name, vsr_base
from avguide.lipreader.model import LipReadingExpert, build_expert

_PREFIXES = ("model.", "module.")
_SHOWN = 5  # keys listed per category in error messages


def read_auto_avsr_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of an Auto-AVSR checkpoint file, with the wrapper renames above applied.

    Args:
        path: ``.pth`` / ``.ckpt`` file.
    Returns:
        {key: tensor} on the CPU.
    Raises:
        MissingFileError: the file does not exist.
        BadInputError: not a readable tensor-only torch file, or not a mapping of tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: checkpoint not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle errors, zip errors, forbidden globals
        raise BadInputError(f"{path}: not a tensor-only torch checkpoint ({type(e).__name__}: "
                            f"{str(e).splitlines()[0] if str(e) else ''})") from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
        if any(k.startswith("model.") for k in obj):
            obj = {k: v for k, v in obj.items() if k.startswith("model.")}
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise BadInputError(f"{path}: expected a state dict (mapping of key -> tensor), "
                            f"got {type(obj).__name__}")
    for prefix in _PREFIXES:
        if obj and all(k.startswith(prefix) for k in obj):
            obj = {k[len(prefix):]: v for k, v in obj.items()}
    return obj


def load_auto_avsr_checkpoint(path: str | Path, model: LipReadingExpert) -> None:
    """Load an Auto-AVSR checkpoint into ``model`` strictly (every key, every shape).

    Args:
        path: checkpoint file.
        model: an expert built with the matching config (e.g. :func:`avsr_base`).
    Raises:
        MissingFileError: the file does not exist.
        BadInputError: unreadable file, or missing / unexpected keys or shape mismatches
            (a few of each are listed, with the counts).
    """
    state = read_auto_avsr_state_dict(path)
    _check_fits(state, model, str(path))
    model.load_state_dict(state, strict=True)


def _check_fits(state: dict[str, torch.Tensor], model: LipReadingExpert, source: str) -> None:
    """Raise BadInputError listing missing / unexpected keys and shape mismatches."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state and state[k].shape != own[k].shape]
    problems = []
    for name, items in (("missing keys", missing), ("unexpected keys", unexpected),
                        ("shape mismatches", shapes)):
        if items:
            more = f", ... ({len(items)} in all)" if len(items) > _SHOWN else ""
            problems.append(f"{name}: {', '.join(items[:_SHOWN])}{more}")
    if problems:
        raise BadInputError(f"{source}: does not fit this expert "
                            f"({model.cfg.modality}, adim {model.cfg.adim}, odim "
                            f"{model.cfg.odim}): " + "; ".join(problems))


def expert_from_auto_avsr(path: str | Path, modality: str) -> LipReadingExpert:
    """Base-size expert with the weights of a published Auto-AVSR checkpoint, in eval mode.

    Args:
        path: ``avsr_trlrwlrs2lrs3vox2avsp_base.pth`` (modality "av") or
            ``vsr_trlrs3vox2_base.pth`` (modality "video"), or a fine-tuned file of that shape.
        modality: "av" or "video" (the short "v" is accepted too:
            :func:`avguide.lipreader.config.modality_name`).
    Returns:
        :class:`LipReadingExpert` built from :func:`avsr_base` / :func:`vsr_base`, with odim
        read from the checkpoint's CTC head (5049 for the published files).
    Raises:
        MissingFileError, BadInputError: see :func:`load_auto_avsr_checkpoint`.
    """
    if modality_name(modality) not in ("av", "video"):
        raise BadInputError(f"modality: must be 'av' or 'video', got {modality!r}")
    state = read_auto_avsr_state_dict(path)
    cfg = avsr_base() if modality == "av" else vsr_base()
    head = state.get("ctc.ctc_lo.bias", state.get("decoder.output_layer.bias"))
    if head is not None and head.dim() == 1:
        cfg.odim = head.shape[0]
    with torch.device("meta"):  # check the file against the layout before allocating 1.8 GB
        _check_fits(state, build_expert(cfg), str(path))
    model = build_expert(cfg)
    model.load_state_dict(state, strict=True)
    return model.eval()
