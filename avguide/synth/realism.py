"""Token-to-token variability of the synthetic speakers ("realism"), off by default.

Real speakers never articulate a phone the same way twice. With ``realism.enabled=true`` every
phone token (each non-silent phone of an utterance) gets, on top of the subject's style:

* **a visual lead** over its audio segment: its visual segment (the dominance interval, and the
  contact window of /p b m f v/) is moved ``lead`` earlier, drawn per token from
  ``Normal(visual_lead_ms, visual_lead_sd_ms)``. Defaults from Schwartz & Savariaux (2014),
  "No, there is no 150 ms lead of visual speech on auditory speech, but a range of audiovisual
  asynchronies varying from small audio lead to large audio lag", PLoS Comput Biol 10(7):
  e1003743: in chained plosive-vowel syllables (pa ta ka ba da ga ma na) the asynchrony varies
  "between 20 ms audio lead and 70 ms audio lag", i.e. a visual lead of -20..+70 ms. We take
  the middle, 25 ms, as the mean and 22.5 ms as the SD so that mean +- 2 SD spans that range
  (the mapping of a range to a normal distribution is ours). The ~150 ms lead that
  Chandrasekaran et al. (2009, PLoS Comput Biol 5(7): e1000436) measured holds, per the same
  paper, only for isolated syllables and utterance onsets ("preparatory gestures"); the
  dominance model's anticipation (:mod:`avguide.synth.coarticulation`) already starts gestures
  before their segments, so it is not added as a shift.
* **undershoot** of vowel targets with duration D (s), after Lindblom (1963), "Spectrographic
  study of vowel reduction", JASA 35: 1773-1781: the shortfall from the target decays
  exponentially with vowel duration, so short (fast, unstressed) vowels reach less of it.
  Every target of a vowel token is scaled by ``reach(D) = 1 - undershoot * exp(-D / tau)``.
  Stress acts through duration, as in Lindblom's model (espeak makes unstressed vowels
  shorter). The constants ``undershoot = 0.5`` and ``tau = 80 ms`` are our choices, not
  Lindblom's fitted values: they make a vowel of citation-form length reach > 98 % of its
  target (Hillenbrand, Clark & Houde 2000, JASA 108: 3013-3022: mean /hVd/ vowel duration
  272 ms, SD 64 ms) and a 50 ms vowel about 73 %. Consonants keep their targets (their
  lip contacts are constraints, see coarticulation).
* **target variability**: every token's targets (all parameters but the closure fraction, so
  closed lips still close) are scaled by ``1 + target_sd * z``, z standard normal clipped to
  +-3. ``target_sd = 0.08`` is a modelling choice: we found no per-token percentage to cite
  (Schötz, Frid & Löfqvist 2013, JASA 133: 4210-4217, measure lip-aperture amplitude
  variability across repetitions, but as a functional-data index, not a percentage).

The draws come from the utterance's generator after the upper-face events, two standard-normal
arrays of one value per phone whatever the settings, so the output depends only on the config
and the seed (not on fps or worker count), and realism on/off share the blinks and the jitter.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from avguide.speech.espeak import SILENCE, Phone
from avguide.speech.visemes import phoneme_to_viseme
from avguide.synth.coarticulation import VOWELS


@dataclass
class RealismConfig:
    """Token-to-token variability of ``avguide synth`` (``realism.<field>=...``).

    Attributes:
        enabled: the one switch; False (default) leaves the benchmark byte-identical to the
            shipped one.
        visual_lead_ms: mean lead (ms) of a token's lips over its audio (negative = lag).
        visual_lead_sd_ms: SD (ms) of the lead across tokens.
        undershoot: fraction of a vowel's target missed at zero duration (0 = none).
        undershoot_tau_ms: duration constant (ms) of the exponential approach to the target.
        target_sd: relative SD of a token's target scale.
    """

    enabled: bool = False
    visual_lead_ms: float = 25.0
    visual_lead_sd_ms: float = 22.5
    undershoot: float = 0.5
    undershoot_tau_ms: float = 80.0
    target_sd: float = 0.08

    def check(self) -> list[str]:
        """Return error strings for out-of-range fields (empty when valid)."""
        ranges = {"visual_lead_ms": (-200.0, 200.0), "visual_lead_sd_ms": (0.0, 100.0),
                  "undershoot": (0.0, 0.9), "undershoot_tau_ms": (1.0, 1000.0),
                  "target_sd": (0.0, 0.3)}
        return [f"{name}: must be in [{lo}, {hi}], got {getattr(self, name)}"
                for name, (lo, hi) in ranges.items() if not lo <= getattr(self, name) <= hi]


@dataclass(frozen=True)
class Tokens:
    """How each phone token of one utterance is realised.

    Attributes:
        shift_s: (P,) float64 time shift (s) of each phone's visual segment (negative = earlier
            than the audio; 0 for silence).
        gain: (P,) float64 scale of each phone's targets (1 for silence).
    """

    shift_s: np.ndarray
    gain: np.ndarray


def _is_vowel(phone: Phone) -> bool:
    return (phone.ipa != SILENCE and phone.ipa not in ("w", "j")
            and phoneme_to_viseme(phone.ipa) in VOWELS)


def undershoot_reach(duration_s: np.ndarray | float, undershoot: float, tau_s: float) -> np.ndarray:
    """Fraction of its target a vowel of the given duration reaches (Lindblom 1963 form).

    Args:
        duration_s: vowel duration(s) in seconds (>= 0).
        undershoot: shortfall at zero duration, in [0, 1).
        tau_s: duration constant in seconds (> 0).
    Returns:
        ``1 - undershoot * exp(-duration_s / tau_s)``, same shape as ``duration_s``.
    """
    return 1.0 - undershoot * np.exp(-np.asarray(duration_s, np.float64) / tau_s)


def sample_tokens(phones: list[Phone], cfg: RealismConfig, rng: np.random.Generator) -> Tokens:
    """Draw the realisation of every phone token of an utterance.

    Args:
        phones: timed phones (silence ``"_"`` allowed).
        cfg: realism settings (``cfg.enabled`` is not consulted here).
        rng: the utterance's generator; exactly ``2 * len(phones)`` standard normals are drawn.
    Returns:
        :class:`Tokens` with shift ``-lead`` and gain ``reach(duration) * (1 + sd * z)`` (reach
        1 for non-vowels), silence unchanged.
    Raises:
        BadInputError: a phone has no viseme class.
    """
    z_lead = rng.standard_normal(len(phones))  # (P,)
    z_gain = np.clip(rng.standard_normal(len(phones)), -3.0, 3.0)  # (P,)
    speech = np.array([p.ipa != SILENCE for p in phones])
    vowel = np.array([_is_vowel(p) for p in phones])
    lead_s = (cfg.visual_lead_ms + cfg.visual_lead_sd_ms * z_lead) / 1000.0
    duration = np.array([p.end - p.start for p in phones])
    reach = np.where(vowel, undershoot_reach(duration, cfg.undershoot, cfg.undershoot_tau_ms / 1000.0), 1.0)
    gain = reach * (1.0 + cfg.target_sd * z_gain)
    return Tokens(shift_s=np.where(speech, -lead_s, 0.0), gain=np.where(speech, gain, 1.0))
