"""Speech-driven animators: FaceFormer and CodeTalker, with a common builder.

    cfg = faceformer_vocaset()                      # or codetalker_biwi(), ...
    model = build_animator(cfg, n_vertices=5023, n_subjects=8)
    out = model(audio, audio_lengths, template, vertices, lengths, subject)   # training
    out["pred"], out["losses"]                      # (B, T, V, 3), {"mse": ...}
    meshes = model.generate(audio, audio_lengths, template, subject)         # cached inference
"""

from __future__ import annotations

from torch import nn

from avguide.animators.codetalker import CodeTalker, CodeTalkerConfig, codetalker_biwi, codetalker_cpu, \
    codetalker_tiny, codetalker_vocaset
from avguide.animators.common import frame_counts
from avguide.animators.faceformer import FaceFormer, FaceFormerConfig, faceformer_biwi, faceformer_cpu, \
    faceformer_tiny, faceformer_vocaset
from avguide.animators.vqvae import MotionVQVAE, VQVAEConfig
from avguide.errors import BadInputError

AnimatorConfig = FaceFormerConfig | CodeTalkerConfig


def build_animator(cfg: AnimatorConfig, n_vertices: int, n_subjects: int,
                   audio_encoder: nn.Module | None = None) -> nn.Module:
    """Build the animator a config describes.

    Args:
        cfg: :class:`FaceFormerConfig` or :class:`CodeTalkerConfig`.
        n_vertices: vertices V of the meshes.
        n_subjects: speaking styles (training subjects).
        audio_encoder: optional prebuilt audio encoder replacing ``cfg.audio``.
    Returns:
        :class:`FaceFormer` or :class:`CodeTalker`.
    Raises:
        BadInputError: invalid config values or sizes (all problems listed).
    """
    errors = list(cfg.check()) + [f"audio.{e}" for e in cfg.audio.check()]
    if isinstance(cfg, CodeTalkerConfig):
        errors += [f"vq.{e}" for e in cfg.vq.check()]
    if n_vertices < 1:
        errors.append(f"n_vertices: must be >= 1, got {n_vertices}")
    if n_subjects < 1:
        errors.append(f"n_subjects: must be >= 1, got {n_subjects}")
    if errors:
        raise BadInputError(f"invalid {type(cfg).__name__}:\n  " + "\n  ".join(errors))
    model_cls = FaceFormer if isinstance(cfg, FaceFormerConfig) else CodeTalker
    return model_cls(cfg, n_vertices, n_subjects, audio_encoder)


__all__ = [
    "AnimatorConfig", "CodeTalker", "CodeTalkerConfig", "FaceFormer", "FaceFormerConfig", "MotionVQVAE",
    "VQVAEConfig", "build_animator", "codetalker_biwi", "codetalker_cpu", "codetalker_tiny", "codetalker_vocaset",
    "faceformer_biwi", "faceformer_cpu", "faceformer_tiny", "faceformer_vocaset", "frame_counts",
]
