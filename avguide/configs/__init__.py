"""Recipes as files: one YAML per trained model, per step of the expert chain and per bench preset.

    avguide/configs/corpus.yaml              the lip-reading pretraining corpus (avguide synth)
    avguide/configs/expert/<step>.yaml       each step of the expert chain, the evaluation reader
    avguide/configs/expert/tiny.yaml         the tiny expert of the tests and of the ci preset
    avguide/configs/faceformer.yaml          the shipped animators
    avguide/configs/codetalker_vq.yaml, codetalker.yaml
    avguide/configs/bench/<preset>.yaml      avguide bench --preset <preset>

Each file opens with the command that runs it. A recipe is a mapping of config fields (the
dataclass the command builds: ``SynthConfig``, ``ExpertStageConfig``, ``AnimatorTrainConfig``,
``BenchConfig``); :func:`overrides` flattens it to ``key=value`` strings so recipes compose
(``[*overrides("expert/tiny"), *overrides("expert/asr_char")]``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from avguide.errors import BadInputError

ROOT = Path(__file__).resolve().parent


def names() -> list[str]:
    """Every recipe name (path below this folder, without ``.yaml``), sorted."""
    return sorted(str(p.relative_to(ROOT).with_suffix("")) for p in ROOT.rglob("*.yaml"))


def path(name: str) -> Path:
    """The file of a recipe name such as ``"expert/reader"``.

    Raises:
        BadInputError: no such recipe (the known names are listed).
    """
    p = ROOT / f"{name}.yaml"
    if not p.is_file():
        raise BadInputError(f"recipe {name!r}: unknown; known recipes: {', '.join(names())}")
    return p


def load(name: str) -> dict[str, Any]:
    """The recipe's mapping of config fields."""
    from avguide.io import load_yaml

    data = load_yaml(path(name), "recipe") or {}
    if not isinstance(data, dict):
        raise BadInputError(f"{path(name)}: a recipe must be a mapping of config fields")
    return data


def flatten(data: dict[str, Any], prefix: str = "") -> list[str]:
    """``{"optim": {"lr": 1e-3}}`` -> ``["optim.lr=0.001"]`` (lists in YAML flow style)."""
    out = []
    for k, v in data.items():
        if isinstance(v, dict):
            out += flatten(v, f"{prefix}{k}.")
        elif isinstance(v, (list, tuple)):
            out.append(f"{prefix}{k}=[{','.join(str(x) for x in v)}]")
        elif isinstance(v, bool):
            out.append(f"{prefix}{k}={'true' if v else 'false'}")
        elif v is None:
            out.append(f"{prefix}{k}=null")
        else:
            out.append(f"{prefix}{k}={v}")
    return out


def overrides(name: str) -> list[str]:
    """The recipe as ``key=value`` overrides."""
    return flatten(load(name))
