"""Speech feature encoders for the animators: offline log-mel (default), wav2vec 2.0, HuBERT.

Every encoder has the same call::

    feats = encoder(audio, audio_lengths, rate, n_out)   # (B, n_out, out_dim)

giving features sampled at ``rate`` Hz (feature ``j`` describes time ``j / rate`` s), where the
animator asks for ``rate = ratio * fps`` (ratio 1: one feature per motion frame; 2: two, like
FaceFormer's 50 Hz wav2vec2 features for 25 fps BIWI). Native-rate features are linearly
interpolated in time by :func:`resample_features`, which only reads each clip's own valid frames,
so a zero-padded batch gives the features each clip gives alone.

- ``mel``: 80-band log-mel at 100 Hz (:mod:`avguide.audio.mel`) + a small dilated conv stack,
  then resampled. No download, fast on CPU.
- ``wav2vec2`` / ``hubert``: a ``transformers`` model (optional dependency ``avguide[hf]``) from a
  local directory or a model id. As in FaceFormer the frozen convolutional feature encoder runs
  at 50 Hz, its features are interpolated to ``rate`` and the transformer runs at that rate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from avguide import AUDIO_RATE
from avguide.audio.mel import LOG_MEL_SHIFT, log_mel, mel_filterbank, n_mel_frames
from avguide.errors import BadInputError, MissingFileError


STREAM_LOOKAHEAD = 7
"""Mel frames the streaming presets' convolutions look ahead: with the mel window and the
interpolation, 92.5 ms of speech (:func:`encoder_lookahead_s`), within a 100 ms budget."""


@dataclass
class AudioEncoderConfig:
    """Audio encoder hyper-parameters.

    kind: ``mel`` (default), ``wav2vec2`` or ``hubert``.
    n_mels, channels, n_blocks, kernel: the mel encoder (bands, width, dilated blocks with
        dilations 1, 2, 4, ..., kernel size).
    model: ``wav2vec2``/``hubert``: local directory or Hugging Face model id.
    normalize: zero-mean unit-variance per clip before the HF model (its feature extractor's
        ``do_normalize``; true for wav2vec2-base-960h and hubert-large-ls960-ft).
    freeze_feature_encoder: keep the HF convolutional feature encoder frozen.
    lookahead: ``mel`` only. -1: centred convolutions (each feature sees about +-0.3 s of
        speech). >= 0: causal convolutions shifted by this many 10 ms mel frames, so a feature
        depends on no speech later than ``lookahead`` frames after it: the encoder can stream
        with a bounded delay (:func:`encoder_lookahead_s` gives the whole look-ahead).
    """

    kind: Literal["mel", "wav2vec2", "hubert"] = "mel"
    n_mels: int = 80
    channels: int = 256
    n_blocks: int = 4
    kernel: int = 5
    model: str = "facebook/wav2vec2-base-960h"
    normalize: bool = True
    freeze_feature_encoder: bool = True
    lookahead: int = -1

    def check(self) -> list[str]:
        errors = []
        if self.kind not in ("mel", "wav2vec2", "hubert"):
            errors.append(f"kind: {self.kind!r} is not one of mel, wav2vec2, hubert")
        if self.lookahead < -1:
            errors.append(f"lookahead: -1 (centred) or >= 0 mel frames, got {self.lookahead}")
        if self.lookahead >= 0 and self.kind != "mel":
            errors.append(f"lookahead: only the mel encoder streams (kind={self.kind!r} needs lookahead=-1)")
        for name in ("n_mels", "channels", "n_blocks"):
            if getattr(self, name) < 1:
                errors.append(f"{name}: must be >= 1, got {getattr(self, name)}")
        if self.kernel < 1 or self.kernel % 2 == 0:
            errors.append(f"kernel: must be odd and >= 1, got {self.kernel}")
        return errors


def mel_encoder_tiny() -> AudioEncoderConfig:
    """A small mel encoder for tests."""
    return AudioEncoderConfig(n_mels=40, channels=16, n_blocks=2, kernel=3)


def wav2vec2_base() -> AudioEncoderConfig:
    """FaceFormer's / CodeTalker's encoder: facebook/wav2vec2-base-960h (768-d)."""
    return AudioEncoderConfig(kind="wav2vec2", model="facebook/wav2vec2-base-960h")


def resample_features(feats: torch.Tensor, lengths: torch.Tensor, src_rate: float, dst_rate: float,
                      n_out: int) -> torch.Tensor:
    """Linear interpolation of feature sequences in time, each clip within its own valid frames.

    Output frame ``j`` is read at source position ``p = j * src_rate / dst_rate``, clamped to the
    clip's last valid frame ``lengths[b] - 1``.

    Args:
        feats: ``(B, N, D)`` features at ``src_rate`` Hz (frame ``i`` at time ``i / src_rate``).
        lengths: ``(B,)`` valid source frames per clip (>= 1).
        src_rate, dst_rate: rates in Hz.
        n_out: output frames.
    Returns:
        ``(B, n_out, D)`` at ``dst_rate``.
    """
    b, _, d = feats.shape
    pos = torch.arange(n_out, device=feats.device, dtype=torch.float64) * (src_rate / dst_rate)
    last = (lengths.to(feats.device) - 1).clamp(min=0).to(torch.float64)  # (B,)
    pos = torch.minimum(pos[None, :], last[:, None])  # (B, n_out)
    i0 = pos.floor().long()
    i1 = torch.minimum(i0 + 1, last.long()[:, None])
    w = (pos - i0).to(feats.dtype)[..., None]  # (B, n_out, 1)
    f0 = feats.gather(1, i0[..., None].expand(b, n_out, d))
    f1 = feats.gather(1, i1[..., None].expand(b, n_out, d))
    return f0 * (1 - w) + f1 * w


def _valid(lengths: torch.Tensor, n: int) -> torch.Tensor:
    return torch.arange(n, device=lengths.device)[None, :] < lengths[:, None]  # (B, n)


class MelEncoder(nn.Module):
    """Log-mel (100 Hz) -> conv stem -> residual dilated conv blocks -> resample to ``rate``.

    Padded frames are zeroed before every convolution, so each clip's features equal those of the
    clip alone (convolutions see zeros beyond the end either way). With ``cfg.lookahead >= 0`` the
    convolutions are causal and the output is read ``lookahead`` frames later, so that feature
    ``i`` depends on mel frames ``<= i + lookahead`` only (the streaming encoder).
    """

    def __init__(self, cfg: AudioEncoderConfig):
        super().__init__()
        self.hop = 160
        self.kernel, self.lookahead = cfg.kernel, cfg.lookahead
        self.register_buffer("bank", mel_filterbank(400, cfg.n_mels), persistent=False)
        self.stem = nn.Conv1d(cfg.n_mels, cfg.channels, cfg.kernel)
        self.blocks = nn.ModuleList(nn.Conv1d(cfg.channels, cfg.channels, cfg.kernel, dilation=2 ** i)
                                    for i in range(cfg.n_blocks))
        self.norm = nn.LayerNorm(cfg.channels)
        self.out_dim = cfg.channels

    def _pad(self, x: torch.Tensor, dilation: int) -> torch.Tensor:
        """``(B, C, N)`` -> ``(B, C, N + (k-1) d)``: centred, or all on the left (causal)."""
        span = (self.kernel - 1) * dilation
        return F.pad(x, (span, 0) if self.lookahead >= 0 else (span // 2, span // 2))

    def mel(self, audio: torch.Tensor, audio_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Scaled log-mel frames ``(B, N, n_mels)`` and valid frames per clip ``(B,)``."""
        keep = _valid(audio_lengths, audio.shape[1]).to(audio.dtype)
        mel = (log_mel(audio * keep, hop=self.hop, bank=self.bank) + LOG_MEL_SHIFT) / LOG_MEL_SHIFT
        return mel, n_mel_frames(audio_lengths, self.hop)

    @property
    def receptive_field(self) -> int:
        """Mel frames of the past (causal) or of each side (centred) one output depends on."""
        span = (self.kernel - 1) * (1 + sum(2 ** i for i in range(len(self.blocks))))
        return span if self.lookahead >= 0 else span // 2

    def stack(self, mel: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """The convolutions on mel frames: ``(B, N, n_mels)`` and ``(B, 1, N)`` validity (frames
        past a clip's end are zeroed before every convolution) -> ``(B, C, N)``, before the norm.
        Causal (``lookahead >= 0``): output ``j`` depends on frames ``j - receptive_field .. j``."""
        x = self.stem(self._pad(mel.transpose(1, 2) * valid, 1))  # (B, C, N)
        for i, conv in enumerate(self.blocks):
            x = x + F.gelu(conv(self._pad(F.gelu(x) * valid, 2 ** i)))
        return x

    def convolve(self, mel: torch.Tensor, n_frames: torch.Tensor) -> torch.Tensor:
        """``(B, N, n_mels)`` mel frames (valid up to ``n_frames``) -> ``(B, N, C)`` features at 100 Hz."""
        la = max(self.lookahead, 0)
        mel = F.pad(mel, (0, 0, 0, la))  # (B, N + la, n_mels): the look-ahead reads zeros past the end
        valid = _valid(n_frames, mel.shape[1]).to(mel.dtype)[:, None, :]  # (B, 1, N + la)
        return self.norm(self.stack(mel, valid)[:, :, la:].transpose(1, 2))  # (B, N, C)

    def forward(self, audio: torch.Tensor, audio_lengths: torch.Tensor, rate: float,
                n_out: int, n_valid_out: torch.Tensor | None = None) -> torch.Tensor:
        """Features at ``rate`` Hz.

        Args:
            audio: ``(B, L)`` float32 16 kHz, zero beyond each clip's length.
            audio_lengths: ``(B,)`` samples per clip.
            rate: output rate in Hz.
            n_out: output frames.
            n_valid_out: accepted for the common encoder call; the convolutions need no mask.
        Returns:
            ``(B, n_out, channels)``.
        """
        mel, n_frames = self.mel(audio, audio_lengths)
        return resample_features(self.convolve(mel, n_frames), n_frames, AUDIO_RATE / self.hop, rate, n_out)


def encoder_lookahead_s(cfg: AudioEncoderConfig) -> float:
    """Seconds of speech after a feature's time that the feature may depend on (an upper bound).

    A feature for time ``tau`` interpolates the mel frames around ``tau * 100`` (the later one at
    most 10 ms after ``tau``), the convolutions read ``lookahead`` frames further, and a mel
    frame's 25 ms window reaches 12.5 ms past its centre: ``(lookahead + 1) * 10 ms + 12.5 ms``.

    Returns:
        The look-ahead in seconds, or ``inf`` for centred convolutions (``lookahead = -1``) and
        the Hugging Face encoders (bidirectional transformers).
    """
    if cfg.kind != "mel" or cfg.lookahead < 0:
        return float("inf")
    return ((cfg.lookahead + 1) * 160 + 200) / AUDIO_RATE


class HFAudioEncoder(nn.Module):
    """A ``transformers`` Wav2Vec2Model / HubertModel run FaceFormer-style.

    The conv feature encoder (frozen if asked) gives 50 Hz features; they are interpolated to
    ``rate`` and then projected and encoded by the transformer at that rate, with an attention
    mask over each clip's valid frames.

    Args:
        model: a ``Wav2Vec2Model`` or ``HubertModel`` instance.
        normalize: per-clip zero-mean unit-variance input normalisation.
        freeze_feature_encoder: stop gradients into the conv feature encoder.
    """

    def __init__(self, model: nn.Module, normalize: bool = True, freeze_feature_encoder: bool = True):
        super().__init__()
        self.model = model
        self.normalize = normalize
        if freeze_feature_encoder:
            for p in model.feature_extractor.parameters():
                p.requires_grad = False
        self.out_dim = model.config.hidden_size
        # GroupNorm over time in the first conv layer mixes padding into valid frames: run it per clip.
        self.per_clip_convs = model.config.feat_extract_norm == "group"
        stride = 1
        for s in model.config.conv_stride:
            stride *= s
        self.native_rate = AUDIO_RATE / stride

    def _conv_features(self, audio: torch.Tensor, audio_lengths: torch.Tensor,
                       n_feat: torch.Tensor) -> torch.Tensor:
        """``(B, L)`` -> ``(B, N, C)`` conv features (zeros beyond each clip's ``n_feat``)."""
        extractor = self.model.feature_extractor
        if not self.per_clip_convs:
            return extractor(audio).transpose(1, 2)
        n_max = int(n_feat.max())
        out = []
        for b in range(audio.shape[0]):
            f = extractor(audio[b: b + 1, : int(audio_lengths[b])]).transpose(1, 2)  # (1, n, C)
            out.append(F.pad(f, (0, 0, 0, n_max - f.shape[1])))
        return torch.cat(out, 0)

    def forward(self, audio: torch.Tensor, audio_lengths: torch.Tensor, rate: float,
                n_out: int, n_valid_out: torch.Tensor | None = None) -> torch.Tensor:
        """Features at ``rate`` Hz (see :class:`MelEncoder` for the arguments).

        Args:
            n_valid_out: ``(B,)`` valid output frames per clip for the transformer's attention mask;
                defaults to ``ceil(L / 16000 * rate)`` clipped to ``n_out``.
        Returns:
            ``(B, n_out, hidden_size)``.
        """
        keep = _valid(audio_lengths, audio.shape[1]).to(audio.dtype)
        x = audio * keep
        if self.normalize:
            n = audio_lengths.to(audio.dtype)[:, None]
            mean = x.sum(1, keepdim=True) / n
            var = ((x - mean) * keep).square().sum(1, keepdim=True) / n
            x = (x - mean) / torch.sqrt(var + 1e-7) * keep
        n_feat = self.model._get_feat_extract_output_lengths(audio_lengths).long()
        if int(n_feat.min()) < 1:
            raise ValueError(f"audio: clips shorter than one {self.model.config.model_type} frame "
                             f"(got lengths {audio_lengths.tolist()} samples)")
        feats = self._conv_features(x, audio_lengths, n_feat)
        feats = resample_features(feats, n_feat, self.native_rate, rate, n_out)
        hidden = self.model.feature_projection(feats)
        if isinstance(hidden, tuple):  # wav2vec2 returns (projected, normed input)
            hidden = hidden[0]
        if n_valid_out is None:
            n_valid_out = torch.ceil(audio_lengths.to(torch.float64) / AUDIO_RATE * rate).long()
        mask = _valid(n_valid_out.clamp(max=n_out, min=1), n_out)
        return self.model.encoder(hidden, attention_mask=mask)[0]


def load_hf_model(kind: str, source: str) -> nn.Module:
    """Load a pretrained ``Wav2Vec2Model`` / ``HubertModel`` from a directory or model id.

    Raises:
        BadInputError: ``transformers`` is not installed.
        MissingFileError: the directory / id cannot be loaded (no network and not cached).
    """
    try:
        from transformers import HubertModel, Wav2Vec2Model
    except ImportError:
        raise BadInputError(f"audio encoder {kind!r} needs the optional dependency transformers "
                            "(pip install 'avguide[hf]')") from None
    cls = Wav2Vec2Model if kind == "wav2vec2" else HubertModel
    try:
        return cls.from_pretrained(source)
    except OSError as e:
        raise MissingFileError(f"audio encoder {kind!r}: cannot load {source!r} ({e})") from None


def build_audio_encoder(cfg: AudioEncoderConfig) -> nn.Module:
    """Encoder module for a config; it has ``out_dim`` and the call described in the module doc.

    Raises:
        BadInputError / MissingFileError: see :func:`load_hf_model`.
    """
    if cfg.kind == "mel":
        return MelEncoder(cfg)
    return HFAudioEncoder(load_hf_model(cfg.kind, cfg.model), cfg.normalize, cfg.freeze_feature_encoder)
