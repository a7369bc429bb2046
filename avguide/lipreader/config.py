"""Hyper-parameters of the Auto-AVSR lip-reading expert, and its presets.

Field names are Auto-AVSR's own (``adim``, ``aheads``, ``eunits``, ``elayers``, ``ddim``, ...;
``aux_*`` for the audio encoder), so a user can copy them from an Auto-AVSR recipe. Fields that
Auto-AVSR fixes in code and avguide makes configurable for small CPU experts are named
``visual_widths`` / ``audio_widths`` (ResNet stage widths; Auto-AVSR: 64, 128, 256, 512).
``audio_frontend`` picks Auto-AVSR's raw-waveform ResNet-18 ("resnet1d", the default, which the
published checkpoints use) or avguide's log-mel front-end ("mel", the CPU presets' choice:
half the cost per step, and it learns from a small corpus much faster).

Presets only fill in numbers:

- :func:`avsr_base` / :func:`vsr_base`: the published base models (odim 5049, unigram5000),
  whose state dicts match ``avsr_trlrwlrs2lrs3vox2avsp_base.pth`` / ``vsr_trlrs3vox2_base.pth``.
- :func:`avsr_cpu_small` / :func:`vsr_cpu_small`: narrow experts with the log-mel audio
  front-end that train on a CPU (64x64 or 44x44 lip crops); stage 1 gives them the tokeniser's
  vocabulary (Auto-AVSR's 5000 units by default, or 30 characters).
- :func:`asr_cpu_small`: the audio-only model whose encoder has exactly the shape of
  ``avsr_cpu_small``'s audio encoder, to pretrain it cheaply (no rendering, no video front-end).

Modalities have one set of names everywhere in avguide: "av", "video", "audio" (:data:`MODALITIES`).
The short names "v" / "a" are accepted only where they come from outside: the Auto-AVSR import
(:func:`config_from_auto_avsr`, :func:`avguide.lipreader.checkpoint.expert_from_auto_avsr`) and
expert checkpoints saved before avguide used one vocabulary (:func:`modality_name`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal, get_args

from avguide.errors import BadInputError

Modality = Literal["av", "video", "audio"]
MODALITIES: tuple[str, ...] = get_args(Modality)
_SHORT_NAMES = {"v": "video", "a": "audio"}  # the names ExpertConfig used before it said "video" / "audio"


def modality_name(name: str) -> str:
    """avguide's name of an expert modality, given ours or a short one from outside.

    Args:
        name: "av", "video", "audio", or the short "v" / "a" (as the Auto-AVSR import took them,
            and as the ``expert`` settings of stage-1 checkpoints saved before the rename say them).
    Returns:
        "av", "video" or "audio"; any other value unchanged (:meth:`ExpertConfig.check` reports it).
    """
    return _SHORT_NAMES.get(name, name)


@dataclass
class ExpertConfig:
    """Every hyper-parameter of an Auto-AVSR-style expert.

    ``modality`` "av" builds the audio-visual model (video ``encoder`` + audio ``aux_encoder``
    + ``fusion``), "video" the visual-only model (``encoder`` only), "audio" the audio-only model: its
    ``encoder`` is an audio encoder built from the ``aux_*`` fields and ``audio_widths``, so its
    weights fit an AV expert's ``aux_encoder`` of the same config (audio pretraining).
    """

    modality: Modality = "av"
    odim: int = 5049
    # visual encoder (Auto-AVSR names)
    adim: int = 768
    aheads: int = 12
    eunits: int = 3072
    elayers: int = 12
    cnn_module_kernel: int = 31
    dropout_rate: float = 0.1
    transformer_attn_dropout_rate: float = 0.1
    # audio encoder
    aux_adim: int = 768
    aux_aheads: int = 12
    aux_eunits: int = 3072
    aux_elayers: int = 12
    aux_cnn_module_kernel: int = 31
    aux_dropout_rate: float = 0.1
    aux_transformer_attn_dropout_rate: float = 0.1
    # fusion and decoder
    fusion_hdim: int = 8192
    fusion_norm: Literal["batchnorm", "layernorm"] = "batchnorm"
    # avguide, not Auto-AVSR: fused = audio features + fusion MLP (its last layer starts at zero),
    # so an AV expert starts exactly where its audio model is and learns what the lips add
    fusion_residual: bool = False
    ddim: int = 768
    dheads: int = 12
    dunits: int = 3072
    dlayers: int = 6
    # losses
    mtlalpha: float = 0.1
    lsm_weight: float = 0.1
    # front-end widths (fixed to 64..512 in Auto-AVSR; narrower for CPU experts)
    visual_widths: tuple[int, ...] = (64, 128, 256, 512)
    audio_widths: tuple[int, ...] = (64, 128, 256, 512)
    # audio front-end: Auto-AVSR's raw-waveform ResNet-18, or avguide's cheaper log-mel convolutions
    audio_frontend: Literal["resnet1d", "mel"] = "resnet1d"

    def check(self) -> list[str]:
        """All problems with the values, as messages (empty when valid)."""
        errs = []
        if self.odim < 3:
            errs.append(f"odim: must be >= 3 (blank, one unit, sos/eos), got {self.odim}")
        for dim, heads, name in ((self.adim, self.aheads, "adim/aheads"),
                                 (self.aux_adim, self.aux_aheads, "aux_adim/aux_aheads"),
                                 (self.ddim, self.dheads, "ddim/dheads")):
            if heads < 1 or dim % heads:
                errs.append(f"{name}: width {dim} must be divisible by the head count {heads}")
        for k, name in ((self.cnn_module_kernel, "cnn_module_kernel"),
                        (self.aux_cnn_module_kernel, "aux_cnn_module_kernel")):
            if k < 1 or k % 2 == 0:
                errs.append(f"{name}: must be odd and positive, got {k}")
        if self.audio_frontend not in ("resnet1d", "mel"):
            errs.append(f"audio_frontend: 'resnet1d' or 'mel', got {self.audio_frontend!r}")
        if self.modality not in MODALITIES:
            errs.append(f"modality: 'av', 'video' or 'audio', got {self.modality!r}")
        if self.modality in ("av", "audio") and self.aux_adim != self.adim:
            errs.append(f"aux_adim: must equal adim ({self.adim}) for fusion, got {self.aux_adim}")
        if not 0.0 <= self.mtlalpha <= 1.0:
            errs.append(f"mtlalpha: must be in [0, 1], got {self.mtlalpha}")
        if not 0.0 <= self.lsm_weight < 1.0:
            errs.append(f"lsm_weight: must be in [0, 1), got {self.lsm_weight}")
        for widths, name in ((self.visual_widths, "visual_widths"),
                             (self.audio_widths, "audio_widths")):
            if len(widths) != 4 or min(widths) < 1:
                errs.append(f"{name}: need 4 positive ResNet stage widths, got {list(widths)}")
        for p, name in ((self.dropout_rate, "dropout_rate"),
                        (self.transformer_attn_dropout_rate, "transformer_attn_dropout_rate"),
                        (self.aux_dropout_rate, "aux_dropout_rate"),
                        (self.aux_transformer_attn_dropout_rate,
                         "aux_transformer_attn_dropout_rate")):
            if not 0.0 <= p < 1.0:
                errs.append(f"{name}: must be in [0, 1), got {p}")
        return errs

    def validate(self) -> "ExpertConfig":
        """Raise :class:`BadInputError` listing every problem; returns ``self`` when valid."""
        errs = self.check()
        if errs:
            raise BadInputError("expert config: " + "; ".join(errs))
        return self


# Auto-AVSR options that avguide implements only at one value (value it must have).
_FIXED_OPTIONS: dict[str, Any] = {
    "transformer_input_layer": "conv3d", "aux_transformer_input_layer": "conv1d",
    "transformer_encoder_attn_layer_type": "rel_mha",
    "aux_transformer_encoder_attn_layer_type": "rel_mha",
    "macaron_style": True, "aux_macaron_style": True,
    "use_cnn_module": True, "aux_use_cnn_module": True,
    "zero_triu": False, "aux_zero_triu": False,
    "a_upsample_ratio": 1, "aux_a_upsample_ratio": 1,
    "relu_type": "swish", "aux_relu_type": "swish",
    "rel_pos_type": "latest", "aux_rel_pos_type": "latest",
    "ctc_type": "builtin", "aux_ctc_type": "builtin",
    "transformer_length_normalized_loss": False, "aux_transformer_length_normalized_loss": False,
}
# Auto-AVSR options that have no effect on the model (read and ignored).
_IGNORED_OPTIONS = {"aux_dunits", "aux_dlayers", "aux_lsm_weight", "aux_mtlalpha"}


def config_from_auto_avsr(args: dict, odim: int, modality: str) -> ExpertConfig:
    """Expert config from an Auto-AVSR hyper-parameter dict (its ``args`` namespace as a dict).

    Args:
        args: Auto-AVSR keys such as ``adim``, ``aheads``, ``aux_elayers``, ``fusion_hdim``.
        odim: output vocabulary size (blank + units + sos/eos).
        modality: "av" or "video" (the short "v" is accepted too: :func:`modality_name`).
    Returns:
        A validated :class:`ExpertConfig` (front-end widths are Auto-AVSR's 64..512), whose
        ``modality`` is avguide's name.
    Raises:
        BadInputError: an option avguide does not implement (e.g. ``zero_triu: True``), an
            unknown key, or invalid values; all listed in one message.
    """
    names = {f.name for f in dataclasses.fields(ExpertConfig)}
    modality = modality_name(modality)
    errs, kwargs = [], {"odim": odim, "modality": modality}
    for key, value in args.items():
        if key in _FIXED_OPTIONS:
            if value != _FIXED_OPTIONS[key]:
                errs.append(f"{key}={value!r} is not supported (only {_FIXED_OPTIONS[key]!r})")
        elif key in names:
            kwargs[key] = value
        elif key not in _IGNORED_OPTIONS:
            errs.append(f"{key}: unknown Auto-AVSR option")
    if errs:
        raise BadInputError("Auto-AVSR config: " + "; ".join(errs))
    if modality == "video":  # no audio encoder: keep its (unused) fields consistent with adim
        kwargs.setdefault("aux_adim", kwargs.get("adim", ExpertConfig.adim))
        kwargs.setdefault("aux_aheads", kwargs.get("aheads", ExpertConfig.aheads))
    return ExpertConfig(**kwargs).validate()


def avsr_base() -> ExpertConfig:
    """The published Auto-AVSR base audio-visual model (443,977,138 parameters)."""
    return ExpertConfig(modality="av")


def vsr_base() -> ExpertConfig:
    """The published Auto-AVSR base visual-only model (250,383,410 parameters)."""
    return ExpertConfig(modality="video")


def _cpu_small(modality: Modality, odim: int) -> ExpertConfig:
    return ExpertConfig(
        modality=modality, odim=odim,
        adim=192, aheads=4, eunits=768, elayers=4, cnn_module_kernel=15,
        aux_adim=192, aux_aheads=4, aux_eunits=768, aux_elayers=3, aux_cnn_module_kernel=15,
        fusion_hdim=768, ddim=192, dheads=4, dunits=768, dlayers=2,
        visual_widths=(32, 64, 128, 256), audio_widths=(16, 32, 64, 128), audio_frontend="mel",
    )


def avsr_cpu_small(odim: int = 30) -> ExpertConfig:
    """Small audio-visual expert for CPU training (default odim: :class:`CharTokenizer`).

    Visual ResNet widths 32..256, log-mel audio front-end (conv widths 16..128), adim 192,
    4 video / 3 audio Conformer layers, 2 decoder layers. Works on 64x64 (or 44x44) lip crops.
    """
    return _cpu_small("av", odim)


def vsr_cpu_small(odim: int = 30) -> ExpertConfig:
    """Small visual-only expert for CPU training (the evaluation reader's default size)."""
    return _cpu_small("video", odim)


def asr_cpu_small(odim: int = 30) -> ExpertConfig:
    """Audio-only model whose encoder is ``avsr_cpu_small``'s audio encoder (log-mel front-end,
    3 Conformer layers, widths 16..128), for pretraining it (``--modality audio``)."""
    return _cpu_small("audio", odim)


def asr_base() -> ExpertConfig:
    """Audio-only model whose encoder is :func:`avsr_base`'s audio encoder (12 layers, 768 wide)."""
    return ExpertConfig(modality="audio")
