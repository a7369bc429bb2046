"""Phone timings of recorded speech from its transcript: espeak-ng speaks the transcript, and
dynamic time warping (DTW) maps the synthetic phones' boundaries onto the recording.

This is alignment by synthesis (the method of aligners such as aeneas): it needs no acoustic
model, only the transcript, and it works for any voice the features can match to espeak-ng's.

1. **Reference**: espeak-ng speaks the transcript (voice ``m1``, 175 words per minute) with its
   timed phones (:func:`avguide.speech.espeak.speak`).
2. **Features** of both signals at 100 Hz (25 ms window, 10 ms hop): 12 mel-frequency cepstral
   coefficients (c1..c12, a DCT-II of 40 log-mel bands; c0, the loudness, is left out) and their
   time derivatives, each normalised to zero mean and unit variance over the speech span.
3. **Speech spans**: a frame is speech when its log energy lies above the quietest decile by
   a quarter of the distance from that decile to the loudest 5 % (robust to a noise floor);
   the span runs from the first to the last speech frame, 30 / 40 ms wider. Silence before and
   after the span is left out of the warping (it would otherwise absorb the first and last
   phones).
4. **DTW**: Euclidean frame distances, steps (1, 1), (1, 0), (0, 1) at equal cost, both spans
   aligned end to end; computed by anti-diagonals in numpy, in ``O(N M)`` time and memory.
5. **Check**: the alignment's cost is the mean distance between the paired frames relative to
   the mean distance between any two frames of the two recordings (20,000 pairs drawn with a
   fixed seed). Matching transcripts of 6 sentences spoken by 4 espeak-ng voices other than the
   reference's (f2, klatt3, m8, f3 at 165-230 wpm, clean or with noise at 10 dB SNR) cost
   0.37-0.77; the next sentence's transcript 0.76-0.93. Above :data:`MISMATCH_COST` the alignment
   is flagged as doubtful: a warning, not an error, since real voices sit further from
   espeak-ng's than its own voices do; and a wrong transcript of a similar sentence can pass
   below it (0.73-0.79 for "Please pass the paper plates ..." read against "Peter picked a peck
   ..." in three of five voices), so the check catches gross mistakes only.
6. **Mapping**: a reference time maps to the mean time of the recording's frames that the path
   pairs with its frame. Phone boundaries map in order (kept non-decreasing); the returned
   phones tile ``[0, duration]`` of the recording, with silence ``"_"`` before and after.

Measured (``tests/speech/test_align.py``, espeak-ng voices, rates and pitches other than the
reference's, with 0.7 s of leading silence and white noise at 10 dB SNR): median boundary
error 3-6 ms, 90th percentile under 30 ms, against the 40 ms tolerance of the articulation
metrics (:data:`avguide.metrics.articulation.TOL_S`). Real voices differ more from espeak-ng's
than its own voices do; expect larger errors there.
"""

from __future__ import annotations

import numpy as np

from dataclasses import dataclass

from avguide import AUDIO_RATE
from avguide.errors import BadInputError
from avguide.speech.espeak import SILENCE, Phone, Voice, speak

FRAME_S = 0.01
"""Feature hop (s): 160 samples at 16 kHz."""
N_MELS, N_CEPS = 40, 12
MAX_CELLS = 40_000_000
"""Largest DTW grid (reference frames x recording frames): about 63 s of speech against 63 s,
two float32 grids of 160 MB (distances, accumulated cost). Longer recordings are refused with a
message to split them."""
REFERENCE_VOICE = Voice(variant="m1", rate_wpm=175)
MISMATCH_COST = 0.8
"""Alignment cost above which the transcript probably does not match the recording."""


@dataclass(frozen=True)
class Alignment:
    """A recording's timed phones from its transcript.

    Attributes:
        phones: phones (IPA without stress, silence ``"_"``) tiling ``[0, duration]`` seconds.
        cost: mean Euclidean distance between the paired feature frames / that between any two
            frames (about 0.4-0.8 for a matching transcript, 1 for no match at all).
    """

    phones: list[Phone]
    cost: float

    @property
    def doubtful(self) -> bool:
        """The transcript probably does not match the recording (``cost > MISMATCH_COST``)."""
        return self.cost > MISMATCH_COST


def _log_mel(audio: np.ndarray) -> np.ndarray:
    """(L,) float32 16 kHz -> (N, 40) float64 log10 mel energies at 100 Hz."""
    import torch

    from avguide.audio.mel import log_mel

    with torch.no_grad():
        return log_mel(torch.from_numpy(np.ascontiguousarray(audio, np.float32))[None],
                       n_mels=N_MELS)[0].double().numpy()


def speech_span(log_mel: np.ndarray) -> tuple[int, int]:
    """Frames ``[start, stop)`` from the first to the last speech frame (see the module
    docstring), widened by 3 frames before and 4 after.

    Args:
        log_mel: (N, n_mels) log10 mel energies.
    """
    energy = np.log10(np.power(10.0, log_mel).sum(axis=1))  # (N,) log10 frame energy
    floor, top = np.percentile(energy, 10), np.percentile(energy, 95)
    on = np.nonzero(energy > floor + 0.25 * (top - floor))[0]
    if on.size == 0:
        return 0, len(energy)
    return max(0, int(on[0]) - 3), min(len(energy), int(on[-1]) + 4)


def mfcc_features(log_mel: np.ndarray) -> np.ndarray:
    """(N, n_mels) log-mel -> (N, 2 * 12) float64: c1..c12 and their time derivatives, each
    normalised to zero mean and unit variance over the N frames."""
    n = log_mel.shape[1]
    k = np.arange(n)
    dct = np.cos(np.pi / n * (k[None, :] + 0.5) * np.arange(1, N_CEPS + 1)[:, None])  # (12, n_mels)
    ceps = log_mel @ dct.T  # (N, 12)
    ceps = (ceps - ceps.mean(axis=0)) / (ceps.std(axis=0) + 1e-8)
    delta = np.gradient(ceps, axis=0) if len(ceps) > 1 else np.zeros_like(ceps)
    delta = (delta - delta.mean(axis=0)) / (delta.std(axis=0) + 1e-8)
    return np.concatenate([ceps, delta], axis=1)


def dtw_path(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The minimum-cost monotone alignment of two feature sequences.

    Args:
        x: (N, D) and y: (M, D) float features.
    Returns:
        (P, 2) int64 path of (i, j) pairs from (0, 0) to (N - 1, M - 1); each step advances i,
        j or both by one. Cost: the sum of Euclidean distances ``|x_i - y_j|`` along the path.
    """
    n, m = len(x), len(y)
    x, y = np.asarray(x, np.float32), np.asarray(y, np.float32)  # one float32 (N, M) grid besides acc
    cost = (x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2.0 * x @ y.T  # (N, M) squared distances
    np.sqrt(np.maximum(cost, 0.0, out=cost), out=cost)
    acc = np.full((n + 1, m + 1), np.inf, np.float32)  # acc[i, j]: best cost to (i - 1, j - 1)
    acc[0, 0] = 0.0
    for s in range(2, n + m + 1):  # anti-diagonal i + j = s (1-based): its cells depend on s - 1, s - 2
        i = np.arange(max(1, s - m), min(n, s - 1) + 1)
        j = s - i
        acc[i, j] = cost[i - 1, j - 1] + np.minimum(np.minimum(acc[i - 1, j - 1], acc[i - 1, j]), acc[i, j - 1])
    i, j = n, m
    path = [(n - 1, m - 1)]
    while i > 1 or j > 1:
        steps = ((acc[i - 1, j - 1], i - 1, j - 1), (acc[i - 1, j], i - 1, j), (acc[i, j - 1], i, j - 1))
        _, i, j = min(steps, key=lambda st: st[0])
        path.append((i - 1, j - 1))
    return np.array(path[::-1], dtype=np.int64)


def align_transcript(audio: np.ndarray, text: str, what: str = "speech") -> Alignment:
    """Timed phones of a recording from its transcript (see the module docstring).

    Args:
        audio: (L,) float32 mono speech at 16 kHz.
        text: what is said (English; numbers and punctuation as espeak-ng reads them).
        what: the recording's name for messages (a file path).
    Returns:
        The phones tiling ``[0, L / 16000]`` seconds and the alignment's cost.
    Raises:
        BadInputError: an empty transcript or one espeak-ng pronounces nothing of, audio with
            no speech span, or a recording too long to align at once.
    """
    if not text or not text.strip():
        raise BadInputError(f"{what}: the transcript is empty")
    ref = speak(text.strip(), REFERENCE_VOICE)
    spoken = [p for p in ref.phones if p.ipa != SILENCE]
    if not spoken:
        raise BadInputError(f"{what}: espeak-ng pronounces nothing in the transcript {text.strip()[:60]!r}")
    mel_ref, mel_rec = _log_mel(ref.audio), _log_mel(audio)
    r0, r1 = speech_span(mel_ref)
    u0, u1 = speech_span(mel_rec)
    if (r1 - r0) * (u1 - u0) > MAX_CELLS:
        raise BadInputError(f"{what}: {len(audio) / AUDIO_RATE:.0f} s of speech is too long to align with its "
                            f"transcript at once (at most about {np.sqrt(MAX_CELLS) * FRAME_S:.0f} s); split the "
                            "recording into sentences")
    if u1 - u0 < 3:
        raise BadInputError(f"{what}: no speech found to align the transcript with")
    x, y = mfcc_features(mel_ref[r0:r1]), mfcc_features(mel_rec[u0:u1])
    path = dtw_path(x, y)  # (P, 2)
    pairs = np.random.default_rng(0).integers(0, [len(x), len(y)], size=(20_000, 2))  # any two frames
    chance = np.linalg.norm(x[pairs[:, 0]] - y[pairs[:, 1]], axis=1).mean()
    cost = float(np.linalg.norm(x[path[:, 0]] - y[path[:, 1]], axis=1).mean() / chance)
    total, count = np.zeros(r1 - r0), np.zeros(r1 - r0)
    np.add.at(total, path[:, 0], path[:, 1])
    np.add.at(count, path[:, 0], 1)
    mapped = (total / count + u0) * FRAME_S  # (r1 - r0,) recording time of each reference frame
    duration = len(audio) / AUDIO_RATE

    def to_recording(t: float) -> float:
        f = int(np.clip(round(t / FRAME_S) - r0, 0, len(mapped) - 1))
        return float(np.clip(mapped[f], 0.0, duration))

    phones, last = [], 0.0
    for p in spoken:
        start = max(to_recording(p.start), last)
        end = max(to_recording(p.end), start)
        if phones and start > phones[-1].end:
            phones.append(Phone(SILENCE, phones[-1].end, start))
        elif not phones and start > 0.0:
            phones.append(Phone(SILENCE, 0.0, start))
        phones.append(Phone(p.ipa, start, end, p.stress))
        last = end
    if last < duration:
        phones.append(Phone(SILENCE, last, duration))
    return Alignment(phones, cost)
