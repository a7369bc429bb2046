"""Lip-readability metrics: CER, WER and VER from reference transcripts and read hypotheses.

* Text is normalised first (:func:`normalise_text`): lower-cased; apostrophes removed
  (``don't`` -> ``dont``); every other character that is not a letter (digits, punctuation,
  hyphens) becomes a space; runs of whitespace collapse to one space; ends stripped.
* **CER**: Levenshtein distance between the normalised strings, counted in characters; the
  single spaces between words count as characters (as in common ASR toolkits).
* **WER**: Levenshtein distance between the word lists of the normalised strings.
* **VER**: CER between viseme strings, ``text_to_visemes(normalised text)`` from
  :mod:`avguide.speech.visemes` (espeak-ng en-us phonemes mapped to one-character viseme class
  codes, words separated by spaces).

Every rate is ``edits / reference length``. A corpus rate is *total* edits over *total*
reference length (:class:`EditCounts` sums them), which weighs long sentences more than the
mean of per-sentence rates; the evaluator reports both. An empty reference gives a rate of
``edits / 0``: ``0.0`` if the hypothesis is empty too, else ``inf``.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Callable, Hashable, Sequence

import numpy as np


_SPACES = re.compile(r"\s+")


def normalise_text(text: str) -> str:
    """Normalise a transcript or hypothesis for CER / WER / VER.

    Args:
        text: any string.
    Returns:
        Lower-case letters and single spaces only, no leading/trailing space.
    """
    text = text.lower().replace("'", "").replace("\u2019", "")
    text = "".join(ch if ch.isalpha() else " " for ch in text)
    return _SPACES.sub(" ", text).strip()


def edit_distance(ref: Sequence[Hashable], hyp: Sequence[Hashable]) -> int:
    """Levenshtein distance (substitutions, insertions, deletions, each cost 1).

    Row-by-row dynamic programme, each row vectorised with numpy: with ``tmp[j]`` the best cost
    of reaching cell j by substitution/match or deletion, the insertion chain
    ``cur[j] = min_k<=j tmp[k] + (j - k)`` is a cumulative minimum of ``tmp[k] - k``.

    Args:
        ref: reference tokens (a string for characters, a list of words, ...).
        hyp: hypothesis tokens of the same kind.
    Returns:
        The minimum number of edits turning ``ref`` into ``hyp``.
    """
    if len(ref) == 0 or len(hyp) == 0:
        return max(len(ref), len(hyp))
    vocab: dict[Hashable, int] = {}
    r = np.array([vocab.setdefault(tok, len(vocab)) for tok in ref], dtype=np.int64)
    h = np.array([vocab.setdefault(tok, len(vocab)) for tok in hyp], dtype=np.int64)
    cols = np.arange(len(h) + 1, dtype=np.int64)
    prev = cols.copy()  # distances from the empty reference prefix
    for i, token in enumerate(r, start=1):
        tmp = np.empty_like(prev)
        tmp[0] = i
        tmp[1:] = np.minimum(prev[:-1] + (h != token), prev[1:] + 1)  # substitute / delete
        prev = np.minimum.accumulate(tmp - cols) + cols  # insert
    return int(prev[-1])


@dataclasses.dataclass(frozen=True)
class EditCounts:
    """Edits and reference length of one or many sentences (adds up for corpus rates).

    Attributes:
        edits: Levenshtein distance (summed over sentences).
        ref_len: reference length in tokens (summed over sentences).
    """

    edits: int = 0
    ref_len: int = 0

    def __add__(self, other: "EditCounts") -> "EditCounts":
        return EditCounts(self.edits + other.edits, self.ref_len + other.ref_len)

    @property
    def rate(self) -> float:
        """``edits / ref_len`` (0.0 for 0/0, inf for n/0)."""
        if self.ref_len == 0:
            return 0.0 if self.edits == 0 else math.inf
        return self.edits / self.ref_len


def char_counts(ref: str, hyp: str) -> EditCounts:
    """Character edits of normalised ``hyp`` against normalised ``ref`` (spaces count).

    Args:
        ref: reference transcript (raw; normalised here).
        hyp: hypothesis (raw; normalised here).
    Returns:
        :class:`EditCounts` over characters.
    """
    r, h = normalise_text(ref), normalise_text(hyp)
    return EditCounts(edit_distance(r, h), len(r))


def word_counts(ref: str, hyp: str) -> EditCounts:
    """Word edits of normalised ``hyp`` against normalised ``ref``.

    Args:
        ref: reference transcript (raw; normalised here).
        hyp: hypothesis (raw; normalised here).
    Returns:
        :class:`EditCounts` over words.
    """
    r, h = normalise_text(ref).split(), normalise_text(hyp).split()
    return EditCounts(edit_distance(r, h), len(r))


def _default_to_visemes() -> Callable[[str], str]:
    """The package's text -> viseme-string function (imported lazily: it needs espeak-ng)."""
    from avguide.speech.visemes import text_to_visemes

    return text_to_visemes


def viseme_counts(ref: str, hyp: str, to_visemes: Callable[[str], str] | None = None
                  ) -> EditCounts:
    """Viseme-character edits between the viseme strings of ``ref`` and ``hyp``.

    Args:
        ref: reference transcript (raw; normalised before conversion).
        hyp: hypothesis (raw; normalised before conversion).
        to_visemes: text -> viseme string (one character per viseme, words separated by
            spaces); default :func:`avguide.speech.visemes.text_to_visemes`.
    Returns:
        :class:`EditCounts` over viseme characters (word-separating spaces count).
    """
    convert = to_visemes or _default_to_visemes()
    r, h = (convert(t) if t else "" for t in (normalise_text(ref), normalise_text(hyp)))
    return EditCounts(edit_distance(r, h), len(r))


def cer(ref: str, hyp: str) -> float:
    """Character error rate of one sentence (see :func:`char_counts`).

    Example:
        >>> cer("The cat!", "the bat")  # 1 substitution in "the cat" (7 characters)
        0.14285714285714285
    """
    return char_counts(ref, hyp).rate


def wer(ref: str, hyp: str) -> float:
    """Word error rate of one sentence (see :func:`word_counts`)."""
    return word_counts(ref, hyp).rate


def ver(ref: str, hyp: str, to_visemes: Callable[[str], str] | None = None) -> float:
    """Viseme error rate of one sentence (see :func:`viseme_counts`)."""
    return viseme_counts(ref, hyp, to_visemes).rate


def corpus_counts(refs: Sequence[str], hyps: Sequence[str],
                  counter: Callable[[str, str], EditCounts]) -> EditCounts:
    """Sum ``counter(ref, hyp)`` over a corpus.

    Args:
        refs: S reference transcripts.
        hyps: S hypotheses, same order.
        counter: :func:`char_counts`, :func:`word_counts` or :func:`viseme_counts`.
    Returns:
        Total edits and total reference length; ``.rate`` is the corpus-level rate.
    Raises:
        ValueError: ``refs`` and ``hyps`` differ in length.
    """
    if len(refs) != len(hyps):
        raise ValueError(f"corpus_counts: {len(refs)} references but {len(hyps)} hypotheses")
    total = EditCounts()
    for r, h in zip(refs, hyps):
        total = total + counter(r, h)
    return total
