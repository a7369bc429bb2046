"""Phoneme -> viseme table: hand cases, docs/design.md classes, completeness over espeak output."""

import pytest

from avguide.errors import BadInputError
from avguide.speech.espeak import text_to_ipa
from avguide.speech.visemes import (
    VISEME_CLASSES, VISEME_MEMBERS, VISEME_NAMES, phoneme_to_viseme, text_to_visemes,
)
from avguide.synth.text import generate_sentences

# docs/design.md section 4: class -> its listed IPA members.
DESIGN = {
    "bilabial": "p b m", "labiodental": "f v", "dental": "θ ð", "alveolar": "t d n l ɾ",
    "sibilant": "s z", "postalveolar": "ʃ ʒ tʃ dʒ", "velar/glottal": "k g ŋ h", "r": "ɹ",
    "rounded": "w u ʊ", "spread": "j i ɪ", "open": "æ aɪ aʊ ɑ ɐ", "eI": "eɪ",
    "mid": "ɛ ɝ ʌ", "oU": "oʊ", "O/OI": "ɔ ɔɪ", "schwa": "ə ɚ",
}


def test_classes_match_design():
    assert len(VISEME_CLASSES) == 16 == len(set(VISEME_CLASSES))
    assert all(len(c) == 1 and c.isascii() and c.islower() for c in VISEME_CLASSES)
    assert sorted(VISEME_NAMES.values()) == sorted(DESIGN)
    by_name = {name: code for code, name in VISEME_NAMES.items()}
    for name, members in DESIGN.items():
        for ipa in members.split():
            assert phoneme_to_viseme(ipa) == by_name[name], (name, ipa)
    assert set(VISEME_MEMBERS) == set(VISEME_CLASSES)


def test_hand_cases():
    assert text_to_visemes("map")[0] == "p"  # bilabial first
    assert text_to_visemes("Map five.") == "pap faf"
    assert text_to_visemes("five")[0] == "f"
    assert text_to_visemes("thin") == "dit"
    assert text_to_visemes("shoe") == "cw"
    assert text_to_visemes("boy go") == "pq ko"
    assert text_to_visemes("") == ""
    # Visually identical words share a viseme string (the ambiguity lip reading has).
    assert text_to_visemes("pat") == text_to_visemes("bat") == text_to_visemes("mat")
    assert text_to_visemes("fan") == text_to_visemes("van")
    assert phoneme_to_viseme("ˈuː") == phoneme_to_viseme("u") == "w"
    assert phoneme_to_viseme("ˌeɪ") == "e"
    assert phoneme_to_viseme("ææ") == "a"  # espeak doubles a lengthened vowel in nonsense


def test_unknown_phonemes_raise():
    for bad in ("_", "", "Q", "ʘ"):
        with pytest.raises(BadInputError, match="viseme"):
            phoneme_to_viseme(bad)


def test_every_phoneme_espeak_emits_maps():
    """Generated sentences, their words, and spelled-out nonsense all map completely."""
    from avguide.synth import text as T

    seen = set()
    for sentence in generate_sentences(300, seed=3):
        for word in text_to_ipa(sentence):
            seen.update(word)
    vocabulary = T.NAMES + T.NOUNS + T.ADJECTIVES + T.PREPOSITIONS + T.ADVERBS + T.TIMES
    vocabulary += tuple(v for pair in T.VERBS_T + T.VERBS_I for v in pair)
    for word in text_to_ipa(" ".join(vocabulary)):
        seen.update(word)
    for word in text_to_ipa("Bach xylophone genre rouge hmm qwzx ooh ahh eek 1999 Ljubljana"):
        seen.update(word)
    for ipa in seen:
        assert phoneme_to_viseme(ipa) in VISEME_CLASSES
    assert len(seen) > 45
