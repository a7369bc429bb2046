"""Speech motion: timed phones -> (T, 52) ARKit blendshape weights of a speaking subject.

Mouth: coarticulated articulatory parameters (:mod:`avguide.synth.coarticulation`) mapped to the
Face Units (jawOpen, mouthClose = closure x jawOpen so the lips meet whatever the jaw does,
mouthPress, mouthRollLower, mouthUpperUp, mouthLowerDown, mouthStretch, mouthSmile,
mouthFunnel, mouthPucker, tongueOut), scaled by the subject's :class:`SpeakingStyle`. Upper
face: blinks, brow raises and gaze drift (:mod:`avguide.synth.upper_face`). The model is a
function of continuous time sampled at ``k / fps``, so 25 and 30 fps renditions agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from avguide.assets.arkit import ARKIT_INDEX
from avguide.speech.espeak import Phone
from avguide.synth.coarticulation import PARAMS, articulate
from avguide.synth.realism import RealismConfig, sample_tokens
from avguide.synth.upper_face import sample_events, upper_face_weights


@dataclass(frozen=True)
class SpeakingStyle:
    """How one subject speaks (drawn once per subject by :func:`sample_style`).

    Attributes:
        amplitude: articulation strength, scales mouth opening and lip shapes (0.75..1.25).
        asymmetry: left-right imbalance of the lip corners, -0.2..0.2 (> 0: the subject's left
            side moves more).
        anticipation_s: how early (Gaussian width, s) lips round before a rounded vowel.
        jaw_scale: extra scale of the jaw opening only (0.8..1.2).
        blink_rate: blinks per second.
        brow_rate: brow raises per second.
        gaze_amplitude: peak eyeLook weight of the gaze drift.
        variation: relative per-utterance jitter of amplitude and jaw (e.g. 0.05 = 5 %).
    """

    amplitude: float = 1.0
    asymmetry: float = 0.0
    anticipation_s: float = 0.16
    jaw_scale: float = 1.0
    blink_rate: float = 0.3
    brow_rate: float = 0.12
    gaze_amplitude: float = 0.12
    variation: float = 0.05

    def check(self) -> list[str]:
        """Return error strings for out-of-range fields (empty when valid)."""
        errors = []
        ranges = {"amplitude": (0.3, 2.0), "asymmetry": (-0.5, 0.5),
                  "anticipation_s": (0.02, 0.5), "jaw_scale": (0.3, 2.0),
                  "blink_rate": (0.0, 2.0), "brow_rate": (0.0, 2.0),
                  "gaze_amplitude": (0.0, 0.5), "variation": (0.0, 0.3)}
        for name, (lo, hi) in ranges.items():
            value = getattr(self, name)
            if not lo <= value <= hi:
                errors.append(f"SpeakingStyle.{name}={value} must be in [{lo}, {hi}]")
        return errors


def sample_style(rng: np.random.Generator) -> SpeakingStyle:
    """Draw a subject's speaking style.

    Args:
        rng: generator.

    Returns:
        a SpeakingStyle with amplitude 0.8..1.2, asymmetry -0.15..0.15, anticipation
        0.10..0.22 s, jaw scale 0.85..1.15, 0.2..0.5 blinks/s, 0.05..0.2 brow raises/s.
    """
    return SpeakingStyle(
        amplitude=float(rng.uniform(0.8, 1.2)),
        asymmetry=float(rng.uniform(-0.15, 0.15)),
        anticipation_s=float(rng.uniform(0.10, 0.22)),
        jaw_scale=float(rng.uniform(0.85, 1.15)),
        blink_rate=float(rng.uniform(0.2, 0.5)),
        brow_rate=float(rng.uniform(0.05, 0.2)),
        gaze_amplitude=float(rng.uniform(0.05, 0.2)),
        variation=0.05,
    )


_SIDED = {  # articulatory parameter -> ARKit base name split into Left/Right
    "press": "mouthPress", "upper_up": "mouthUpperUp", "lower_down": "mouthLowerDown",
    "stretch": "mouthStretch", "smile": "mouthSmile",
}
_CENTRAL = {"roll_lower": "mouthRollLower", "funnel": "mouthFunnel", "pucker": "mouthPucker",
            "tongue": "tongueOut"}


def mouth_weights(params: np.ndarray, amplitude: float = 1.0, jaw_scale: float = 1.0,
                  asymmetry: float = 0.0) -> np.ndarray:
    """Map articulatory parameters to ARKit mouth weights.

    Args:
        params: (N, len(PARAMS)) parameters in [0, 1] (see coarticulation.PARAMS).
        amplitude: scales the lip shapes and the jaw (not the closure fraction, so closed lips
            stay closed).
        jaw_scale: extra scale of the jaw opening.
        asymmetry: left/right corner imbalance; Left units x (1 + a), Right units x (1 - a).

    Returns:
        (N, 52) float64 weights in [0, 1] (upper-face columns 0); mouthClose <= jawOpen.
    """
    p = {name: params[:, i] for i, name in enumerate(PARAMS)}
    w = np.zeros((params.shape[0], 52))
    jaw = np.clip(p["jaw"] * amplitude * jaw_scale, 0.0, 1.0)
    w[:, ARKIT_INDEX["jawOpen"]] = jaw
    w[:, ARKIT_INDEX["mouthClose"]] = p["close"] * jaw
    for name, base in _SIDED.items():
        w[:, ARKIT_INDEX[base + "Left"]] = p[name] * amplitude * (1.0 + asymmetry)
        w[:, ARKIT_INDEX[base + "Right"]] = p[name] * amplitude * (1.0 - asymmetry)
    for name, unit in _CENTRAL.items():
        w[:, ARKIT_INDEX[unit]] = p[name] * (amplitude if name != "roll_lower" else 1.0)
    # An uneven jaw follows the stronger side a little.
    w[:, ARKIT_INDEX["jawLeft" if asymmetry > 0 else "jawRight"]] = 0.1 * abs(asymmetry) * jaw
    return np.clip(w, 0.0, 1.0)


def _check_phones(phones: list[Phone]) -> None:
    if not phones:
        raise ValueError("phones must be a non-empty list of Phone")
    for a, b in zip(phones, phones[1:]):
        if b.start < a.start or a.end < a.start:
            raise ValueError(f"phones must be in time order with end >= start; got {a} then {b}")


def speech_motion(phones: list[Phone], n_frames: int, fps: float, style: SpeakingStyle,
                  rng: np.random.Generator, realism: RealismConfig | None = None) -> np.ndarray:
    """ARKit blendshape weights of a subject saying a timed phone sequence.

    Frame k shows time ``k / fps``. The random draws (per-utterance jitter, blinks, brows,
    gaze, then the per-token realisations when realism is enabled) depend on the phones, never
    on ``n_frames`` or ``fps``: equal generator states give the same continuous motion at any
    frame rate.

    Args:
        phones: timed phones (e.g. ``speak(...).phones``), silence ``"_"`` included.
        n_frames: T, number of frames (>= 1).
        fps: frame rate (> 0).
        style: the subject's speaking style.
        rng: generator for this utterance.
        realism: token-to-token variability (:mod:`avguide.synth.realism`); None or disabled:
            every token of a phone articulated alike, no extra draws (the default benchmark).

    Returns:
        (T, 52) float32 weights in [0, 1], columns in ``ARKIT_NAMES`` order.

    Raises:
        ValueError: empty/unordered phones, a phone with no viseme class, n_frames < 1,
            fps <= 0, an invalid style or invalid realism settings.
    """
    _check_phones(phones)
    if int(n_frames) < 1 or not fps > 0:
        raise ValueError(f"n_frames must be >= 1 and fps > 0, got {n_frames}, {fps}")
    errors = style.check() + (["realism." + e for e in realism.check()] if realism else [])
    if errors:
        raise ValueError("; ".join(errors))
    duration = phones[-1].end
    jitter = 1.0 + style.variation * rng.uniform(-1.0, 1.0, 2)
    events = sample_events(rng, duration, style.blink_rate, style.brow_rate,
                           style.gaze_amplitude)
    tokens = sample_tokens(phones, realism, rng) if realism is not None and realism.enabled else None
    t = np.arange(int(n_frames)) / float(fps)  # (T,)
    params = articulate(phones, t, anticipation_s=style.anticipation_s,  # (T, len(PARAMS))
                        shift_s=None if tokens is None else tokens.shift_s,
                        gain=None if tokens is None else tokens.gain)
    mouth = mouth_weights(params, style.amplitude * jitter[0], style.jaw_scale * jitter[1],
                          style.asymmetry)
    upper = upper_face_weights(events, t)
    return np.clip(mouth + upper, 0.0, 1.0).astype(np.float32)  # (T, 52)
