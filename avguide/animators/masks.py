"""Attention masks and positional encodings shared by FaceFormer and CodeTalker.

All builders take the sequence length as an argument and work for any length (no 600-frame
table): the biased mask is computed from the frame distance, the positional encoding is periodic.

Masks are *additive float* masks (0 = allowed, -inf = blocked, other values = bias) in the layout
``torch.nn.MultiheadAttention`` expects for ``attn_mask``: ``(H, T, S)`` per head, repeated to
``(B*H, T, S)`` for a batch with :func:`repeat_for_batch`.
"""

from __future__ import annotations

import math

import torch


def alibi_slopes(n_heads: int) -> torch.Tensor:
    """Per-head slopes of the ALiBi-style temporal bias (Press et al. 2022, as used by FaceFormer).

    For a power of two ``n``, slope ``h`` is ``2 ** (-8 (h + 1) / n)``: 4 heads give
    1/4, 1/16, 1/64, 1/256; 8 heads give 1/2 ... 1/256. Other counts take the slopes of the
    next lower power of two and interleave extra ones from the next higher power, like ALiBi.

    Args:
        n_heads: number of attention heads (>= 1).
    Returns:
        ``(H,)`` float32 slopes.
    """
    assert n_heads >= 1

    def power_of_two(n: int) -> list[float]:
        start = 2.0 ** (-8.0 / n)
        return [start ** (i + 1) for i in range(n)]

    if math.log2(n_heads).is_integer():
        slopes = power_of_two(n_heads)
    else:
        low = 2 ** math.floor(math.log2(n_heads))
        slopes = power_of_two(low) + power_of_two(2 * low)[0::2][: n_heads - low]
    return torch.tensor(slopes, dtype=torch.float32)


def distance_bias(n_frames: int, n_heads: int, period: int, context: int = 0) -> torch.Tensor:
    """Bias as a function of the frame distance ``d`` only: ``-floor(d / period) * slope_h``.

    Args:
        n_frames: number of distances 0 .. n_frames-1.
        n_heads: heads (slopes from :func:`alibi_slopes`).
        period: frames per bias step (FaceFormer: the motion fps).
        context: > 0: keys more than ``context`` frames away are blocked (-inf), so attention
            reads a bounded window and streaming keeps constant memory; 0: no limit.
    Returns:
        ``(H, n_frames)`` float32; entry ``[h, d]`` is the bias of a key ``d`` frames away.
    """
    d = torch.arange(n_frames)
    steps = torch.div(d, period, rounding_mode="floor").to(torch.float32)  # (n_frames,)
    table = -alibi_slopes(n_heads)[:, None] * steps[None, :]
    if context > 0:
        table[:, context + 1:] = float("-inf")
    return table


def biased_mask(n_frames: int, n_heads: int, period: int, causal: bool = True, context: int = 0) -> torch.Tensor:
    """FaceFormer's temporal self-attention mask with ALiBi-like periodic bias.

    Entry ``[h, i, j] = -floor(|i - j| / period) * slope_h``; with ``causal`` the future
    (``j > i``) is ``-inf``, with ``context > 0`` so is every key more than ``context`` frames away.

    Args:
        n_frames: sequence length T (any length).
        n_heads: attention heads H.
        period: bias period in frames.
        causal: block keys after the query (decoders) or not (the VQ-VAE encoder).
        context: attention window in frames (0: unlimited).
    Returns:
        ``(H, T, T)`` float32 additive mask.
    """
    table = distance_bias(n_frames, n_heads, period, context)  # (H, T) indexed by distance
    idx = torch.arange(n_frames)
    dist = (idx[:, None] - idx[None, :]).abs()  # (T, T)
    mask = table[:, dist]  # (H, T, T)
    if causal:
        future = idx[None, :] > idx[:, None]  # (T, T)
        mask = mask.masked_fill(future[None], float("-inf"))
    return mask


def alignment_mask(n_frames: int, n_audio: int, ratio: int) -> torch.Tensor:
    """Cross-attention alignment mask: motion frame ``i`` sees audio frames ``ratio*i .. ratio*i+ratio-1``.

    ``ratio`` 1 is FaceFormer's VOCASET case (audio features at the motion fps), 2 its BIWI case
    (50 Hz features for 25 fps motion).

    Args:
        n_frames: motion frames T.
        n_audio: audio feature frames S (>= ratio * T).
        ratio: audio frames per motion frame (>= 1).
    Returns:
        ``(T, S)`` float32 additive mask (0 allowed, -inf blocked).
    Raises:
        ValueError: ``n_audio < ratio * n_frames``.
    """
    if n_audio < ratio * n_frames:
        raise ValueError(f"alignment_mask: {n_audio} audio frames cannot cover {n_frames} motion "
                         f"frames at {ratio} audio frames per motion frame")
    owner = torch.div(torch.arange(n_audio), ratio, rounding_mode="floor")  # (S,)
    allowed = owner[None, :] == torch.arange(n_frames)[:, None]  # (T, S)
    return torch.zeros(n_frames, n_audio).masked_fill(~allowed, float("-inf"))


def repeat_for_batch(mask: torch.Tensor, batch: int) -> torch.Tensor:
    """``(H, T, S)`` per-head mask -> ``(B*H, T, S)`` as ``nn.MultiheadAttention`` wants (batch-major)."""
    return mask.repeat(batch, 1, 1)


def periodic_encoding(n_frames: int, dim: int, period: int) -> torch.Tensor:
    """FaceFormer's periodic positional encoding: sinusoids of ``pos mod period``.

    ``pe[t, 2k] = sin(p * w_k)``, ``pe[t, 2k+1] = cos(p * w_k)`` with ``p = t mod period`` and
    ``w_k = 10000 ** (-2k / dim)``.

    Args:
        n_frames: length T (any).
        dim: feature width D (even).
        period: repetition period in frames.
    Returns:
        ``(T, D)`` float32 table to add to the ``(B, T, D)`` inputs.
    """
    assert dim % 2 == 0, "periodic_encoding needs an even width"
    pos = (torch.arange(n_frames) % period).to(torch.float32)[:, None]  # (T, 1)
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(n_frames, dim)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)
    return pe


def padding_mask(lengths: torch.Tensor, n_frames: int) -> torch.Tensor:
    """Boolean validity mask from per-sequence lengths.

    Args:
        lengths: ``(B,)`` integer lengths.
        n_frames: padded length T.
    Returns:
        ``(B, T)`` bool, True on valid frames.
    """
    return torch.arange(n_frames, device=lengths.device)[None, :] < lengths[:, None]
