"""Multi-head attention (absolute and ESPnet-style relative-position) and sinusoid tables.

Parameter names follow ESPnet / Auto-AVSR (``linear_q``, ``linear_k``, ``linear_v``,
``linear_out``; relative attention adds ``linear_pos``, ``pos_bias_u``, ``pos_bias_v``).
Masks are boolean, True = may attend; masked scores get the dtype's minimum before the softmax
and masked probabilities are zeroed afterwards (so fully masked rows give zeros, not NaN).
"""

from __future__ import annotations

import math

import torch
from torch import nn


def sinusoid_table(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """Transformer sinusoids: even channels sin(p * w_i), odd channels cos(p * w_i).

    Args:
        positions: (N,) float positions (may be negative).
        dim: even channel count D.
    Returns:
        (N, D) float32 table with w_i = 10000^(-2i / D).
    """
    freqs = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * -(math.log(10000.0) / dim))
    angles = positions.float().unsqueeze(1) * freqs  # (N, D/2)
    table = torch.zeros(len(positions), dim)
    table[:, 0::2] = torch.sin(angles)
    table[:, 1::2] = torch.cos(angles)
    return table


def relative_position_table(length: int, dim: int) -> torch.Tensor:
    """Relative-position sinusoids for a sequence of ``length`` frames (ESPnet 'latest').

    Args:
        length: T.
        dim: D.
    Returns:
        (2T-1, D) float32; row m encodes relative position (T-1-m), i.e. T-1 down to -(T-1).
    """
    return sinusoid_table(torch.arange(length - 1, -length, -1), dim)


def _masked_softmax(scores: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Softmax over the last axis; ``mask`` (B, 1 or Tq, Tk) bool broadcast over heads."""
    if mask is None:
        return torch.softmax(scores, dim=-1)
    blocked = ~mask.unsqueeze(1)  # (B, 1, *, Tk)
    scores = scores.masked_fill(blocked, torch.finfo(scores.dtype).min)
    return torch.softmax(scores, dim=-1).masked_fill(blocked, 0.0)


class MultiHeadedAttention(nn.Module):
    """Scaled dot-product attention with ``heads`` heads of width ``dim // heads``.

    With ``relative=True`` it is Transformer-XL style self-attention with relative positions
    (ESPnet 'latest'): score(i, j) = [(q_i + u) . k_j + (q_i + v) . p_{i-j}] / sqrt(d_k), p the
    projected relative sinusoid of offset i - j, u / v learned per-head biases
    (``pos_bias_u`` / ``pos_bias_v``).
    """

    def __init__(self, heads: int, dim: int, dropout: float, relative: bool = False):
        super().__init__()
        assert dim % heads == 0
        self.h, self.d_k = heads, dim // heads
        if relative:
            self.pos_bias_u = nn.Parameter(torch.empty(heads, dim // heads))
            self.pos_bias_v = nn.Parameter(torch.empty(heads, dim // heads))
            nn.init.xavier_uniform_(self.pos_bias_u)
            nn.init.xavier_uniform_(self.pos_bias_v)
        self.linear_q = nn.Linear(dim, dim)
        self.linear_k = nn.Linear(dim, dim)
        self.linear_v = nn.Linear(dim, dim)
        self.linear_out = nn.Linear(dim, dim)
        self.linear_pos = nn.Linear(dim, dim, bias=False) if relative else None
        self.dropout = nn.Dropout(dropout)

    def _heads(self, x: torch.Tensor, linear: nn.Linear) -> torch.Tensor:
        return linear(x).view(x.shape[0], -1, self.h, self.d_k).transpose(1, 2)  # (B, h, T, d_k)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                mask: torch.Tensor | None, pos_emb: torch.Tensor | None = None) -> torch.Tensor:
        """
        Args:
            query: (B, Tq, D); key, value: (B, Tk, D) (relative: all three the same (B, T, D)).
            mask: (B, 1 or Tq, Tk) bool, True = attend; None = no mask.
            pos_emb: relative attention only: (2T-1, D) from :func:`relative_position_table`.
        Returns:
            (B, Tq, D).
        """
        k, v = self._heads(key, self.linear_k), self._heads(value, self.linear_v)  # (B, h, Tk, d_k)
        if self.linear_pos is None:
            q = self._heads(query, self.linear_q)  # (B, h, Tq, d_k)
            scores = torch.matmul(q, k.transpose(-2, -1))  # (B, h, Tq, Tk)
        else:
            T = query.shape[1]
            q = self.linear_q(query).view(query.shape[0], T, self.h, self.d_k)  # (B, T, h, d_k)
            p = self.linear_pos(pos_emb).view(-1, self.h, self.d_k).transpose(0, 1)  # (h, 2T-1, d_k)
            content = torch.matmul((q + self.pos_bias_u).transpose(1, 2), k.transpose(-2, -1))
            position = torch.matmul((q + self.pos_bias_v).transpose(1, 2), p.transpose(-2, -1))
            # position[..., i, m] scores offset T-1-m; offset i-j sits at m = T-1-i+j
            ar = torch.arange(T, device=query.device)
            idx = (T - 1) - ar[:, None] + ar[None, :]  # (T, T)
            position = position.gather(-1, idx.expand(*position.shape[:2], T, T))  # (B, h, T, T)
            scores = content + position
        attn = self.dropout(_masked_softmax(scores / math.sqrt(self.d_k), mask))
        x = torch.matmul(attn, v).transpose(1, 2)  # (B, Tq, h, d_k)
        return self.linear_out(x.reshape(x.shape[0], x.shape[1], self.h * self.d_k))  # (B, Tq, D)
