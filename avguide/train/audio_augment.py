"""Audio augmentation for training the expert: the visual stream carries weight, the audio one generalises.

Speed perturbation comes first (stage 1 applies it, to audio and video together, before the audio
is cut to the video frames):

0. speed: with probability ``speed_prob`` per utterance, a factor ``s`` drawn uniformly in
   [speed_min, speed_max]; :func:`change_speed` plays the waveform ``s`` times faster, tempo and
   pitch together, like a tape (resampling, as Kaldi's 0.9/1.0/1.1 perturbation), and
   :func:`retime_frames` retimes the lip video to match (nearest frame). Speaking rate is what
   an audio reader trained on few voices generalises worst to.

Three stateless operations on padded 16 kHz waveforms (B, L) with valid lengths (B,) follow, in
this order, in :func:`augment_audio` (on the raw waveform, before the expert's layer norm):

1. additive white noise at a signal-to-noise ratio drawn uniformly in [snr_min_db, snr_max_db]
   (with probability ``noise_prob`` per utterance); the SNR is measured over the valid samples;
2. time masking: ``time_masks`` spans per utterance, each of uniform random length in
   [0, time_mask_max_s] seconds at a uniform random start, set to zero;
3. whole-utterance dropout: with probability ``dropout_prob`` the utterance's audio is all zeros
   (after the layer norm it stays zero: the expert must read the lips).

Randomness comes from the ``generator`` argument (the stage passes the global torch generator,
whose state every checkpoint saves, so resumed runs draw the same values).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import soxr
import torch

from avguide import AUDIO_RATE


@dataclass
class AudioAugmentConfig:
    """Audio augmentation of stage-1 training (all off: ``noise_prob=0, time_masks=0, dropout_prob=0``;
    ``speed_prob=0``, the default, draws no speed and leaves the random stream as before)."""

    speed_prob: float = 0.0
    speed_min: float = 0.9
    speed_max: float = 1.1
    noise_prob: float = 0.5
    snr_min_db: float = 0.0
    snr_max_db: float = 20.0
    time_masks: int = 2
    time_mask_max_s: float = 0.4
    dropout_prob: float = 0.25

    def check(self) -> list[str]:
        errs = []
        for name in ("speed_prob", "noise_prob", "dropout_prob"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                errs.append(f"{name}: must be in [0, 1], got {p}")
        if not 0.5 <= self.speed_min <= self.speed_max <= 2.0:
            errs.append(f"speed_min ({self.speed_min}) <= speed_max ({self.speed_max}) must lie in [0.5, 2]")
        if self.snr_min_db > self.snr_max_db:
            errs.append(f"snr_min_db ({self.snr_min_db}) must be <= snr_max_db ({self.snr_max_db})")
        if self.time_masks < 0:
            errs.append(f"time_masks: must be >= 0, got {self.time_masks}")
        if self.time_mask_max_s < 0:
            errs.append(f"time_mask_max_s: must be >= 0, got {self.time_mask_max_s}")
        return errs


def draw_speeds(batch: int, cfg: AudioAugmentConfig, generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-utterance speed factors.

    Args:
        batch: number of utterances. cfg: ``speed_prob``, ``speed_min``, ``speed_max``.
        generator: random source (nothing is drawn when ``speed_prob == 0``).
    Returns:
        (B,) float64 factors: uniform in [speed_min, speed_max] with probability ``speed_prob``, else 1.
    """
    if cfg.speed_prob == 0:
        return torch.ones(batch, dtype=torch.float64)
    on = torch.rand(batch, generator=generator) < cfg.speed_prob  # (B,)
    s = cfg.speed_min + torch.rand(batch, generator=generator).double() * (cfg.speed_max - cfg.speed_min)
    return torch.where(on, s, torch.ones_like(s))


def change_speed(audio: torch.Tensor, lengths: torch.Tensor, speeds: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Play each waveform ``speed`` times faster (tempo and pitch together).

    The valid samples are read as if sampled at ``16000 * speed`` Hz and resampled to 16 kHz
    (soxr, high quality), so ``n`` samples become ``round(n / speed)``; a factor of exactly 1
    copies the samples.

    Args:
        audio: (B, L) float waveforms, zero-padded. lengths: (B,) int64 valid samples.
        speeds: (B,) float factors > 0.
    Returns:
        audio (B, L') float zero-padded to the longest result, and lengths (B,) int64.
    """
    outs = []
    for x, n, s in zip(audio.detach().cpu(), lengths.tolist(), speeds.tolist()):
        x = x[:n].numpy()
        outs.append(x if s == 1.0 else soxr.resample(x, AUDIO_RATE * s, AUDIO_RATE, quality="HQ"))
    new_lengths = torch.tensor([len(y) for y in outs], dtype=torch.int64)
    out = np.zeros((len(outs), max(1, int(new_lengths.max()))), dtype=np.float32)
    for i, y in enumerate(outs):
        out[i, : len(y)] = y
    return torch.from_numpy(out).to(audio), new_lengths.to(lengths.device)


def retime_frames(video: torch.Tensor, lengths: torch.Tensor, speeds: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Retime frame sequences to match :func:`change_speed` (nearest frame).

    Output frame ``j`` of an item shows its frame ``floor((j + 0.5) * speed)``, the one under the
    output frame's centre; ``T`` frames become ``max(1, round(T / speed))``.

    Args:
        video: (B, T, ...) frames, padded. lengths: (B,) int64 valid frames (>= 1).
        speeds: (B,) float factors > 0.
    Returns:
        video (B, T', ...) with zero padding, and lengths (B,) int64.
    """
    s = speeds.to(torch.float64).cpu()
    n = lengths.cpu()
    new = torch.round(n.double() / s).long().clamp_min(1)  # (B,)
    j = torch.arange(int(new.max()), dtype=torch.float64)  # (T',)
    src = torch.floor((j[None, :] + 0.5) * s[:, None]).long()  # (B, T')
    src = torch.minimum(src, (n - 1)[:, None])
    out = torch.gather(video, 1, src.to(video.device).view(*src.shape, *[1] * (video.dim() - 2))
                       .expand(-1, -1, *video.shape[2:]))  # (B, T', ...)
    valid = (torch.arange(out.shape[1])[None, :] < new[:, None]).to(video.device)  # (B, T')
    out = out * valid.view(*valid.shape, *[1] * (video.dim() - 2)).to(out.dtype)
    return out, new.to(lengths.device)


def _valid(audio: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    return torch.arange(audio.shape[1], device=audio.device)[None, :] < lengths[:, None]  # (B, L)


def add_noise(audio: torch.Tensor, lengths: torch.Tensor, snr_db: torch.Tensor,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """Add white Gaussian noise at a given SNR to the valid part of each waveform.

    Args:
        audio: (B, L) float waveforms, zero-padded.
        lengths: (B,) int64 valid samples.
        snr_db: (B,) float target SNR in dB (``inf`` adds nothing).
        generator: random source.
    Returns:
        (B, L) float: noise with power ``P_signal / 10**(snr/10)`` added on valid samples
        (``P`` = mean square over the valid samples); padding stays zero.
    """
    valid = _valid(audio, lengths).to(audio.dtype)
    power = (audio.pow(2) * valid).sum(1) / lengths.clamp_min(1).to(audio.dtype)  # (B,)
    scale = torch.sqrt(power / torch.pow(10.0, snr_db.to(audio.dtype) / 10))  # (B,)
    noise = torch.randn(audio.shape, generator=generator).to(audio)  # drawn on the CPU generator
    return audio + noise * scale[:, None] * valid


def time_mask(audio: torch.Tensor, lengths: torch.Tensor, n_masks: int, max_samples: int,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero ``n_masks`` random spans of each waveform.

    Args:
        audio: (B, L) float. lengths: (B,) int64 valid samples.
        n_masks: spans per utterance. max_samples: longest span (uniform in [0, max_samples]).
        generator: random source.
    Returns:
        (B, L) float with the spans (inside the valid part) set to 0.
    """
    if n_masks == 0 or max_samples == 0:
        return audio
    b, n = audio.shape[0], n_masks
    width = (torch.rand(b, n, generator=generator) * (max_samples + 1)).long().clamp_max(max_samples)  # (B, n)
    width = torch.minimum(width, lengths.cpu()[:, None])  # a span never leaves the valid part
    room = lengths.cpu()[:, None] - width  # (B, n) latest start
    start = (torch.rand(b, n, generator=generator) * (room + 1)).long().clamp_max(room)  # (B, n)
    t = torch.arange(audio.shape[1])[None, None, :]  # (1, 1, L)
    masked = ((t >= start[..., None]) & (t < (start + width)[..., None])).any(1)  # (B, L)
    return audio.masked_fill(masked.to(audio.device), 0.0)


def augment_audio(audio: torch.Tensor, lengths: torch.Tensor, cfg: AudioAugmentConfig,
                  generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise, time masks and whole-utterance dropout (see the module docstring).

    Args:
        audio: (B, L) float raw 16 kHz waveforms, zero-padded. lengths: (B,) int64.
        cfg: the augmentation settings.
        generator: random source (None: the global torch generator).
    Returns:
        augmented (B, L) float, and dropped (B,) bool (utterances whose audio was zeroed).
    """
    b = audio.shape[0]
    noisy = torch.rand(b, generator=generator) < cfg.noise_prob  # (B,)
    snr = cfg.snr_min_db + torch.rand(b, generator=generator) * (cfg.snr_max_db - cfg.snr_min_db)
    snr = torch.where(noisy, snr, torch.full_like(snr, float("inf")))
    out = add_noise(audio, lengths, snr.to(audio.device), generator)
    out = time_mask(out, lengths, cfg.time_masks, int(round(cfg.time_mask_max_s * AUDIO_RATE)), generator)
    dropped = torch.rand(b, generator=generator) < cfg.dropout_prob  # (B,)
    out = out * (~dropped).to(out.dtype).to(out.device)[:, None]
    return out, dropped
