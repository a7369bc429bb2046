"""Log-mel spectrogram of 16 kHz speech, computed in torch (STFT + our own mel filterbank).

No torchaudio: the filterbank is built here (HTK mel scale, triangles with peak 1), the STFT is
``torch.stft`` with zero ("constant") centre padding so that a batch of zero-padded clips gives
exactly the frames each clip gives alone.
"""

from __future__ import annotations

import torch

from avguide import AUDIO_RATE


def hz_to_mel(hz: torch.Tensor | float) -> torch.Tensor:
    """HTK mel scale: ``2595 log10(1 + f / 700)``."""
    return 2595.0 * torch.log10(1.0 + torch.as_tensor(hz, dtype=torch.float64) / 700.0)


def mel_to_hz(mel: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`hz_to_mel`."""
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def mel_filterbank(n_fft: int = 400, n_mels: int = 80, sample_rate: int = AUDIO_RATE,
                   f_min: float = 0.0, f_max: float | None = None) -> torch.Tensor:
    """Triangular mel filterbank (HTK scale, unnormalised: each triangle peaks at 1).

    Filter ``m`` rises linearly from centre ``m-1`` to centre ``m`` and falls to centre ``m+1``,
    with ``n_mels + 2`` centres equally spaced in mel between ``f_min`` and ``f_max``.

    Args:
        n_fft: FFT size; the bank has ``n_fft // 2 + 1`` frequency rows.
        n_mels: number of mel bands.
        sample_rate: Hz.
        f_min, f_max: band edges in Hz (``f_max`` defaults to Nyquist).
    Returns:
        ``(n_fft // 2 + 1, n_mels)`` float32 matrix; ``power_spectrum @ bank`` gives mel energies.
    """
    f_max = sample_rate / 2 if f_max is None else f_max
    freqs = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)  # (n_freq,)
    mels = torch.linspace(float(hz_to_mel(f_min)), float(hz_to_mel(f_max)), n_mels + 2,
                          dtype=torch.float64)
    centres = mel_to_hz(mels)  # (n_mels + 2,)
    lo, mid, hi = centres[:-2], centres[1:-1], centres[2:]  # (n_mels,)
    rising = (freqs[:, None] - lo[None]) / (mid - lo)[None]
    falling = (hi[None] - freqs[:, None]) / (hi - mid)[None]
    return torch.clamp(torch.minimum(rising, falling), min=0.0).to(torch.float32)


def n_mel_frames(n_samples: torch.Tensor | int, hop: int = 160) -> torch.Tensor | int:
    """Frames :func:`log_mel` gives for ``n_samples`` samples (centred STFT): ``n // hop + 1``."""
    return n_samples // hop + 1


def log_mel(audio: torch.Tensor, n_fft: int = 400, hop: int = 160, n_mels: int = 80,
            bank: torch.Tensor | None = None) -> torch.Tensor:
    """Log10 mel energies of 16 kHz audio (25 ms periodic-Hann window, 10 ms hop -> 100 Hz).

    Frame ``i`` is centred on sample ``i * hop`` (zero padding of ``n_fft // 2`` both sides).

    Args:
        audio: ``(B, L)`` float32 waveform in [-1, 1].
        n_fft: FFT and window size in samples.
        hop: hop in samples.
        n_mels: mel bands (ignored when ``bank`` is given).
        bank: optional precomputed ``(n_fft // 2 + 1, n_mels)`` filterbank.
    Returns:
        ``(B, N, n_mels)`` float32, ``N = L // hop + 1``: ``log10(max(mel_power, 1e-10))``.
    """
    if bank is None:
        bank = mel_filterbank(n_fft, n_mels)
    window = torch.hann_window(n_fft, periodic=True, dtype=audio.dtype, device=audio.device)
    spec = torch.stft(audio, n_fft, hop_length=hop, win_length=n_fft, window=window, center=True,
                      pad_mode="constant", return_complex=True)  # (B, n_freq, N)
    power = spec.real.square() + spec.imag.square()
    mel = power.transpose(1, 2) @ bank.to(audio.device, audio.dtype)  # (B, N, n_mels)
    return torch.log10(torch.clamp(mel, min=1e-10))


LOG_MEL_SHIFT = 4.0
"""Offset and scale used to bring log10 mel energies of speech to roughly [-1, 1]: (x + 4) / 4."""

