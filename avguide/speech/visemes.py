"""Phoneme -> viseme classes (what the lips show), used by the motion model and the VER metric.

The 16 classes of docs/design.md section 4, each written as one lower-case ASCII letter so that a
viseme string survives the letters-and-spaces normalisation of CER:

    code  class          IPA (espeak-ng en-us)
    p     bilabial       p b m
    f     labiodental    f v
    d     dental         θ ð
    t     alveolar       t d n l ɾ (and syllabic n̩ l̩ əl, voiceless ɬ)
    s     sibilant       s z
    c     postalveolar   ʃ ʒ tʃ dʒ
    k     velar/glottal  k g ɡ ŋ h ʔ x
    r     r              ɹ r
    w     rounded        w u uː ʊ (and ʊɹ)
    i     spread         j i iː ɪ (and ɪɹ)
    a     open           æ aɪ aʊ ɑ ɑː ɐ a (and aɪɚ aɪə aʊɚ ɑːɹ)
    e     eɪ             eɪ e
    h     mid            ɛ ɝ ɜ ɜː ʌ (and ɛɹ)
    o     oʊ             oʊ o oː
    q     O / OI         ɔ ɔː ɔɪ ɒ (and ɔːɹ ɔɹ)
    x     schwa          ə ɚ ᵻ

Compound r-coloured vowels and syllabic consonants that espeak emits as one phoneme take the
class of the articulation the lips show longest (the nucleus vowel; the consonant for syllabic
l and n). Stress marks (ˈ ˌ) are ignored; a length mark (ː) never changes the class, nor does
the doubling espeak occasionally writes for a lengthened vowel in spelled-out nonsense
(``"ææ"``).
"""

from __future__ import annotations

import functools

from avguide.errors import BadInputError

VISEME_CLASSES: tuple[str, ...] = (
    "p", "f", "d", "t", "s", "c", "k", "r", "w", "i", "a", "e", "h", "o", "q", "x",
)
"""Single-character codes of the viseme classes, in docs/design.md order."""

VISEME_NAMES: dict[str, str] = {
    "p": "bilabial", "f": "labiodental", "d": "dental", "t": "alveolar", "s": "sibilant",
    "c": "postalveolar", "k": "velar/glottal", "r": "r", "w": "rounded", "i": "spread",
    "a": "open", "e": "eI", "h": "mid", "o": "oU", "q": "O/OI", "x": "schwa",
}
"""Human-readable name of each class code."""

VISEME_MEMBERS: dict[str, tuple[str, ...]] = {
    "p": ("p", "b", "m"),
    "f": ("f", "v"),
    "d": ("θ", "ð"),
    "t": ("t", "d", "n", "l", "ɾ", "n̩", "l̩", "əl", "ɬ"),
    "s": ("s", "z"),
    "c": ("ʃ", "ʒ", "tʃ", "dʒ"),
    "k": ("k", "g", "ɡ", "ŋ", "h", "ʔ", "x"),
    "r": ("ɹ", "r"),
    "w": ("w", "u", "ʊ", "ʊɹ"),
    "i": ("j", "i", "ɪ", "ɪɹ", "iə"),
    "a": ("æ", "aɪ", "aʊ", "ɑ", "ɐ", "a", "aɪɚ", "aɪə", "aʊɚ", "aʊə", "ɑɹ"),
    "e": ("eɪ", "e"),
    "h": ("ɛ", "ɝ", "ɜ", "ʌ", "ɛɹ", "ɛə"),
    "o": ("oʊ", "o"),
    "q": ("ɔ", "ɔɪ", "ɒ", "ɔɹ"),
    "x": ("ə", "ɚ", "ᵻ"),
}
"""IPA phonemes (stress and length marks removed) of each class."""

_IGNORED = "ˈˌː"
"""Marks that never change the class: primary/secondary stress and length."""


@functools.lru_cache(maxsize=1)
def _table() -> dict[str, str]:
    table = {}
    for code, members in VISEME_MEMBERS.items():
        for ipa in members:
            assert ipa not in table, f"{ipa} listed twice"
            table[ipa] = code
    return table


def phoneme_to_viseme(ipa: str) -> str:
    """Viseme class code of one IPA phoneme.

    Args:
        ipa: one phoneme as espeak-ng writes it in IPA, with or without stress (ˈ ˌ) and length
            (ː) marks, e.g. ``"m"``, ``"ˈaɪ"``, ``"uː"``, ``"tʃ"``.

    Returns:
        one character of :data:`VISEME_CLASSES`.

    Raises:
        BadInputError: the phoneme (e.g. silence ``"_"``, an empty string or a phoneme outside
            the en-us inventory) has no class.
    """
    key = "".join(ch for ch in ipa if ch not in _IGNORED)
    half = len(key) // 2
    if len(key) % 2 == 0 and half and key[:half] == key[half:] and key not in _table():
        key = key[:half]
    code = _table().get(key)
    if code is None:
        raise BadInputError(f"phoneme {ipa!r} has no viseme class; known phonemes: "
                            f"{' '.join(sorted(_table()))}")
    return code


def text_to_visemes(text: str, language: str = "en-us") -> str:
    """Viseme string of a text, for VER: one code per phoneme, words separated by one space.

    The text is phonemised with espeak-ng (:func:`avguide.speech.espeak.text_to_ipa`).

    Args:
        text: UTF-8 text (a transcript or a reader's hypothesis); case and punctuation do not
            matter.
        language: espeak language name.

    Returns:
        e.g. ``"pap faf"`` for "Map five."; ``""`` for a text with no speakable word.

    Raises:
        BadInputError: espeak emitted a phoneme with no class (a bug in the table) or the
            language is unknown.
    """
    from avguide.speech.espeak import text_to_ipa

    if not text.strip():
        return ""
    words = text_to_ipa(text, language=language)
    return " ".join("".join(phoneme_to_viseme(p) for p in word) for word in words)
