"""Decoding: greedy CTC and batched joint CTC/attention beam search (ESPnet semantics).

:func:`beam_search` decodes B utterances together, vectorised over (utterance x beam) rows,
and gives the same hypotheses as decoding each utterance alone. Per step i = 0, 1, ...:

1. score = (1 - w) * decoder log p(c | prefix) for every token c (skipped when w = 1);
2. pre-beam: with 0 < w < 1 only the int(1.5 * beam) best tokens by that score get a CTC score
   (plus eos, which is always scored); with w = 1 all tokens do;
3. score += w * (log psi_ctc(prefix + c) - log psi_ctc(prefix))   (skipped when w = 0),
   plus the prefix's running score; the best ``beam`` (prefix, c) pairs over the whole beam
   survive;
4. hypotheses that chose eos end; at the last step (i = T - 1, T = the utterance's encoder
   frames) eos is appended to every running hypothesis (without a score). ESPnet's end
   detection stops an utterance early when, for each of the last 3 lengths, the best ended
   hypothesis of that length is worse than the best overall by more than 10 (log domain).

No language model. The best ended hypothesis is returned. An optional length bonus (ESPnet's
``penalty``, 0 in Auto-AVSR) adds ``length_bonus`` to the score of every token chosen, eos included
(not the eos appended at the last step), so a hypothesis of n tokens + eos gains (n + 1) x bonus:
a positive bonus counters the search's preference for ending early (whole words deleted).

Optional CTC candidate pruning (``ctc_prune = p``, off by default, not in Auto-AVSR): each
utterance only considers the tokens whose CTC posterior reaches ``p`` in at least one of its
frames (plus eos). These candidates replace the decoder's pre-beam in step 2 and make a pure CTC
search (w = 1) cheap with a large vocabulary. A token left out has a prefix probability of at most
T * p (each CTC path emits it at some frame), so a small ``p`` loses next to nothing. It matters
when the decoder is weaker than the CTC head: its pre-beam can leave the token the audio says out
of reach of the CTC score.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from avguide.errors import BadInputError
from avguide.lipreader.ctc_prefix import (LOGZERO, CTCPrefixState, ctc_prefix_scores, initial_state,
                                          prepare_ctc_inputs, select_state)
from avguide.lipreader.decoder import TransformerDecoder
from avguide.lipreader.model import Encoded, LipReadingExpert

END_DETECT_LENGTHS = 3
END_DETECT_MARGIN = -10.0


@dataclass
class Hypothesis:
    """One decoded sequence.

    Attributes:
        yseq: token ids including the leading sos and the final eos (ESPnet layout).
        score: total weighted log score.
    """

    yseq: list[int]
    score: float

    def tokens(self, sos: int, eos: int) -> list[int]:
        """The ids between sos and eos (what a tokenizer decodes)."""
        return [t for t in self.yseq[1:] if t != eos and t != sos]


def ctc_greedy(log_probs: torch.Tensor, lengths: torch.Tensor, blank: int = 0) -> list[list[int]]:
    """Best-path CTC decoding: per-frame argmax, merge repeats, drop blanks.

    Args:
        log_probs: (B, T, V) float CTC (log-)probabilities.
        lengths: (B,) int valid frames.
        blank: blank id.
    Returns:
        B lists of token ids.
    """
    best = log_probs.argmax(-1).tolist()  # (B, T)
    out = []
    for row, n in zip(best, lengths.tolist()):
        seq, prev = [], None
        for tok in row[:n]:
            if tok != prev and tok != blank:
                seq.append(tok)
            prev = tok
        out.append(seq)
    return out


def _end_detected(ended: list[Hypothesis], i: int) -> bool:
    """ESPnet ``end_detect``: True when, for each of the lengths i, i-1, i-2 (yseq lengths),
    some ended hypothesis of that length exists and the best of them is more than 10 below the
    best ended score."""
    if not ended:
        return False
    best = max(h.score for h in ended)
    count = 0
    for m in range(END_DETECT_LENGTHS):
        same = [h.score for h in ended if len(h.yseq) == i - m]
        if same and max(same) - best < END_DETECT_MARGIN:
            count += 1
    return count == END_DETECT_LENGTHS


@torch.no_grad()
def beam_search(decoder: TransformerDecoder | None, memory: torch.Tensor,
                memory_lengths: torch.Tensor, ctc_log_probs: torch.Tensor | None, sos: int,
                eos: int, beam_size: int = 40, ctc_weight: float = 0.1,
                blank: int = 0, ctc_prune: float | None = None, length_bonus: float = 0.0) -> list[Hypothesis]:
    """Joint CTC/attention beam search over a padded batch.

    Args:
        decoder: the attention decoder (eval mode), or None when ``ctc_weight`` is 1.
        memory: (B, T, D) float decoder memory (encoder features, projected if the model
            has ``proj_decoder``).
        memory_lengths: (B,) int valid frames per utterance (>= 1); also the maximum number of
            decoding steps.
        ctc_log_probs: (B, T, V) float CTC log-probabilities, or None when ``ctc_weight`` is 0.
        sos, eos: start / end ids (the same id in Auto-AVSR).
        beam_size: hypotheses kept per utterance.
        ctc_weight: w in [0, 1]; the decoder gets 1 - w.
        blank: CTC blank id.
        ctc_prune: None (ESPnet semantics), or p in (0, 1): the tokens scored are those whose CTC
            posterior reaches p in some frame of the utterance (see the module docstring).
        length_bonus: added to the score per token chosen (eos included); finite.
    Returns:
        B :class:`Hypothesis`, the best ended one per utterance.
    Raises:
        BadInputError: inconsistent arguments (weight outside [0, 1], a missing scorer,
            zero-length utterances, beam_size < 1, ctc_prune outside (0, 1) or without CTC).
    """
    use_dec, use_ctc = ctc_weight < 1.0, ctc_weight > 0.0
    if not 0.0 <= ctc_weight <= 1.0 or beam_size < 1 or not math.isfinite(length_bonus):
        raise BadInputError(f"beam search: need ctc_weight in [0, 1], beam_size >= 1 and a finite length_bonus, "
                            f"got {ctc_weight}, {beam_size} and {length_bonus}")
    if (use_dec and decoder is None) or (use_ctc and ctc_log_probs is None):
        raise BadInputError(f"beam search: ctc_weight {ctc_weight} needs "
                            f"{'the decoder' if use_dec else 'CTC log-probabilities'}")
    B, T = memory.shape[:2]
    device = memory.device
    lengths = memory_lengths.to(device).long()
    if int(lengths.min()) < 1 or int(lengths.max()) > T:
        raise BadInputError(f"memory_lengths: must be in [1, {T}], got {lengths.tolist()}")
    if ctc_prune is not None and not (use_ctc and 0.0 < ctc_prune < 1.0):
        raise BadInputError(f"beam search: ctc_prune must be in (0, 1) and needs ctc_weight > 0, got "
                            f"{ctc_prune} with ctc_weight {ctc_weight}")
    V = ctc_log_probs.shape[-1] if use_ctc else decoder.output_layer.out_features
    K = beam_size
    candidates = ctc_candidates(ctc_log_probs, lengths, ctc_prune, blank, eos) if ctc_prune else None  # (B, C)
    pre_beam = int(1.5 * K) if (use_dec and use_ctc and int(1.5 * K) < V and candidates is None) else None

    # rows = (active utterance, beam slot); slot 0 holds the sos hypothesis at the start
    utt = torch.arange(B, device=device).repeat_interleave(K)  # (N,)
    score = torch.full((B, K), float("-inf"), device=device)
    score[:, 0] = 0.0
    score = score.view(-1)  # (N,)
    yseq = torch.full((B * K, 1), sos, dtype=torch.long, device=device)  # (N, 1)
    # a row never leaves its utterance's block of K rows, so memory is expanded once
    mem = memory.repeat_interleave(K, dim=0)  # (N, T, D)
    mem_mask = (torch.arange(T, device=device)[None, :] < lengths[utt, None]).unsqueeze(1)
    cache = None
    ctc_in = prepare_ctc_inputs(ctc_log_probs, lengths, blank, eos) if use_ctc else None
    ctc_state = initial_state(ctc_in, utt, sos) if use_ctc else None
    ended: list[list[Hypothesis]] = [[] for _ in range(B)]

    for i in range(T):
        N = len(utt)
        weighted = torch.zeros(N, V, device=device)
        if use_dec:
            logp, cache = decoder.step(yseq, mem, mem_mask, cache)
            weighted += (1.0 - ctc_weight) * logp
        ids = None
        if use_ctc:
            if candidates is not None:
                ids = candidates[utt]  # (N, C)
            else:
                ids = weighted.topk(pre_beam, dim=1).indices if pre_beam else None  # (N, P)
            psi, r = ctc_prefix_scores(ctc_in, ctc_state, i, ids)
            weighted += ctc_weight * (psi - ctc_state.score.unsqueeze(1))
            # blank and tokens outside the pre-beam get psi = LOGZERO; as a finite penalty it
            # would be refunded by the next step's difference (psi - score), so a beam wider than
            # the vocabulary would keep them: they are excluded outright
            weighted = weighted.masked_fill(psi <= LOGZERO, float("-inf"))
        weighted += score.unsqueeze(1) + length_bonus

        n_utt = N // K
        top = weighted.view(n_utt, K * V).topk(K, dim=1)  # per utterance over (slot, token)
        rows = (torch.arange(n_utt, device=device).unsqueeze(1) * K + top.indices // V).view(-1)
        tokens = (top.indices % V).view(-1)  # (N,)
        score = top.values.view(-1)
        yseq = torch.cat([yseq[rows], tokens.unsqueeze(1)], dim=1)  # (N, i+2)
        if use_dec:
            cache = [c[rows] for c in cache]
        if use_ctc:
            ctc_state = select_state(ctc_state, psi, r, ids, rows, tokens)
        utt = utt[rows]

        # post-process: collect ended hypotheses, stop finished utterances
        alive = torch.isfinite(score) & (tokens != eos)
        last_step = lengths[utt] - 1 == i
        seqs, scores_l = yseq.tolist(), score.tolist()
        fin, last_l, alive_l = torch.isfinite(score).tolist(), last_step.tolist(), alive.tolist()
        for n in range(N):
            if fin[n] and (last_l[n] or not alive_l[n]):
                seq = seqs[n] + [eos] if last_l[n] else seqs[n]
                ended[int(utt[n])].append(Hypothesis(seq, scores_l[n]))
        alive &= ~last_step
        score = score.masked_fill(~alive, float("-inf"))
        keep_utt = []
        for j in range(n_utt):
            b = int(utt[j * K])
            if alive[j * K:(j + 1) * K].any() and not _end_detected(ended[b], i):
                keep_utt.append(j)
        if not keep_utt:
            break
        if len(keep_utt) < n_utt:  # drop finished utterances' rows
            keep = (torch.tensor(keep_utt, device=device).unsqueeze(1) * K
                    + torch.arange(K, device=device)).view(-1)
            score, yseq, utt = score[keep], yseq[keep], utt[keep]
            mem, mem_mask = mem[keep], mem_mask[keep]
            if use_dec:
                cache = [c[keep] for c in cache]
            if use_ctc:
                ctc_state = CTCPrefixState(ctc_state.r[:, :, keep], ctc_state.score[keep],
                                           ctc_state.last[keep], ctc_state.utt[keep])
    # every utterance ends by its last step (i = length - 1) with at least one hypothesis
    return [max(h, key=lambda hyp: hyp.score) for h in ended]


def ctc_candidates(log_probs: torch.Tensor, lengths: torch.Tensor, threshold: float, blank: int,
                   eos: int) -> torch.Tensor:
    """Tokens whose CTC posterior reaches ``threshold`` in some valid frame, per utterance.

    Args:
        log_probs: (B, T, V) float CTC log-probabilities. lengths: (B,) int valid frames.
        threshold: posterior in (0, 1). blank, eos: ids (blank is never a candidate, eos always).
    Returns:
        (B, C) int64 ascending candidate ids, rows shorter than C padded with eos.
    """
    B, T, V = log_probs.shape
    valid = torch.arange(T, device=log_probs.device)[None, :] < lengths[:, None].to(log_probs.device)  # (B, T)
    peak = log_probs.masked_fill(~valid.unsqueeze(2), float("-inf")).amax(1)  # (B, V)
    keep = peak >= math.log(threshold)
    keep[:, blank] = False
    keep[:, eos] = True
    C = int(keep.sum(1).max())
    ids = torch.where(keep, torch.arange(V, device=keep.device), V).sort(1).values[:, :C]  # (B, C)
    return ids.masked_fill(ids == V, eos)


def recognize(model: LipReadingExpert, encoded: Encoded, beam_size: int = 40,
              ctc_weight: float = 0.1, ctc_prune: float | None = None, length_bonus: float = 0.0) -> list[Hypothesis]:
    """Beam-search an expert's encoded batch (Auto-AVSR defaults: beam 40, CTC weight 0.1).

    Args:
        model: the expert (put it in eval mode first).
        encoded: ``model.encode(...)`` output for B utterances.
        beam_size, ctc_weight, ctc_prune, length_bonus: see :func:`beam_search`.
    Returns:
        B best :class:`Hypothesis`; ``hyp.tokens(model.sos, model.eos)`` gives the ids.
    """
    use_ctc = ctc_weight > 0.0 and model.ctc is not None
    return beam_search(model.decoder if ctc_weight < 1.0 else None,
                       model.decoder_memory(encoded) if model.decoder is not None else
                       encoded.features, encoded.lengths,
                       model.ctc_log_probs(encoded) if use_ctc else None,
                       model.sos, model.eos, beam_size, ctc_weight, model.blank, ctc_prune if use_ctc else None,
                       length_bonus)
