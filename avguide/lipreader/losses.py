"""Training criteria of the expert (Auto-AVSR / ESPnet definitions).

- CTC: summed over the batch (zero_infinity) and divided by the batch size. An utterance whose
  target needs more frames than the encoder gives it (:func:`ctc_frames_needed`) has no CTC
  alignment at all; its loss is 0, so :func:`ctc_unfit` counts such utterances for the logs
  and :func:`warn_ctc_unfit` tells a training run what that means.
- Attention: label-smoothing KL divergence, summed over non-ignored tokens and divided by the
  batch size (not the token count), for decoder inputs [sos] + y and targets y + [eos].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_ID = -1


def ctc_loss(log_probs: torch.Tensor, lengths: torch.Tensor, targets: torch.Tensor,
             blank: int = 0) -> torch.Tensor:
    """Batch-averaged CTC loss.

    Args:
        log_probs: (B, T, odim) float log-softmax outputs.
        lengths: (B,) int valid frames.
        targets: (B, S) int64 token ids padded with -1.
        blank: blank id.
    Returns:
        () float: sum of per-utterance negative log-likelihoods / B (infinite ones -> 0).
    """
    valid = targets != IGNORE_ID
    loss = F.ctc_loss(log_probs.transpose(0, 1), targets[valid], lengths, valid.sum(1),
                      blank=blank, reduction="sum", zero_infinity=True)
    return loss / log_probs.shape[0]


def ctc_frames_needed(targets: torch.Tensor) -> torch.Tensor:
    """Fewest frames that admit a CTC alignment of each target: its length plus one blank
    between each pair of equal neighbours ("HELLO" needs 6).

    Args:
        targets: (B, S) int64 token ids padded with -1.
    Returns:
        (B,) int64 frames.
    """
    valid = targets != IGNORE_ID  # (B, S)
    repeats = (targets[:, 1:] == targets[:, :-1]) & valid[:, 1:]  # (B, S-1)
    return valid.sum(1) + repeats.sum(1)


def ctc_unfit(lengths: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(B,) bool: utterances whose target has no CTC alignment in ``lengths`` frames (their CTC
    loss is zeroed), e.g. a character tokeniser on speech faster than the 25 fps encoder allows.

    Args:
        lengths: (B,) int valid encoder frames. targets: (B, S) int64 ids padded with -1.
    """
    return ctc_frames_needed(targets) > lengths.to(targets.device)


def add_sos_eos(targets: torch.Tensor, sos: int, eos: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Decoder inputs and outputs from padded targets.

    Args:
        targets: (B, S) int64 ids padded with -1.
        sos, eos: start / end ids.
    Returns:
        ys_in (B, S+1): [sos] + y, padded with eos; ys_out (B, S+1): y + [eos], padded with -1.
    """
    B = targets.shape[0]
    lengths = (targets != IGNORE_ID).sum(1)  # (B,)
    col = torch.arange(targets.shape[1] + 1, device=targets.device).unsqueeze(0)  # (1, S+1)
    body = torch.cat([targets, targets.new_full((B, 1), IGNORE_ID)], 1)  # (B, S+1)
    ys_out = torch.where(col < lengths[:, None], body, IGNORE_ID)
    ys_out = torch.where(col == lengths[:, None], eos, ys_out)
    ys_in = torch.cat([targets.new_full((B, 1), sos), ys_out[:, :-1]], 1)
    ys_in = torch.where(ys_in == IGNORE_ID, eos, ys_in)
    return ys_in, ys_out


def label_smoothing_loss(logits: torch.Tensor, targets: torch.Tensor,
                         smoothing: float) -> torch.Tensor:
    """KL(q || softmax(logits)) with q = 1 - smoothing on the target, smoothing / (odim - 1)
    elsewhere; summed over non-ignored positions, divided by the batch size.

    Args:
        logits: (B, S, odim) float.
        targets: (B, S) int64, -1 = ignore.
        smoothing: label smoothing weight in [0, 1).
    Returns:
        () float loss.
    """
    B, S, V = logits.shape
    logp = torch.log_softmax(logits.reshape(B * S, V), dim=-1)  # (B*S, V)
    tgt = targets.reshape(-1)
    keep = tgt != IGNORE_ID
    logp, tgt = logp[keep], tgt[keep]
    off = smoothing / (V - 1)
    conf = 1.0 - smoothing
    # sum_v q_v log q_v - sum_v q_v log p_v, with q = off everywhere except conf at the target
    entropy_term = (V - 1) * off * (torch.log(torch.tensor(off)) if off > 0 else 0.0) \
        + conf * torch.log(torch.tensor(conf))
    cross = off * logp.sum(-1) + (conf - off) * logp.gather(1, tgt[:, None]).squeeze(1)
    return (entropy_term * len(tgt) - cross.sum()) / B


def token_accuracy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Fraction of non-ignored positions whose argmax equals the target.

    Args:
        logits: (B, S, odim) float. targets: (B, S) int64, -1 = ignore.
    Returns:
        () float in [0, 1] (NaN when every position is ignored).
    """
    keep = targets != IGNORE_ID
    return (logits.argmax(-1)[keep] == targets[keep]).float().mean()


def warn_ctc_unfit(share: float, tokenizer: str, note: str = "") -> None:
    """Say when training targets do not fit the 25 fps encoder (their CTC loss is 0).

    Args:
        share: the share of the epoch's training recordings whose targets do not fit.
        tokenizer: the expert's tokeniser name ("char" adds the remedy, tokenizer=spm).
        note: what that means for this stage, appended to the message.
    """
    if share > 0:
        remedy = " A subword tokeniser needs about 4x fewer tokens: tokenizer=spm." if tokenizer == "char" else ""
        print(f"warning: {share:.1%} of the training recordings have more {tokenizer} tokens (plus one blank "
              f"between repeated tokens) than encoder frames at 25 fps, so CTC cannot align them and their CTC "
              f"loss is 0 (metrics.jsonl: train_ctc_unfit).{' ' + note if note else ''}{remedy}", flush=True)
