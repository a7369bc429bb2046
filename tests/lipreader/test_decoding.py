"""CTC prefix scores against brute-force enumeration; greedy CTC; batched == one-by-one."""

import itertools
import math

import pytest
import torch

from avguide.lipreader.beam_search import beam_search, ctc_greedy, recognize
from avguide.lipreader.config import ExpertConfig
from avguide.lipreader.ctc_prefix import (LOGZERO, ctc_prefix_scores, initial_state,
                                          prepare_ctc_inputs, select_state)
from avguide.lipreader.model import build_expert

BLANK, EOS = 0, 3  # tokens 1, 2 and eos (also a CTC class, as in Auto-AVSR)


def _collapse(path):
    out, prev = [], None
    for s in path:
        if s != prev and s != BLANK:
            out.append(s)
        prev = s
    return out


def _brute_force(probs, prefix):
    """{c: P(output starts with prefix + c)} and P(output == prefix) by enumerating paths."""
    T, V = probs.shape
    probs = probs.tolist()
    starts = {c: 0.0 for c in range(1, V)}
    equal = 0.0
    for path in itertools.product(range(V), repeat=T):
        p = math.prod(probs[t][s] for t, s in enumerate(path))
        out = _collapse(path)
        if out[:len(prefix)] == prefix:
            if len(out) == len(prefix):
                equal += p
            else:
                starts[out[len(prefix)]] += p
    return starts, equal


@pytest.mark.parametrize("prefix", [[], [1], [1, 1], [2, 1], [2, 3]])
@pytest.mark.parametrize("length", [5, 3])
def test_prefix_scores_match_enumeration(prefix, length):
    torch.manual_seed(len(prefix) + length)
    T, V = 5, 4
    log_probs = torch.log_softmax(torch.randn(1, T, V, dtype=torch.float64) * 1.5, -1)
    inputs = prepare_ctc_inputs(log_probs, torch.tensor([length]), BLANK, EOS)
    state = initial_state(inputs, torch.tensor([0]), sos=EOS)
    for n, tok in enumerate(prefix):  # extend one token at a time, as beam search does
        psi, r = ctc_prefix_scores(inputs, state, n, None)
        state = select_state(state, psi, r, None, torch.tensor([0]), torch.tensor([tok]))
    psi, _ = ctc_prefix_scores(inputs, state, len(prefix), None)
    starts, equal = _brute_force(log_probs[0, :length].exp(), prefix)
    for c in (1, 2):
        want = math.log(starts[c]) if starts[c] > 0 else LOGZERO
        assert psi[0, c].item() == pytest.approx(want, rel=1e-9, abs=1e-9)
    assert psi[0, EOS].item() == pytest.approx(math.log(equal), rel=1e-9)
    assert psi[0, BLANK].item() == LOGZERO


def test_scoring_ids_restrict_all_but_eos():
    torch.manual_seed(0)
    log_probs = torch.log_softmax(torch.randn(1, 6, 5), -1)
    inputs = prepare_ctc_inputs(log_probs, torch.tensor([6]), 0, 4)
    state = initial_state(inputs, torch.tensor([0]), sos=4)
    full, _ = ctc_prefix_scores(inputs, state, 0, None)
    part, _ = ctc_prefix_scores(inputs, state, 0, torch.tensor([[2, 0]]))
    assert part[0, 2] == full[0, 2] and part[0, 4] == full[0, 4]
    assert part[0, 1] == LOGZERO and part[0, 3] == LOGZERO and part[0, 0] == LOGZERO


def test_ctc_greedy():
    frames = torch.tensor([[1, 1, 0, 1, 2, 2, 0, 0], [3, 0, 3, 3, 1, 1, 1, 1]])
    log_probs = torch.nn.functional.one_hot(frames, 4).float().log()
    assert ctc_greedy(log_probs, torch.tensor([8, 4])) == [[1, 1, 2], [3, 3]]


def _tiny_av(mtlalpha=0.3):
    return ExpertConfig(modality="av", odim=9, adim=32, aheads=2, eunits=48, elayers=1,
                        cnn_module_kernel=3, aux_adim=32, aux_aheads=2, aux_eunits=48,
                        aux_elayers=1, aux_cnn_module_kernel=3, fusion_hdim=40, ddim=24,
                        dheads=2, dunits=48, dlayers=2, mtlalpha=mtlalpha, dropout_rate=0.0,
                        transformer_attn_dropout_rate=0.0, visual_widths=(4, 4, 8, 8),
                        audio_widths=(4, 4, 8, 8))


@pytest.mark.parametrize("ctc_weight, beam", [(0.0, 3), (0.3, 4), (0.5, 10), (1.0, 2)])
def test_batched_equals_one_by_one(ctc_weight, beam):
    torch.manual_seed(3)
    model = build_expert(_tiny_av()).eval()  # ddim != adim: exercises proj_decoder
    B, T = 3, 9
    memory = torch.randn(B, T, 24) * 2
    log_probs = torch.log_softmax(torch.randn(B, T, 9) * 3, -1)
    lengths = torch.tensor([9, 4, 7])
    batched = beam_search(model.decoder, memory, lengths, log_probs, 8, 8, beam, ctc_weight)
    for b in range(B):
        n = int(lengths[b])
        alone = beam_search(model.decoder, memory[b:b + 1, :n], lengths[b:b + 1],
                            log_probs[b:b + 1, :n], 8, 8, beam, ctc_weight)[0]
        assert batched[b].yseq == alone.yseq
        assert batched[b].score == pytest.approx(alone.score, rel=1e-5)
        assert alone.yseq[0] == 8 and alone.yseq[-1] == 8 and len(alone.yseq) <= n + 2


@pytest.mark.parametrize("beam", [4, 8, 12, 40])
def test_pure_ctc_beam_agrees_with_greedy_on_peaked_posteriors(beam):
    """Also with more hypotheses than tokens (9): blank and unscored tokens are never kept (their
    LOGZERO penalty would be refunded by the next step's score difference)."""
    frames = torch.tensor([[1, 1, 0, 2, 2, 0, 1, 3]])
    log_probs = torch.log_softmax(torch.nn.functional.one_hot(frames, 9).float() * 20, -1)
    hyp = beam_search(None, torch.zeros(1, 8, 4), torch.tensor([8]), log_probs, 8, 8, beam, 1.0)[0]
    assert hyp.tokens(8, 8) == ctc_greedy(log_probs, torch.tensor([8]))[0] == [1, 2, 1, 3]


@pytest.mark.parametrize("beam", [7, 30])
def test_joint_beam_wider_than_the_vocabulary_keeps_only_scored_tokens(beam):
    torch.manual_seed(5)
    model = build_expert(_tiny_av()).eval()
    frames = torch.tensor([[1, 1, 0, 2, 2, 0, 1, 3, 3]])
    log_probs = torch.log_softmax(torch.nn.functional.one_hot(frames, 9).float() * 20, -1)
    hyp = beam_search(model.decoder, torch.randn(1, 9, 24), torch.tensor([9]), log_probs, 8, 8, beam, 0.5)[0]
    assert hyp.tokens(8, 8) == [1, 2, 1, 3] and hyp.score > LOGZERO / 2


def test_recognize_runs_on_an_encoded_batch():
    torch.manual_seed(0)
    model = build_expert(_tiny_av()).eval()
    video = torch.randn(2, 6, 1, 24, 24)
    audio = torch.randn(2, 6 * 640)
    with torch.no_grad():
        enc = model.encode(video, torch.tensor([6, 5]), audio, torch.tensor([3840, 3200]))
    hyps = recognize(model, enc, beam_size=3, ctc_weight=0.3)
    assert len(hyps) == 2 and all(len(h.yseq) <= 8 and h.yseq[-1] == 8 for h in hyps)
