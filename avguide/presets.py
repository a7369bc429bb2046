"""Every named preset of avguide's models, in one registry (a preset only fills in numbers).

    animator_preset("faceformer", "cpu")           -> FaceFormerConfig (also codetalker)
    expert_preset("av", "cpu_small", odim=5049)    -> ExpertConfig (modality av | video | audio)

Grep a preset's function name to find this registry, and ``animator_preset`` /
``expert_preset`` to find where presets are chosen.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from avguide.animators import (AnimatorConfig, codetalker_biwi, codetalker_cpu, codetalker_tiny, codetalker_vocaset,
                               faceformer_biwi, faceformer_cpu, faceformer_tiny, faceformer_vocaset)
from avguide.errors import BadInputError
from avguide.lipreader.config import (ExpertConfig, asr_base, asr_cpu_small, avsr_base, avsr_cpu_small, vsr_base,
                                      vsr_cpu_small)

ANIMATORS: dict[str, dict[str, Callable[[], AnimatorConfig]]] = {
    "faceformer": {"vocaset": faceformer_vocaset, "biwi": faceformer_biwi, "cpu": faceformer_cpu,
                   "tiny": faceformer_tiny},
    "codetalker": {"vocaset": codetalker_vocaset, "biwi": codetalker_biwi, "cpu": codetalker_cpu,
                   "tiny": codetalker_tiny},
}
"""Animator kind -> preset name -> config function: "vocaset" / "biwi" (published sizes), "cpu"
(CPU-trainable, streaming), "tiny" (tests)."""

EXPERTS: dict[str, dict[str, Callable[..., ExpertConfig]]] = {
    "av": {"base": avsr_base, "cpu_small": avsr_cpu_small},
    "video": {"base": vsr_base, "cpu_small": vsr_cpu_small},
    "audio": {"base": asr_base, "cpu_small": asr_cpu_small},
}
"""Expert modality -> size -> config function: "base" (Auto-AVSR's published models) or
"cpu_small" (CPU-trainable)."""


def animator_preset(kind: str, name: str) -> AnimatorConfig:
    """A fresh config of the named animator preset.

    Raises:
        BadInputError: an unknown kind or preset name (the allowed ones listed).
    """
    if kind not in ANIMATORS or name not in ANIMATORS[kind]:
        raise BadInputError(f"animator preset {kind}/{name}: allowed: "
                            + ", ".join(f"{k}/{n}" for k, names in ANIMATORS.items() for n in names))
    return ANIMATORS[kind][name]()


def expert_preset(modality: str, size: str, odim: int) -> ExpertConfig:
    """A fresh config of the named expert preset with ``odim`` output units (the tokeniser's).

    Raises:
        BadInputError: an unknown modality or size.
    """
    if modality not in EXPERTS or size not in EXPERTS[modality]:
        raise BadInputError(f"expert preset {modality}/{size}: allowed: "
                            + ", ".join(f"{m}/{s}" for m, sizes in EXPERTS.items() for s in sizes))
    fn = EXPERTS[modality][size]
    cfg = fn() if size == "base" else fn(odim)  # the base presets keep Auto-AVSR's published odim
    return dataclasses.replace(cfg, odim=odim)
