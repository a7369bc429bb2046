"""Upper-face motion not determined by the phonemes: blinks, brow raises, small gaze shifts.

Events are drawn in continuous time from the generator (their number depends only on the
duration), then evaluated at the frame times, so two frame rates of one utterance agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from avguide.assets.arkit import ARKIT_INDEX


@dataclass(frozen=True)
class UpperFaceEvents:
    """Random upper-face events of one utterance (times in seconds).

    Attributes:
        blinks: (B, 3) start, duration, depth in [0.85, 1].
        brows: (R, 4) start, duration, inner amplitude, outer amplitude.
        gaze: (G, 4) frequency (Hz), phase, horizontal and vertical amplitude of slow sinusoids.
    """

    blinks: np.ndarray
    brows: np.ndarray
    gaze: np.ndarray


def _poisson_times(rng: np.random.Generator, rate: float, duration: float,
                   refractory: float) -> np.ndarray:
    """Event times of a Poisson process with a dead time after each event, within [0, dur)."""
    if rate <= 0:
        return np.zeros(0)
    times = []
    t = rng.exponential(1.0 / rate) * 0.5  # a first event may come early
    while t < duration:
        times.append(t)
        t += refractory + rng.exponential(1.0 / rate)
    return np.array(times)


def sample_events(rng: np.random.Generator, duration: float, blink_rate: float,
                  brow_rate: float, gaze_amplitude: float) -> UpperFaceEvents:
    """Draw the upper-face events of an utterance.

    Args:
        rng: generator (consumed in an order independent of any frame rate).
        duration: utterance length in seconds.
        blink_rate: blinks per second (0.2..0.5 is natural).
        brow_rate: brow raises per second.
        gaze_amplitude: peak eyeLook weight of the slow gaze drift.

    Returns:
        the events.
    """
    starts = _poisson_times(rng, blink_rate, duration, refractory=0.6)
    blinks = np.stack([starts, rng.uniform(0.10, 0.30, starts.size),
                       rng.uniform(0.85, 1.0, starts.size)], axis=1).reshape(-1, 3)
    starts = _poisson_times(rng, brow_rate, duration, refractory=1.0)
    inner = rng.uniform(0.15, 0.5, starts.size)
    brows = np.stack([starts, rng.uniform(0.4, 1.0, starts.size), inner,
                      inner * rng.uniform(0.5, 1.2, starts.size)], axis=1).reshape(-1, 4)
    gaze = np.stack([rng.uniform(0.05, 0.4, 3), rng.uniform(0, 2 * np.pi, 3),
                     gaze_amplitude * rng.uniform(0.3, 1.0, 3) / 3,
                     gaze_amplitude * rng.uniform(0.2, 0.6, 3) / 3], axis=1)
    return UpperFaceEvents(blinks=blinks, brows=brows, gaze=gaze)


def _bump(t: np.ndarray, start: float, duration: float, rise_fraction: float) -> np.ndarray:
    """Smooth 0 -> 1 -> 0 pulse over [start, start + duration] peaking after ``rise_fraction``."""
    rise = duration * rise_fraction
    fall = duration - rise
    u = np.where(t < start + rise, (t - start) / rise, 1.0 - (t - start - rise) / fall)
    u = np.clip(u, 0.0, 1.0)
    return u * u * (3.0 - 2.0 * u)  # smoothstep, C1


def upper_face_weights(events: UpperFaceEvents, t: np.ndarray) -> np.ndarray:
    """ARKit weights of the upper face at the given times.

    Args:
        events: from :func:`sample_events`.
        t: (N,) times in seconds.

    Returns:
        (N, 52) float64 in [0, 1]; only eye, brow and gaze columns are non-zero.
    """
    t = np.asarray(t, dtype=np.float64)
    w = np.zeros((t.shape[0], 52))
    blink = np.zeros_like(t)
    for start, dur, depth in events.blinks:
        blink = np.maximum(blink, depth * _bump(t, start, dur, 0.4))  # closes faster than opens
    w[:, ARKIT_INDEX["eyeBlinkLeft"]] = blink
    w[:, ARKIT_INDEX["eyeBlinkRight"]] = blink
    inner = np.zeros_like(t)
    outer = np.zeros_like(t)
    for start, dur, a_in, a_out in events.brows:
        pulse = _bump(t, start, dur, 0.3)
        inner = np.maximum(inner, a_in * pulse)
        outer = np.maximum(outer, a_out * pulse)
    w[:, ARKIT_INDEX["browInnerUp"]] = inner
    w[:, ARKIT_INDEX["browOuterUpLeft"]] = outer
    w[:, ARKIT_INDEX["browOuterUpRight"]] = outer
    phase = 2 * np.pi * events.gaze[:, 0][None, :] * t[:, None] + events.gaze[:, 1][None, :]
    horizontal = np.sin(phase) @ events.gaze[:, 2]  # > 0: towards the subject's left
    vertical = np.sin(1.7 * phase) @ events.gaze[:, 3] - 0.3 * blink * events.gaze[:, 3].sum()
    left, right = np.maximum(horizontal, 0), np.maximum(-horizontal, 0)
    w[:, ARKIT_INDEX["eyeLookOutLeft"]] = left
    w[:, ARKIT_INDEX["eyeLookInRight"]] = left
    w[:, ARKIT_INDEX["eyeLookInLeft"]] = right
    w[:, ARKIT_INDEX["eyeLookOutRight"]] = right
    for side in ("Left", "Right"):
        w[:, ARKIT_INDEX["eyeLookUp" + side]] = np.maximum(vertical, 0)
        w[:, ARKIT_INDEX["eyeLookDown" + side]] = np.maximum(-vertical, 0)
    return np.clip(w, 0.0, 1.0)
