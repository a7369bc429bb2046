"""Coarticulated mouth motion: timed phones -> articulatory parameters over continuous time.

Model (Cohen & Massaro style): every phone is a segment with a target value for each
articulatory parameter and a dominance that is flat inside the segment and decays as a
Gaussian outside it, faster after it (carry-over) than before it (anticipation). A parameter at
time t is the dominance-weighted average of the targets. Parameters are grouped (jaw, lips,
rounding, tongue) and each viseme class has its own dominance per group: vowels dominate the
jaw, consonants barely do, so the jaw follows vowel openness; most consonants are transparent to
rounding, so rounding spreads to the phones before a rounded vowel (with a longer anticipation).

Two hard constraints follow: lips closed at the core of every bilabial (closure = 1 and the
lip-opening parameters suppressed) and lower lip tucked to the upper teeth at every
labiodental. They are imposed with smooth (raised-cosine) windows, 1 over a core of at least
``MIN_CORE_S`` around the segment centre so that every video frame rate sees the contact.

Everything is a function of continuous time; :func:`articulate` samples it at given times. It
optionally takes a per-token realisation (each phone's visual segment shifted against its audio,
its targets scaled), drawn by :mod:`avguide.synth.realism`; without one, every token of a phone
is articulated the same way.
"""

from __future__ import annotations

import numpy as np

from avguide.speech.espeak import SILENCE, Phone
from avguide.speech.visemes import phoneme_to_viseme

PARAMS: tuple[str, ...] = (
    "jaw",         # jaw opening (jawOpen)
    "close",       # fraction of the jaw opening cancelled by the lips (mouthClose = close * jaw)
    "press",       # lips pressed together (mouthPress*)
    "roll_lower",  # lower lip rolled in, against the upper teeth (mouthRollLower)
    "upper_up",    # upper lip raised, upper teeth visible (mouthUpperUp*)
    "lower_down",  # lower lip lowered, lower teeth visible (mouthLowerDown*)
    "stretch",     # corners pulled sideways (mouthStretch*)
    "smile",       # corners up and out (mouthSmile*)
    "funnel",      # open rounding, O shape (mouthFunnel)
    "pucker",      # closed rounding, protrusion (mouthPucker)
    "tongue",      # tongue tip forward between the teeth (tongueOut)
)
P = {name: i for i, name in enumerate(PARAMS)}
GROUP_OF_PARAM = ("jaw", "lips", "lips", "lips", "lips", "lips", "lips", "lips", "round",
                  "round", "tongue")
GROUPS = ("jaw", "lips", "round", "tongue")

# Target of each parameter per viseme class (absent = 0) and silence ("_" = rest).
TARGETS: dict[str, dict[str, float]] = {
    "_": {},
    "p": {"jaw": 0.10, "close": 1.0, "press": 0.45},
    "f": {"jaw": 0.03, "close": 0.9, "roll_lower": 0.85, "upper_up": 0.25},
    "d": {"jaw": 0.18, "upper_up": 0.10, "lower_down": 0.20, "tongue": 0.50},
    "t": {"jaw": 0.10, "lower_down": 0.10, "stretch": 0.10},
    "s": {"jaw": 0.04, "upper_up": 0.35, "lower_down": 0.30, "stretch": 0.30},
    "c": {"jaw": 0.06, "upper_up": 0.30, "lower_down": 0.20, "pucker": 0.45, "funnel": 0.20},
    "k": {"jaw": 0.14, "lower_down": 0.10},
    "r": {"jaw": 0.10, "upper_up": 0.15, "pucker": 0.35},
    "w": {"jaw": 0.10, "pucker": 0.90, "funnel": 0.45},
    "i": {"jaw": 0.10, "stretch": 0.55, "smile": 0.20, "lower_down": 0.10},
    "a": {"jaw": 0.50, "lower_down": 0.35, "stretch": 0.10},
    "e": {"jaw": 0.25, "stretch": 0.40, "smile": 0.15, "lower_down": 0.20},
    "h": {"jaw": 0.32, "lower_down": 0.30, "stretch": 0.15},
    "o": {"jaw": 0.22, "funnel": 0.75, "pucker": 0.40},
    "q": {"jaw": 0.36, "funnel": 0.65, "pucker": 0.20, "lower_down": 0.10},
    "x": {"jaw": 0.16, "lower_down": 0.05},
}
# Per-phoneme refinements inside a class (the consonant /w/ is more closed than /u/).
PHONE_TARGETS: dict[str, dict[str, float]] = {
    "w": {"jaw": 0.05, "pucker": 0.85, "funnel": 0.15},
    "ʊ": {"jaw": 0.14, "pucker": 0.55, "funnel": 0.35},
    "j": {"jaw": 0.05, "stretch": 0.45, "smile": 0.15},
    "h": {"jaw": 0.20, "lower_down": 0.10},
}
VOWELS = frozenset("waeihoqx")  # classes whose segments are vowels (w also holds u ʊ)
# Dominance (alpha) per group: consonants are transparent to the jaw and to rounding.
_VOWEL_DOMINANCE = {"jaw": 1.0, "lips": 0.8, "round": 0.6, "tongue": 0.3}
_CONSONANT_DOMINANCE = {"jaw": 0.12, "lips": 0.5, "round": 0.08, "tongue": 1.0}
_SILENCE_DOMINANCE = {"jaw": 0.8, "lips": 0.8, "round": 0.8, "tongue": 0.8}
_CLASS_DOMINANCE = {  # overrides of the defaults above
    "p": {"lips": 1.0, "round": 0.05},
    "f": {"lips": 1.0, "jaw": 0.6},
    "d": {"jaw": 0.5},
    "s": {"jaw": 0.5},
    "c": {"round": 0.6, "jaw": 0.4},
    "r": {"round": 0.5},
    "w": {"round": 1.0},
    "o": {"round": 1.0},
    "q": {"round": 1.0},
    "i": {"round": 1.0},  # spread and open vowels resist rounding from their neighbours
    "e": {"round": 1.0},
    "a": {"round": 0.9},
    "h": {"round": 0.8},
    "x": {"round": 0.3},  # schwa takes the lip shape of its context
}
CARRY_OVER_S = 0.06
"""Gaussian width (s) of a segment's dominance after it ends."""
ANTICIPATION_S = {"jaw": 0.07, "lips": 0.06, "round": 0.16, "tongue": 0.05}
"""Default Gaussian width (s) of dominance before a segment starts, per group."""
MIN_CORE_S = 0.05
"""Shortest contact core of a bilabial / labiodental constraint (covers a frame at 20 fps)."""
RAMP_S = 0.09
"""Raised-cosine ramp (s) into and out of a constraint core."""
_OPENING = ("upper_up", "lower_down", "funnel", "smile", "tongue")
"""Parameters that part the lips; suppressed inside a bilabial closure."""


def _segment_class(phone: Phone) -> str:
    return SILENCE if phone.ipa == SILENCE else phoneme_to_viseme(phone.ipa)


def _segment_tables(phones: list[Phone]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Targets (P, 11) and dominance alphas (P, 4) of each phone, and its class code."""
    classes = [_segment_class(p) for p in phones]
    targets = np.zeros((len(phones), len(PARAMS)))
    alphas = np.zeros((len(phones), len(GROUPS)))
    for i, (phone, code) in enumerate(zip(phones, classes)):
        table = dict(TARGETS[code])
        table.update(PHONE_TARGETS.get(phone.ipa.replace("ː", ""), {}))
        for name, value in table.items():
            targets[i, P[name]] = value
        if code == SILENCE:
            base = _SILENCE_DOMINANCE
        else:
            base = dict(_VOWEL_DOMINANCE if code in VOWELS and phone.ipa != "w"
                        else _CONSONANT_DOMINANCE)
            base.update(_CLASS_DOMINANCE.get(code, {}))
            if phone.ipa in ("w", "j"):  # glides: consonants with the vowel's lip shape
                base["round" if phone.ipa == "w" else "lips"] = 1.0
        alphas[i] = [base[g] for g in GROUPS]
        if phone.stress == 1 and code in VOWELS:
            targets[i, P["jaw"]] *= 1.15  # stressed vowels open more
    return targets, alphas, classes


def _dominance(t: np.ndarray, starts: np.ndarray, ends: np.ndarray, alpha: np.ndarray,
               before_s: float, after_s: float) -> np.ndarray:
    """Dominance (N, P) of P segments at N times: alpha inside, Gaussian decay outside."""
    lead = np.maximum(starts[None, :] - t[:, None], 0.0) / before_s  # (N, P)
    lag = np.maximum(t[:, None] - ends[None, :], 0.0) / after_s  # (N, P)
    return alpha[None, :] * np.exp(-(lead ** 2) - (lag ** 2)) + 1e-12


def _per_phone(values: np.ndarray, n: int, name: str) -> np.ndarray:
    """``values`` as a finite (n,) float64 array, else ValueError naming ``name``."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.shape != (n,) or not np.isfinite(arr).all():
        raise ValueError(f"{name}: expected {n} finite values (one per phone), got shape {arr.shape}")
    return arr


def _window(t: np.ndarray, centre: float, core_half: float, ramp: float) -> np.ndarray:
    """Raised-cosine window: 1 within core_half of centre, falling to 0 over ``ramp`` (N,)."""
    d = np.maximum(np.abs(t - centre) - core_half, 0.0)
    return np.where(d < ramp, 0.5 * (1.0 + np.cos(np.pi * np.minimum(d / ramp, 1.0))), 0.0)


def _constraint_windows(t: np.ndarray, starts: np.ndarray, ends: np.ndarray, classes: list[str],
                        code: str, ramp_s: float) -> tuple[np.ndarray, list[float]]:
    """Union of the contact windows (N,) of the segments of class ``code``, and their centres.

    Windows combine as ``1 - prod(1 - w)`` (smooth where two overlap, unlike a max) and the
    union is exactly 1 inside every core.
    """
    outside = np.ones_like(t)
    centres = []
    for start, end, cls in zip(starts.tolist(), ends.tolist(), classes):
        if cls != code:
            continue
        centre = 0.5 * (start + end)
        core_half = max(0.25 * (end - start), 0.5 * MIN_CORE_S)
        outside *= 1.0 - _window(t, centre, core_half, ramp_s)
        centres.append(centre)
    return 1.0 - outside, centres


def articulate(phones: list[Phone], t: np.ndarray, anticipation_s: float = ANTICIPATION_S["round"],
               ramp_s: float = RAMP_S, shift_s: np.ndarray | None = None,
               gain: np.ndarray | None = None) -> np.ndarray:
    """Articulatory parameters of a phone sequence at the given times.

    Args:
        phones: timed phones (silence ``"_"`` allowed), in time order.
        t: (N,) float times in seconds.
        anticipation_s: Gaussian width (s) of rounding anticipation (how early lips round
            before a rounded vowel); the other groups use :data:`ANTICIPATION_S`.
        ramp_s: ramp length (s) into and out of the bilabial/labiodental contact.
        shift_s: optional (P,) time shift (s) of each phone's visual segment (its dominance
            interval and contact window; negative = earlier than its audio), see
            :mod:`avguide.synth.realism`. None: segments at their audio times.
        gain: optional (P,) scale of each phone's targets, every parameter but ``close`` (a
            contact stays a contact). None: targets as tabulated.

    Returns:
        (N, len(PARAMS)) float64 parameters in [0, 1]; at bilabial cores ``close`` is exactly 1
        and the lip-opening parameters 0; at labiodental cores ``roll_lower`` and ``close``
        equal the labiodental targets.

    Raises:
        ValueError: a phone has no viseme class, or ``shift_s`` / ``gain`` is not (P,) finite.
    """
    t = np.asarray(t, dtype=np.float64)
    if not phones:
        return np.zeros((t.shape[0], len(PARAMS)))
    targets, alphas, classes = _segment_tables(phones)
    starts = np.array([p.start for p in phones])
    ends = np.array([p.end for p in phones])
    if shift_s is not None:
        shift_s = _per_phone(shift_s, len(phones), "shift_s")
        starts, ends = starts + shift_s, ends + shift_s
    if gain is not None:
        scaled = [i for i, name in enumerate(PARAMS) if name != "close"]
        targets[:, scaled] *= _per_phone(gain, len(phones), "gain")[:, None]
    out = np.zeros((t.shape[0], len(PARAMS)))
    for g, group in enumerate(GROUPS):
        before = anticipation_s if group == "round" else ANTICIPATION_S[group]
        dom = _dominance(t, starts, ends, alphas[:, g], before, CARRY_OVER_S)  # (N, P)
        cols = [i for i, name in enumerate(GROUP_OF_PARAM) if name == group]
        out[:, cols] = (dom @ targets[:, cols]) / dom.sum(axis=1, keepdims=True)

    # Labiodental contact: pull roll_lower, close, jaw and upper_up to the /f v/ targets.
    lab, _ = _constraint_windows(t, starts, ends, classes, "f", ramp_s)
    for name in ("roll_lower", "close", "jaw", "upper_up"):
        goal = TARGETS["f"].get(name, 0.0)
        out[:, P[name]] += lab * (goal - out[:, P[name]])
    for name in ("lower_down", "funnel", "smile", "tongue"):
        out[:, P[name]] *= 1.0 - lab
    # Bilabial closure: close -> 1, press -> target, lip-opening parameters -> 0; open
    # rounding (funnel) turns into closed rounding (pucker) so the lips stay protruded.
    seal, _ = _constraint_windows(t, starts, ends, classes, "p", ramp_s)
    out[:, P["pucker"]] += seal * 0.5 * out[:, P["funnel"]] * (1.0 - out[:, P["pucker"]])
    out[:, P["close"]] += seal * (1.0 - out[:, P["close"]])
    out[:, P["press"]] += seal * (TARGETS["p"]["press"] - out[:, P["press"]])
    for name in _OPENING + ("roll_lower",):
        out[:, P[name]] *= 1.0 - seal
    return np.clip(out, 0.0, 1.0)
