"""Reading and writing waveforms. Everything inside avguide is 16 kHz mono float32.

The published code fed the expert audio at the file's native rate (22.05/44.1 kHz); here every
loader resamples to :data:`avguide.AUDIO_RATE` (soxr, high quality) and down-mixes to mono, unless
the caller asks for strict checking, in which case a file that is not already 16 kHz mono is an
error naming the file.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from avguide import AUDIO_RATE
from avguide.errors import BadInputError, MissingFileError
from avguide.io import atomic_path

log = logging.getLogger(__name__)

MIN_SECONDS = 0.1
"""Shorter audio (after conversion) is rejected as empty."""


def load_audio(path: str | Path, *, strict: bool = False, rate: int = AUDIO_RATE) -> np.ndarray:
    """Load a sound file as a mono float32 waveform at ``rate`` Hz.

    Args:
        path: any format libsndfile reads (wav, flac, ogg, ...).
        strict: if True, the file must already be mono at ``rate`` (used for datasets whose
            manifest promises 16 kHz mono; a mismatch there means a corrupt or foreign file).
            If False, several channels are averaged and other rates are resampled.
        rate: target sample rate in Hz.
    Returns:
        (L,) float32 in [-1, 1].
    Raises:
        MissingFileError: no such file.
        BadInputError: unreadable/corrupt, empty (< 0.1 s), non-finite samples, or (strict)
            not mono / not ``rate`` Hz. The message names the file and the problem.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: audio file not found")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)  # (L, channels)
    except (sf.LibsndfileError, RuntimeError, ValueError) as e:
        raise BadInputError(f"{path}: not a readable audio file ({e})") from None
    if data.shape[0] == 0:
        raise BadInputError(f"{path}: audio is empty (0 samples)")
    if strict and data.shape[1] != 1:
        raise BadInputError(f"{path}: expected mono audio, got {data.shape[1]} channels")
    if strict and sr != rate:
        raise BadInputError(f"{path}: expected {rate} Hz audio, got {sr} Hz")
    if not np.isfinite(data).all():
        raise BadInputError(f"{path}: audio contains NaN or infinite samples")
    wav = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]  # (L,)
    if sr != rate:
        wav = soxr.resample(wav, sr, rate, quality="HQ").astype(np.float32)
    if wav.shape[0] < MIN_SECONDS * rate:
        raise BadInputError(f"{path}: audio is too short ({wav.shape[0] / rate:.3f} s < {MIN_SECONDS} s)")
    return np.ascontiguousarray(wav, dtype=np.float32)


def save_wav(path: str | Path, wav: np.ndarray, rate: int = AUDIO_RATE) -> None:
    """Write a mono waveform as 16-bit PCM wav, atomically.

    Args:
        path: destination (.wav).
        wav: (L,) float in [-1, 1]; values outside are clipped.
        rate: sample rate in Hz.
    """
    wav = np.clip(np.asarray(wav, dtype=np.float32), -1.0, 1.0)
    with atomic_path(path) as tmp:
        sf.write(str(tmp), wav, rate, subtype="PCM_16", format="WAV")
