"""Sentence generator: determinism, distinctness, prefix stability, length, viseme coverage."""

import collections

import pytest

from avguide.speech.visemes import VISEME_CLASSES, text_to_visemes
from avguide.synth.text import MAX_WORDS, MIN_WORDS, generate_sentences


def test_deterministic_distinct_and_prefix_stable():
    a = generate_sentences(200, seed=7)
    assert a == generate_sentences(200, seed=7)
    assert len(set(a)) == 200
    assert generate_sentences(37, seed=7) == a[:37]
    assert generate_sentences(200, seed=8) != a
    assert generate_sentences(0, seed=1) == []


def test_lengths_and_form():
    sentences = generate_sentences(300, seed=0)
    counts = [len(s.split()) for s in sentences]
    assert min(counts) >= MIN_WORDS and max(counts) <= MAX_WORDS
    assert len(set(counts)) >= 5  # varied lengths
    for s in sentences:
        assert s[0].isupper() and s[-1] in ".?"
    letters = [len(w.strip(".?")) for s in sentences for w in s.split()]
    assert 3.5 < sum(letters) / len(letters) < 6.5  # realistic English word length


def test_every_viseme_class_well_covered():
    """40 sentences (one subject's share) already show every class several times."""
    codes = collections.Counter("".join(text_to_visemes(s) for s in generate_sentences(40, 0)))
    for code in VISEME_CLASSES:
        assert codes[code] >= 8, (code, codes[code])


def test_bad_arguments():
    with pytest.raises(ValueError, match="n must"):
        generate_sentences(-1, 0)
    with pytest.raises(ValueError, match="seed"):
        generate_sentences(3, -2)
