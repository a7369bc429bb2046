"""Transformer decoder of the expert (ESPnet / Auto-AVSR layout and parameter names).

Token embedding scaled by sqrt(ddim) plus absolute sinusoids, pre-LN layers (self-attention,
source attention over the encoder features, ReLU FFN), ``after_norm``, ``output_layer``.
:meth:`TransformerDecoder.step` scores only the newest token of each prefix, reusing each
layer's outputs for the earlier positions (a cache), for beam search.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from avguide.lipreader.attention import MultiHeadedAttention, sinusoid_table
from avguide.lipreader.conformer import LN_EPS, FeedForward


def causal_mask(size: int, device: torch.device | None = None) -> torch.Tensor:
    """(size, size) bool lower-triangular mask: position i may attend to j <= i."""
    return torch.ones(size, size, dtype=torch.bool, device=device).tril()


class DecoderLayer(nn.Module):
    """Pre-LN decoder layer: self-attention, source attention, feed-forward."""

    def __init__(self, dim: int, heads: int, ffn_dim: int, dropout: float, attn_dropout: float):
        super().__init__()
        self.self_attn = MultiHeadedAttention(heads, dim, attn_dropout)
        self.src_attn = MultiHeadedAttention(heads, dim, attn_dropout)
        self.feed_forward = FeedForward(dim, ffn_dim, dropout)
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.norm3 = nn.LayerNorm(dim, eps=LN_EPS)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, x_mask: torch.Tensor, memory: torch.Tensor,
                memory_mask: torch.Tensor | None, last_only: bool = False) -> torch.Tensor:
        """
        Args:
            x: (B, S, D) layer input. x_mask: (B or 1, S, S) bool self-attention mask.
            memory: (B, T, D) encoder features. memory_mask: (B, 1, T) bool or None.
            last_only: compute only the last position (incremental decoding).
        Returns:
            (B, S, D), or (B, 1, D) when ``last_only``.
        """
        h = self.norm1(x)
        q, residual = (h[:, -1:], x[:, -1:]) if last_only else (h, x)
        q_mask = x_mask[:, -1:] if last_only else x_mask
        x = residual + self.dropout(self.self_attn(q, h, h, q_mask))
        h = self.norm2(x)
        x = x + self.dropout(self.src_attn(h, memory, memory, memory_mask))
        return x + self.dropout(self.feed_forward(self.norm3(x)))


class TransformerDecoder(nn.Module):
    """Attention decoder: (prefix tokens, encoder features) -> next-token logits."""

    def __init__(self, odim: int, dim: int, heads: int, ffn_dim: int, layers: int,
                 dropout: float, attn_dropout: float):
        super().__init__()
        self.embed = nn.Sequential(nn.Embedding(odim, dim))
        self.embed_dropout = nn.Dropout(dropout)
        self.decoders = nn.ModuleList(
            DecoderLayer(dim, heads, ffn_dim, dropout, attn_dropout) for _ in range(layers))
        self.after_norm = nn.LayerNorm(dim, eps=LN_EPS)
        self.output_layer = nn.Linear(dim, odim)
        self.dim = dim

    def _embed(self, tokens: torch.Tensor) -> torch.Tensor:
        S = tokens.shape[1]
        pe = sinusoid_table(torch.arange(S), self.dim).to(self.embed[0].weight)  # (S, D)
        return self.embed_dropout(self.embed(tokens) * math.sqrt(self.dim) + pe)

    def forward(self, tokens: torch.Tensor, memory: torch.Tensor,
                memory_mask: torch.Tensor | None) -> torch.Tensor:
        """Teacher-forced logits.

        Args:
            tokens: (B, S) int64 input ids ([sos] + y, padded with any valid id).
            memory: (B, T, D) encoder features.
            memory_mask: (B, 1, T) bool, True = valid frame; None = all valid.
        Returns:
            (B, S, odim) float logits; position s sees tokens[:, :s+1] only.
        """
        x = self._embed(tokens)  # (B, S, D)
        mask = causal_mask(tokens.shape[1], tokens.device).unsqueeze(0)  # (1, S, S)
        for layer in self.decoders:
            x = layer(x, mask, memory, memory_mask)
        return self.output_layer(self.after_norm(x))

    def step(self, tokens: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor | None,
             cache: list[torch.Tensor] | None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Log-probabilities of the next token after each prefix (incremental).

        Args:
            tokens: (N, S) int64 prefixes (all of length S, starting with sos).
            memory: (N, T, D) encoder features for each prefix.
            memory_mask: (N, 1, T) bool or None.
            cache: per layer (N, S-1, D) outputs for ``tokens[:, :-1]`` from the previous call,
                or None (computes from scratch).
        Returns:
            ((N, odim) float log-probabilities, new cache: per layer (N, S, D)).
        """
        x = self._embed(tokens)  # (N, S, D)
        mask = causal_mask(tokens.shape[1], tokens.device).unsqueeze(0)  # (1, S, S)
        new_cache = []
        for i, layer in enumerate(self.decoders):
            if cache is None:
                x = layer(x, mask, memory, memory_mask)
            else:
                x = torch.cat([cache[i], layer(x, mask, memory, memory_mask, last_only=True)], 1)
            new_cache.append(x)
        return torch.log_softmax(self.output_layer(self.after_norm(x[:, -1])), dim=-1), new_cache
