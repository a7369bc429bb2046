"""CTC prefix scores against brute-force enumeration; greedy CTC; batched == one-by-one."""

import itertools
import math

import pytest
import torch

from avguide.errors import BadInputError
from avguide.lipreader.beam_search import beam_search, ctc_candidates, ctc_greedy, recognize
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


def test_ctc_candidates_by_hand():
    probs = torch.tensor([[[0.6, 0.3, 0.05, 0.05, 0.0], [0.5, 0.0, 0.45, 0.0, 0.05], [0.2, 0.0, 0.0, 0.0, 0.8]],
                          [[0.9, 0.0, 0.1, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0, 1.0]]])
    ids = ctc_candidates(torch.log(probs), torch.tensor([3, 1]), 0.1, BLANK, EOS)
    # utterance 0: 1 (0.3), 2 (0.45), 4 (0.8), eos; utterance 1 (1 frame): 2 (0.1), eos, padded with eos
    assert ids.tolist() == [[1, 2, 3, 4], [2, 3, 3, 3]]


@pytest.mark.parametrize("ctc_weight", [1.0, 0.5])
def test_pruned_beam_equals_unpruned_when_nothing_plausible_is_pruned(ctc_weight):
    """Random posteriors over 40 tokens, 2 of them never above 1e-9: pruning at 1e-6 gives the same
    hypotheses and scores as scoring every token (pure CTC), or as the decoder pre-beam when that
    is wider than the candidates (joint)."""
    torch.manual_seed(7)
    B, T, V = 3, 8, 40
    logits = torch.randn(B, T, V) * 2
    logits[..., 11] = logits[..., 23] = -40.0
    log_probs = torch.log_softmax(logits, -1)
    lengths = torch.tensor([8, 5, 7])
    dec = None
    if ctc_weight < 1:
        cfg = _tiny_av()
        dec = build_expert(type(cfg)(**{**cfg.__dict__, "odim": V})).eval().decoder
    memory = torch.randn(B, T, 24)
    beam = 30 if ctc_weight < 1 else 5  # joint: pre-beam 45 > V, so both score every token
    full = beam_search(dec, memory, lengths, log_probs, V - 1, V - 1, beam, ctc_weight)
    pruned = beam_search(dec, memory, lengths, log_probs, V - 1, V - 1, beam, ctc_weight, ctc_prune=1e-6)
    assert ctc_candidates(log_probs, lengths, 1e-6, 0, V - 1).shape[1] == V - 3  # no blank, 11, 23
    for a, b in zip(full, pruned):
        assert a.yseq == b.yseq and a.score == pytest.approx(b.score, rel=1e-6)


def test_pruning_lets_the_ctc_overrule_a_decoder_pre_beam_that_misses_the_token():
    """The decoder (a biased output layer) ranks token 5 last; the audio (CTC) says 1, 5, 2. The
    ESPnet pre-beam (4 x 1.5 = 6 of 9 tokens) never offers 5 to the CTC score; the CTC candidates do."""
    torch.manual_seed(5)
    model = build_expert(_tiny_av()).eval()
    with torch.no_grad():
        model.decoder.output_layer.bias.zero_()
        model.decoder.output_layer.weight.mul_(0.01)
        model.decoder.output_layer.bias[5] = -50.0
    frames = torch.tensor([[1, 0, 5, 5, 0, 2, 0, 0]])
    log_probs = torch.log_softmax(torch.nn.functional.one_hot(frames, 9).float() * 20, -1)
    memory, lengths = torch.randn(1, 8, 24), torch.tensor([8])
    espnet = beam_search(model.decoder, memory, lengths, log_probs, 8, 8, 4, 0.9)[0]
    pruned = beam_search(model.decoder, memory, lengths, log_probs, 8, 8, 4, 0.9, ctc_prune=1e-4)[0]
    assert 5 not in espnet.tokens(8, 8)
    assert pruned.tokens(8, 8) == [1, 5, 2]
    with pytest.raises(BadInputError, match="ctc_prune must be in"):
        beam_search(model.decoder, memory, lengths, None, 8, 8, 4, 0.0, ctc_prune=1e-4)


def _exact_log_probs(probs):
    """{label sequence over tokens 1, 2: log P(CTC output == it)} by enumerating paths."""
    T, V = probs.shape
    probs = probs.tolist()
    total = {}
    for path in itertools.product(range(V), repeat=T):
        out = tuple(_collapse(path))
        if EOS not in out:
            total[out] = total.get(out, 0.0) + math.prod(probs[t][s] for t, s in enumerate(path))
    return {k: math.log(v) for k, v in total.items() if v > 0}


def test_length_bonus_picks_the_enumerated_best_of_log_p_plus_bonus_per_token():
    """Pure CTC with a beam wider than every prefix: the search must return the sequence s
    maximising log P(s) + bonus * (len(s) + 1) (eos counts), with exactly that score."""
    torch.manual_seed(11)
    T = 4
    log_probs = torch.log_softmax(torch.randn(1, T, 4, dtype=torch.float64) * 2, -1)
    exact = _exact_log_probs(log_probs[0].exp())
    picked = set()
    for bonus in (-3.0, 0.0, 1.0, 3.0):
        ranked = sorted(exact.items(), key=lambda kv: kv[1] + bonus * (len(kv[0]) + 1), reverse=True)
        (want, lp), (_, lp2) = ranked[0], ranked[1]
        assert lp + bonus * (len(want) + 1) > lp2 + bonus * (len(ranked[1][0]) + 1) + 1e-6  # a unique best
        hyp = beam_search(None, torch.zeros(1, T, 2), torch.tensor([T]), log_probs, EOS, EOS, 40, 1.0,
                          blank=BLANK, length_bonus=bonus)[0]
        assert tuple(hyp.tokens(EOS, EOS)) == want
        assert hyp.score == pytest.approx(lp + bonus * (len(want) + 1), abs=1e-5)  # scores are float32
        picked.add(want)
    assert len(picked) > 1  # the bonus changes the answer here, so the test can tell
    with pytest.raises(BadInputError, match="finite length_bonus"):
        beam_search(None, torch.zeros(1, T, 2), torch.tensor([T]), log_probs, EOS, EOS, 4, 1.0, length_bonus=math.nan)


def test_recognize_runs_on_an_encoded_batch():
    torch.manual_seed(0)
    model = build_expert(_tiny_av()).eval()
    video = torch.randn(2, 6, 1, 24, 24)
    audio = torch.randn(2, 6 * 640)
    with torch.no_grad():
        enc = model.encode(video, torch.tensor([6, 5]), audio, torch.tensor([3840, 3200]))
    hyps = recognize(model, enc, beam_size=3, ctc_weight=0.3)
    assert len(hyps) == 2 and all(len(h.yseq) <= 8 and h.yseq[-1] == 8 for h in hyps)
