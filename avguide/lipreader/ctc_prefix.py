"""CTC prefix scoring for joint CTC/attention beam search, vectorised over hypotheses.

For a prefix g (sos + tokens) and frames t = 0..T-1 the state holds the log forward
probabilities r_t^n(g) / r_t^b(g) that the first t+1 frames emit g ending in a non-blank / a
blank. Extending g by token c != eos (Watanabe et al., 2017):

    phi_t   = r_t^b(g) + [c == last(g)] ? 0 : r_t^n(g)        (as log-sum; only r^b if c repeats)
    r_t^n(h) = logaddexp(r_{t-1}^n(h), phi_{t-1}) + x_t(c),     r_0^n(h) = x_0(c) iff g = sos
    r_t^b(h) = logaddexp(r_{t-1}^b(h), r_{t-1}^n(h)) + x_t(blank)
    psi(h)  = logsumexp(r_0^n(h), phi_{t-1} + x_t(c) for t >= 1)       (prefix probability)
    psi(g + eos) = logaddexp(r_{T-1}^n(g), r_{T-1}^b(g))               (full-sequence probability)

Blank never extends a prefix (score :data:`LOGZERO`). Frames past an utterance's length are
padding: blank with probability 1 and every other token with :data:`LOGZERO`, so padded
utterances score exactly like unpadded ones. As in ESPnet, a prefix of n tokens is only
extended from frame max(n, 1) on (earlier frames cannot hold it), and tokens outside the
optional ``scoring_ids`` get :data:`LOGZERO`, except eos, which is always scored.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

LOGZERO = -1e10
"""Finite stand-in for log(0) (keeps differences of scores free of inf - inf)."""


@dataclass
class CTCPrefixInputs:
    """Per-utterance CTC posteriors prepared for prefix scoring.

    Attributes:
        x: (T, B, V) float log-probabilities with padding frames set to blank-only.
        blank_x: (T, B) float log-probability of blank per frame (0 on padding).
        last_frame: (B,) int64 index of each utterance's last valid frame.
        blank: blank id. eos: end id.
    """

    x: torch.Tensor
    blank_x: torch.Tensor
    last_frame: torch.Tensor
    blank: int
    eos: int


@dataclass
class CTCPrefixState:
    """Prefix state of N hypotheses.

    Attributes:
        r: (T, 2, N) float log forward probabilities (index 0 non-blank end, 1 blank end).
        score: (N,) float log prefix probability psi(g).
        last: (N,) int64 last token of g (sos for the empty prefix).
        utt: (N,) int64 utterance index (into :class:`CTCPrefixInputs`) of each hypothesis.
    """

    r: torch.Tensor
    score: torch.Tensor
    last: torch.Tensor
    utt: torch.Tensor


def prepare_ctc_inputs(log_probs: torch.Tensor, lengths: torch.Tensor, blank: int,
                       eos: int) -> CTCPrefixInputs:
    """Pad-aware CTC posteriors for :func:`ctc_prefix_scores`.

    Args:
        log_probs: (B, T, V) float CTC log-softmax outputs.
        lengths: (B,) int valid frames (>= 1).
        blank, eos: ids.
    Returns:
        :class:`CTCPrefixInputs`.
    """
    B, T, V = log_probs.shape
    pad = torch.arange(T, device=log_probs.device)[None, :] >= lengths[:, None].to(log_probs.device)
    x = log_probs.masked_fill(pad[:, :, None], LOGZERO)  # (B, T, V)
    x[..., blank] = x[..., blank].masked_fill(pad, 0.0)
    x = x.transpose(0, 1).contiguous()  # (T, B, V)
    return CTCPrefixInputs(x, x[:, :, blank], lengths.to(log_probs.device).long() - 1, blank, eos)


def initial_state(inputs: CTCPrefixInputs, utt: torch.Tensor, sos: int) -> CTCPrefixState:
    """State of the empty prefix (sos only) for hypotheses of utterances ``utt`` (N,)."""
    blank_cum = torch.cumsum(inputs.blank_x[:, utt], dim=0)  # (T, N)
    r = torch.stack([torch.full_like(blank_cum, LOGZERO), blank_cum], dim=1)  # (T, 2, N)
    zeros = blank_cum.new_zeros(len(utt))
    return CTCPrefixState(r, zeros, torch.full_like(utt, sos), utt)


def ctc_prefix_scores(inputs: CTCPrefixInputs, state: CTCPrefixState, n_tokens: int,
                      scoring_ids: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Log prefix probabilities of every one-token extension of N prefixes.

    Args:
        inputs: prepared posteriors (T frames, V tokens).
        state: the N prefixes (all with ``n_tokens`` tokens after sos).
        n_tokens: prefix length without sos (the beam-search step).
        scoring_ids: (N, P) int64 tokens to score per prefix, or None for all V.
    Returns:
        psi: (N, V) float log prefix probability psi(g + c) (absolute, not a difference);
            LOGZERO for blank and for tokens outside ``scoring_ids`` (eos is always scored).
        r: (T, 2, N, P) float forward probabilities of the scored extensions (P = V when
            ``scoring_ids`` is None), for :func:`select_state`.
    """
    T, _, V = inputs.x.shape
    N = state.r.shape[2]
    ids = scoring_ids if scoring_ids is not None else \
        torch.arange(V, device=inputs.x.device).expand(N, V)
    xc = inputs.x[:, state.utt.unsqueeze(1).expand_as(ids), ids]  # (T, N, P)
    xb = inputs.blank_x[:, state.utt].unsqueeze(2)  # (T, N, 1)
    r_sum = torch.logsumexp(state.r, dim=1)  # (T, N)
    repeat = (ids == state.last.unsqueeze(1)).unsqueeze(0)  # (1, N, P)
    phi = torch.where(repeat, state.r[:, 1].unsqueeze(2), r_sum.unsqueeze(2))  # (T, N, P)

    r = torch.full((T, 2) + ids.shape, LOGZERO, dtype=xc.dtype, device=xc.device)
    if n_tokens == 0:
        r[0, 0] = xc[0]
    start = max(n_tokens, 1)
    for t in range(start, T):
        r[t, 0] = torch.logaddexp(r[t - 1, 0], phi[t - 1]) + xc[t]
        r[t, 1] = torch.logaddexp(r[t - 1, 0], r[t - 1, 1]) + xb[t]
    terms = torch.cat([r[start - 1, 0].unsqueeze(0), phi[start - 1:T - 1] + xc[start:]], 0)
    psi_ids = torch.logsumexp(terms, dim=0)  # (N, P)

    psi = torch.full((N, V), LOGZERO, dtype=xc.dtype, device=xc.device)
    psi.scatter_(1, ids, psi_ids)
    rows = torch.arange(N, device=xc.device)
    psi[:, inputs.eos] = r_sum[inputs.last_frame[state.utt], rows]
    psi[:, inputs.blank] = LOGZERO
    return psi, r


def select_state(state: CTCPrefixState, psi: torch.Tensor, r: torch.Tensor,
                 scoring_ids: torch.Tensor | None, rows: torch.Tensor,
                 tokens: torch.Tensor) -> CTCPrefixState:
    """State of the chosen extensions g_rows + token.

    Args:
        state: the N prefixes that were scored.
        psi, r: outputs of :func:`ctc_prefix_scores` for ``state``.
        scoring_ids: the (N, P) ids passed to it, or None.
        rows: (M,) int64 prefix index of each chosen extension.
        tokens: (M,) int64 chosen token (eos or an unscored token gives a state that is
            never extended: its r is taken from column 0).
    Returns:
        :class:`CTCPrefixState` of M hypotheses.
    """
    if scoring_ids is None:
        col = tokens
    else:
        match = scoring_ids[rows] == tokens.unsqueeze(1)  # (M, P)
        col = torch.where(match.any(1), match.long().argmax(1), 0)
    return CTCPrefixState(r[:, :, rows, col], psi[rows, tokens], tokens, state.utt[rows])
