"""Per-subject speaker voices for the synthetic benchmark."""

from __future__ import annotations

import numpy as np

from avguide.errors import BadInputError
from avguide.speech.espeak import Voice

VARIANTS: tuple[str, ...] = (
    "m1", "f1", "m2", "f2", "m3", "f3", "m4", "f4", "m5", "f5", "m6", "m7", "m8",
)
"""espeak-ng voice variants (male ``m*``, female ``f*``), assigned to subjects in this order."""


def sample_voice(rng: np.random.Generator, index: int, language: str = "en-us") -> Voice:
    """The voice of subject ``index``: its own variant, plus a drawn rate, pitch and range.

    Subjects 0..12 get 13 different variants; beyond that variants repeat and the subject is
    told apart by a base pitch shifted by 12 per cycle (wrapping in 20..80).

    Args:
        rng: generator for the continuous settings (rate 150..200 wpm, pitch, range 30..70).
        index: subject number >= 0.
        language: espeak language name.

    Returns:
        the subject's Voice.

    Raises:
        BadInputError: negative index.
    """
    if index < 0:
        raise BadInputError(f"subject index must be >= 0, got {index}")
    cycle, slot = divmod(int(index), len(VARIANTS))
    pitch = int(rng.integers(35, 66))
    pitch = 20 + (pitch - 20 + 12 * cycle) % 61
    return Voice(
        variant=VARIANTS[slot],
        rate_wpm=int(rng.integers(150, 201)),
        pitch=pitch,
        pitch_range=int(rng.integers(30, 71)),
        language=language,
    )
