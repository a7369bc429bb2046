"""Sentences for the synthetic benchmark: varied, phonetically rich English, written by us.

A small phrase grammar (our own word lists by part of speech and sentence templates) produces
sentences of 5 to 14 words. Sentence ``i`` of a seed depends only on ``(seed, i)`` and on the
sentences before it (a repeat is redrawn), so lists are prefix-stable: ``generate_sentences(n,
s)[:m] == generate_sentences(m, s)``. The words were chosen so that every viseme class (bilabial
to schwa, including the rarer dental θ ð, postalveolar ʒ, and the diphthongs ɔɪ aʊ oʊ eɪ) occurs
often; tests/synth/test_text.py counts them.
"""

from __future__ import annotations

import numpy as np


MIN_WORDS, MAX_WORDS = 5, 14

NAMES = (
    "Fiona", "Victor", "Martha", "Joseph", "Beth", "Oliver", "Molly", "Theodore", "Ruth",
    "Vincent", "Judith", "Howard", "Joyce", "Arthur", "Grace", "Wayne", "Sophie", "Mabel",
    "Felix", "Nora", "Timothy", "Roy", "Chloe", "Gabriel", "Hugo", "Bob", "Jane", "Louise",
)
NOUNS = (
    "boat", "house", "mother", "father", "brother", "teacher", "farmer", "baker", "doctor",
    "window", "garden", "kitchen", "bridge", "river", "mountain", "valley", "village", "road",
    "shoe", "coat", "hat", "glove", "bottle", "cup", "plate", "spoon", "knife", "fork", "basket",
    "chair", "table", "mirror", "pillow", "blanket", "letter", "envelope", "parcel", "message",
    "book", "paper", "pencil", "picture", "painting", "camera", "radio", "engine", "wheel",
    "horse", "cow", "mouse", "goose", "sheep", "fox", "wolf", "bird", "fish", "whale", "monkey",
    "cloud", "storm", "thunder", "weather", "rain", "snow", "moon", "ocean", "beach", "shore",
    "coin", "voice", "toy", "oil", "boy", "choice", "noise", "treasure", "measure", "vision",
    "theatre", "thumb", "tooth", "path", "bath", "month", "thing", "feather", "leather",
    "judge", "bridge", "cheese", "peach", "juice", "orange", "lemon", "potato", "tomato",
    "soup", "bread", "butter", "honey", "coffee", "cake", "pie", "apple", "banana", "cherry",
    "engineer", "pilot", "captain", "soldier", "sailor", "nurse", "lawyer", "singer", "poet",
    "tower", "castle", "palace", "church", "school", "market", "station", "airport", "office",
    "puzzle", "question", "answer", "problem", "promise", "secret", "story", "journey", "voyage",
)
ADJECTIVES = (
    "big", "small", "old", "young", "new", "warm", "cold", "wet", "dry", "soft", "rough", "smooth",
    "bright", "dark", "pale", "yellow", "purple", "orange", "brown", "green", "blue", "white",
    "heavy", "empty", "quiet", "loud", "happy", "angry", "lazy", "busy", "clever", "foolish",
    "beautiful", "famous", "strange", "ordinary", "usual", "unusual", "beige", "wooden", "golden",
    "silver", "thick", "thin", "smooth", "broad", "narrow", "shallow", "deep", "tall", "huge",
    "tiny", "fresh", "sour", "sweet", "bitter", "noisy", "shiny", "muddy", "frozen", "boiling",
)
# (base, past) pairs of transitive verbs.
VERBS_T = (
    ("open", "opened"), ("close", "closed"), ("find", "found"), ("lose", "lost"),
    ("bring", "brought"), ("buy", "bought"), ("sell", "sold"), ("paint", "painted"),
    ("wash", "washed"), ("fix", "fixed"), ("break", "broke"), ("throw", "threw"),
    ("catch", "caught"), ("push", "pushed"), ("pull", "pulled"), ("carry", "carried"),
    ("measure", "measured"), ("watch", "watched"), ("visit", "visited"), ("choose", "chose"),
    ("borrow", "borrowed"), ("move", "moved"), ("hide", "hid"), ("show", "showed"),
    ("cook", "cooked"), ("bake", "baked"), ("taste", "tasted"), ("love", "loved"),
    ("weigh", "weighed"), ("polish", "polished"), ("fold", "folded"), ("mend", "mended"),
    ("drop", "dropped"), ("keep", "kept"), ("leave", "left"), ("enjoy", "enjoyed"),
    ("avoid", "avoided"), ("follow", "followed"), ("thank", "thanked"), ("describe", "described"),
    ("imagine", "imagined"), ("remember", "remembered"), ("deliver", "delivered"),
    ("believe", "believed"), ("view", "viewed"), ("pour", "poured"), ("boil", "boiled"),
)
# (base, past) pairs of intransitive verbs.
VERBS_I = (
    ("sleep", "slept"), ("laugh", "laughed"), ("smile", "smiled"), ("wait", "waited"),
    ("walk", "walked"), ("run", "ran"), ("swim", "swam"), ("sing", "sang"), ("dance", "danced"),
    ("shout", "shouted"), ("whisper", "whispered"), ("arrive", "arrived"), ("vanish", "vanished"),
    ("travel", "travelled"), ("work", "worked"), ("rest", "rested"), ("play", "played"),
    ("pray", "prayed"), ("frown", "frowned"), ("breathe", "breathed"), ("shiver", "shivered"),
    ("wander", "wandered"), ("hurry", "hurried"), ("fall", "fell"), ("sit", "sat"),
)
PREPOSITIONS = (
    "in", "on", "under", "behind", "beside", "near", "above", "below", "through", "across",
    "over", "into", "toward", "without", "with", "beyond", "around", "between",
)
TIMES = (
    "yesterday", "today", "this morning", "last night", "every evening", "on Monday",
    "on Thursday", "at noon", "in the summer", "before the storm", "after the show",
    "each autumn", "two days ago", "in the winter", "at the weekend", "usually", "now",
)
ADVERBS = (
    "quickly", "slowly", "carefully", "quietly", "happily", "loudly", "gently", "eagerly",
    "badly", "smoothly", "often", "rarely", "suddenly", "softly", "proudly", "clumsily",
)
DETERMINERS = ("the", "a", "my", "our", "your", "his", "her", "that", "this", "their", "every")
MODALS = ("will", "can", "should", "might", "must", "would", "could")


def _pick(rng: np.random.Generator, words):
    return words[int(rng.integers(len(words)))]


def _noun_phrase(rng: np.random.Generator) -> list[str]:
    if rng.random() < 0.2:
        return [_pick(rng, NAMES)]
    det = _pick(rng, DETERMINERS)
    words = [det]
    if rng.random() < 0.55:
        words.append(_pick(rng, ADJECTIVES))
    words.append(_pick(rng, NOUNS))
    if det == "a" and words[1][0] in "aeiou":
        words[0] = "an"
    return words


def _prep_phrase(rng: np.random.Generator) -> list[str]:
    return [_pick(rng, PREPOSITIONS)] + _noun_phrase(rng)


def _optional(rng: np.random.Generator, p: float, make) -> list[str]:
    return make(rng) if rng.random() < p else []


def _sentence_words(rng: np.random.Generator) -> tuple[list[str], str]:
    """One sentence from a random template; returns (words, final punctuation)."""
    kind = int(rng.integers(8))
    if kind == 0:  # NP V-past NP [PP] [ADV]
        return (_noun_phrase(rng) + [_pick(rng, VERBS_T)[1]] + _noun_phrase(rng)
                + _optional(rng, 0.6, _prep_phrase)
                + _optional(rng, 0.3, lambda r: [_pick(r, ADVERBS)])), "."
    if kind == 1:  # NP Vi-past PP [TIME]
        return (_noun_phrase(rng) + [_pick(rng, VERBS_I)[1]] + _prep_phrase(rng)
                + _optional(rng, 0.5, lambda r: _pick(r, TIMES).split())), "."
    if kind == 2:  # Did NP V NP PP ?
        return (["did"] + _noun_phrase(rng) + [_pick(rng, VERBS_T)[0]] + _noun_phrase(rng)
                + _optional(rng, 0.7, _prep_phrase)), "?"
    if kind == 3:  # NAME said that NP V-past NP
        return ([_pick(rng, NAMES), "said", "that"] + _noun_phrase(rng)
                + [_pick(rng, VERBS_T)[1]] + _noun_phrase(rng)), "."
    if kind == 4:  # TIME NP V-past NP [ADV]
        return (_pick(rng, TIMES).split() + _noun_phrase(rng) + [_pick(rng, VERBS_T)[1]]
                + _noun_phrase(rng) + _optional(rng, 0.4, lambda r: [_pick(r, ADVERBS)])), "."
    if kind == 5:  # NP MODAL V NP PP
        return (_noun_phrase(rng) + [_pick(rng, MODALS), _pick(rng, VERBS_T)[0]]
                + _noun_phrase(rng) + _prep_phrase(rng)), "."
    if kind == 6:  # please V NP PP [ADV]
        return (["please", _pick(rng, VERBS_T)[0]] + _noun_phrase(rng) + _prep_phrase(rng)
                + _optional(rng, 0.4, lambda r: [_pick(r, ADVERBS)])), "."
    # NP was ADJ because NP Vi-past [ADV]
    return (_noun_phrase(rng) + ["was", _pick(rng, ADJECTIVES), "because"] + _noun_phrase(rng)
            + [_pick(rng, VERBS_I)[1]] + _optional(rng, 0.4, lambda r: [_pick(r, ADVERBS)])), "."


def _format(words: list[str], end: str) -> str:
    text = " ".join(words) + end
    return text[0].upper() + text[1:]


def generate_sentences(n: int, seed: int) -> list[str]:
    """Deterministic, distinct English sentences of 5 to 14 words.

    Args:
        n: number of sentences (>= 0).
        seed: any integer >= 0; equal seeds give equal lists.

    Returns:
        n distinct sentences (capitalised, ending in "." or "?"); prefix-stable in ``n``.

    Raises:
        ValueError: negative n or seed.
    """
    if not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be an integer >= 0, got {n!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    sentences: list[str] = []
    seen: set[str] = set()
    for index in range(n):
        attempt = 0
        while True:
            rng = np.random.default_rng([int(seed), index, attempt])
            words, end = _sentence_words(rng)
            text = _format(words, end)
            if MIN_WORDS <= len(words) <= MAX_WORDS and text not in seen:
                break
            attempt += 1
        seen.add(text)
        sentences.append(text)
    return sentences
