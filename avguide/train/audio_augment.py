"""Audio augmentation for training the audio-visual expert, so that the visual stream carries weight.

Three stateless operations on padded 16 kHz waveforms (B, L) with valid lengths (B,), applied in
this order by :func:`augment_audio` to the raw waveform (before the expert's layer norm):

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

import torch

from avguide import AUDIO_RATE


@dataclass
class AudioAugmentConfig:
    """Audio augmentation of stage-1 AV training (all off: ``noise_prob=0, time_masks=0, dropout_prob=0``)."""

    noise_prob: float = 0.5
    snr_min_db: float = 0.0
    snr_max_db: float = 20.0
    time_masks: int = 2
    time_mask_max_s: float = 0.4
    dropout_prob: float = 0.25

    def check(self) -> list[str]:
        errs = []
        for name in ("noise_prob", "dropout_prob"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                errs.append(f"{name}: must be in [0, 1], got {p}")
        if self.snr_min_db > self.snr_max_db:
            errs.append(f"snr_min_db ({self.snr_min_db}) must be <= snr_max_db ({self.snr_max_db})")
        if self.time_masks < 0:
            errs.append(f"time_masks: must be >= 0, got {self.time_masks}")
        if self.time_mask_max_s < 0:
            errs.append(f"time_mask_max_s: must be >= 0, got {self.time_mask_max_s}")
        return errs


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
