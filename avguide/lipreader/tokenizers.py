"""Transcript tokenisers of the expert. Both upper-case text first (docs/design.md section 2, point 4).

Id layout (Auto-AVSR): blank = 0, units 1..n, sos = eos = n + 1, odim = n + 2.

- :class:`SentencePieceTokenizer`: the published checkpoints' unigram5000 model shipped in
  ``avguide/assets/auto_avsr_spm`` (5047 units, odim 5049). A piece missing from the units file
  becomes ``<unk>`` (id 1).
- :class:`CharTokenizer`: A-Z, apostrophe and space (28 units, odim 30), for small experts.
"""

from __future__ import annotations

import functools
import re
from importlib import resources
from pathlib import Path

import torch

from avguide.errors import BadInputError, MissingFileError

WORD_START = "\u2581"  # SentencePiece's word-boundary mark


def _spm_dir() -> Path:
    return Path(str(resources.files("avguide.assets") / "auto_avsr_spm"))


@functools.lru_cache(maxsize=4)
def _load_spm(model_path: str):
    import sentencepiece

    return sentencepiece.SentencePieceProcessor(model_file=model_path)


class SentencePieceTokenizer:
    """Auto-AVSR's SentencePiece vocabulary.

    Args (constructor):
        model_path: ``.model`` file; default the shipped ``unigram5000.model``.
        units_path: "PIECE ID" lines (ids 1..n); default ``unigram5000_units.txt``.
    Raises:
        MissingFileError: a file does not exist.
        BadInputError: the units file is malformed (ids not 1..n in order, no ``<unk>``).
    """

    def __init__(self, model_path: str | Path | None = None, units_path: str | Path | None = None):
        model_path = Path(model_path) if model_path else _spm_dir() / "unigram5000.model"
        units_path = Path(units_path) if units_path else _spm_dir() / "unigram5000_units.txt"
        for p in (model_path, units_path):
            if not p.is_file():
                raise MissingFileError(f"{p}: tokeniser file not found")
        self._spm = _load_spm(str(model_path))
        self.units: list[str] = []
        for n, line in enumerate(units_path.read_text(encoding="utf-8").splitlines(), start=1):
            parts = line.split()
            if len(parts) != 2 or parts[1] != str(n):
                raise BadInputError(f"{units_path}:{n}: expected 'PIECE {n}', got {line!r}")
            self.units.append(parts[0])
        self._id = {u: i for i, u in enumerate(self.units, start=1)}
        if "<unk>" not in self._id:
            raise BadInputError(f"{units_path}: no <unk> unit")
        self.blank = 0
        self.unk = self._id["<unk>"]
        self.sos = self.eos = len(self.units) + 1
        self.odim = len(self.units) + 2

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (upper-cased first); unknown pieces -> ``<unk>``."""
        pieces = self._spm.encode_as_pieces(text.upper())
        return [self._id.get(p, self.unk) for p in pieces]

    def decode(self, ids) -> str:
        """Text of token ids (list or 1-D tensor); blank, sos/eos, ``<unk>`` and -1 padding
        are skipped (so reading metrics never see the literal "<unk>")."""
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else ids
        pieces = [self.units[i - 1] for i in ids if 1 <= i <= len(self.units) and i != self.unk]
        return "".join(pieces).replace(WORD_START, " ").strip()


class CharTokenizer:
    """Characters A-Z, ' and space: blank 0, 'A'..'Z' 1..26, "'" 27, ' ' 28, sos = eos 29.

    Text is upper-cased; any other character (digit, punctuation) becomes a space and runs of
    spaces collapse, so "Don't, stop!" encodes as "DON'T STOP".
    """

    ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ' "

    def __init__(self):
        self.units = list(self.ALPHABET)
        self._id = {c: i for i, c in enumerate(self.units, start=1)}
        self.blank = 0
        self.sos = self.eos = len(self.units) + 1
        self.odim = len(self.units) + 2

    def normalize(self, text: str) -> str:
        """Upper-case, map characters outside the alphabet to spaces, collapse spaces."""
        return re.sub(r"[^A-Z']+", " ", text.upper()).strip()

    def encode(self, text: str) -> list[int]:
        """Token ids of the normalised text."""
        return [self._id[c] for c in self.normalize(text)]

    def decode(self, ids) -> str:
        """Text of token ids (list or 1-D tensor); blank, sos/eos and -1 padding are skipped."""
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else ids
        return "".join(self.units[i - 1] for i in ids if 1 <= i <= len(self.units)).strip()


def pad_targets(sequences: list[list[int]]) -> torch.Tensor:
    """(B, S) int64 batch of token-id lists padded with -1 (the model's ignore id)."""
    S = max((len(s) for s in sequences), default=0)
    out = torch.full((len(sequences), S), -1, dtype=torch.long)
    for b, s in enumerate(sequences):
        out[b, :len(s)] = torch.tensor(s, dtype=torch.long)
    return out
