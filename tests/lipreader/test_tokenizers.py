"""Tokenisers: Auto-AVSR id layout, upper-casing, <unk>, round trips."""

from pathlib import Path

import torch

from avguide.lipreader.tokenizers import CharTokenizer, SentencePieceTokenizer, pad_targets

UNITS = Path(__file__).resolve().parents[2] / "avguide/assets/auto_avsr_spm/unigram5000_units.txt"


def test_sentencepiece_layout():
    tok = SentencePieceTokenizer()
    assert (tok.blank, tok.unk, tok.sos, tok.eos, tok.odim) == (0, 1, 5048, 5048, 5049)


def test_sentencepiece_ids_follow_the_units_file():
    tok = SentencePieceTokenizer()
    line_of = {}
    for line in UNITS.read_text(encoding="utf-8").splitlines():
        piece, idx = line.split()
        line_of[piece] = int(idx)
    ids = tok.encode("THE QUICK BROWN FOX")
    pieces = tok._spm.encode_as_pieces("THE QUICK BROWN FOX")
    assert ids == [line_of[p] for p in pieces]
    assert 1 not in ids


def test_sentencepiece_upper_cases_and_round_trips():
    tok = SentencePieceTokenizer()
    text = "she had your dark suit in greasy wash water all year"
    assert tok.encode(text) == tok.encode(text.upper())
    assert tok.decode(tok.encode(text)) == text.upper()
    assert tok.decode(torch.tensor(tok.encode(text) + [tok.eos, -1, -1])) == text.upper()


def test_sentencepiece_unknown_piece_is_unk():
    tok = SentencePieceTokenizer()
    ids = tok.encode("HELLO ~")
    assert ids[-1] == tok.unk
    assert tok.decode(ids) == "HELLO"


def test_char_tokenizer():
    tok = CharTokenizer()
    assert (tok.blank, tok.sos, tok.eos, tok.odim) == (0, 29, 29, 30)
    assert tok.encode("ab' z") == [1, 2, 27, 28, 26]
    assert tok.decode(tok.encode("Don't, stop!  Now 42.")) == "DON'T STOP NOW"
    assert tok.decode([0, 1, 29, -1]) == "A"


def test_pad_targets():
    assert pad_targets([[3, 4, 5], [7]]).tolist() == [[3, 4, 5], [7, -1, -1]]
