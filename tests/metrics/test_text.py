"""Normalisation, Levenshtein distance, CER / WER / VER and corpus aggregation."""

import numpy as np
import pytest

from avguide.metrics import text
from avguide.metrics.text import EditCounts


def _slow_edit_distance(a, b):
    """Textbook O(len(a) len(b)) dynamic programme, the reference for the vectorised one."""
    d = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a) + 1):
        d[i][0] = i
    for j in range(len(b) + 1):
        d[0][j] = j
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            substitute = d[i - 1][j - 1] + (a[i - 1] != b[j - 1])
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, substitute)
    return d[-1][-1]


@pytest.mark.parametrize("ref,hyp,dist", [
    ("kitten", "sitting", 3), ("flaw", "lawn", 2), ("intention", "execution", 5),
    ("", "abc", 3), ("abc", "", 3), ("", "", 0), ("abc", "abc", 0), ("abc", "cba", 2),
    ("a", "b", 1), ("ab", "ba", 2),
    (["the", "cat", "sat"], ["the", "bat", "sat", "down"], 2),
])
def test_edit_distance_known_cases(ref, hyp, dist):
    assert text.edit_distance(ref, hyp) == dist
    assert text.edit_distance(hyp, ref) == dist


def test_edit_distance_matches_slow_dp_on_random_strings():
    rng = np.random.default_rng(0)
    for _ in range(300):
        a = "".join(rng.choice(list("abcd "), size=rng.integers(0, 15)))
        b = "".join(rng.choice(list("abcd "), size=rng.integers(0, 15)))
        assert text.edit_distance(a, b) == _slow_edit_distance(a, b), (a, b)


@pytest.mark.parametrize("raw,norm", [
    ("  Hello,   WORLD!  ", "hello world"),
    ("Don't stop-me now", "dont stop me now"),
    ("It\u2019s 42 times\tover\n", "its times over"),
    ("café Noël", "café noël"),
    ("...", ""),
])
def test_normalise_text(raw, norm):
    assert text.normalise_text(raw) == norm


def test_sentence_rates_by_hand():
    # "the cat" has 7 characters (space counts); one substitution
    assert text.cer("The cat.", "the bat") == pytest.approx(1 / 7)
    assert text.wer("The cat.", "the bat") == pytest.approx(1 / 2)
    assert text.char_counts("The cat.", "the bat") == EditCounts(1, 7)
    # a dropped word: "the cat sat" -> "the sat" = 4 character deletions of 11, 1 of 3 words
    assert text.char_counts("the cat sat", "the sat") == EditCounts(4, 11)
    assert text.word_counts("the cat sat", "the sat") == EditCounts(1, 3)
    assert text.cer("abc", "") == 1.0


def test_corpus_aggregation_is_total_edits_over_total_length():
    refs, hyps = ["abc", "abcdefgh"], ["abd", "abcdefgh"]
    total = text.corpus_counts(refs, hyps, text.char_counts)
    assert total == EditCounts(1, 11)
    assert total.rate == pytest.approx(1 / 11)
    # the mean of sentence rates differs: (1/3 + 0) / 2
    assert np.mean([text.cer(r, h) for r, h in zip(refs, hyps)]) == pytest.approx(1 / 6)
    with pytest.raises(ValueError):
        text.corpus_counts(["a"], [], text.char_counts)


def test_empty_reference_rates():
    assert EditCounts(0, 0).rate == 0.0
    assert EditCounts(2, 0).rate == float("inf")


def test_ver_composes_normalisation_mapping_and_cer():
    seen = []

    def fake_visemes(t):  # p b m -> P, f v -> F, everything else unchanged
        seen.append(t)
        return t.translate(str.maketrans("pbmfv", "PPPFF"))

    # "pat" / "bat": one character wrong, no viseme wrong (both bilabial)
    assert text.cer("Pat!", "bat") == pytest.approx(1 / 3)
    assert text.ver("Pat!", "bat", fake_visemes) == 0.0
    assert seen == ["pat", "bat"]  # normalised before conversion
    # "pat the cat" -> "fat the map": visemes "Pat the cat" vs "Fat the Pap": 3 of 11
    assert text.viseme_counts("pat the cat", "fat the map", fake_visemes) == EditCounts(3, 11)


def test_ver_default_mapping_is_imported_lazily(monkeypatch):
    monkeypatch.setattr(text, "_default_to_visemes", lambda: str.upper)
    assert text.viseme_counts("ab", "ac") == EditCounts(1, 2)


def test_ver_with_real_espeak_visemes():
    # p/b/m share the bilabial class, f is labiodental
    assert text.ver("pat", "bat") == 0.0
    assert text.ver("pat", "mat") == 0.0
    assert text.ver("pat", "fat") > 0.0
    assert text.cer("pat", "bat") > 0.0
