"""Conformer encoder of the expert (ESPnet / Auto-AVSR layout and parameter names).

encoder(x) = after_norm(blocks(embed(frontend(x)))), where ``embed`` is Linear(D_front, adim)
scaled by sqrt(adim) with relative sinusoids, and each macaron block is (pre-LN, eps 1e-12):

    x = x + 0.5 * FFN(LN(x));  x = x + MHSA_rel(LN(x));  x = x + Conv(LN(x))
    x = x + 0.5 * FFN(LN(x));  x = LN_final(x)

As in Auto-AVSR, the convolution module does not mask padded frames (a padded utterance's
features depend slightly on its padding); attention does mask them.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from avguide.lipreader.attention import MultiHeadedAttention, relative_position_table
from avguide.lipreader.frontends import Swish

LN_EPS = 1e-12


class FeedForward(nn.Module):
    """Linear -> ReLU -> dropout -> Linear (``w_1``, ``w_2``): (..., D) -> (..., D)."""

    def __init__(self, dim: int, hidden: int, dropout: float):
        super().__init__()
        self.w_1 = nn.Linear(dim, hidden)
        self.w_2 = nn.Linear(hidden, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w_2(self.dropout(torch.relu(self.w_1(x))))


class ConvolutionModule(nn.Module):
    """Pointwise (2D) -> GLU -> depthwise (kernel k) -> BatchNorm -> Swish -> pointwise (D).

    Parameter names keep Auto-AVSR's spelling ``pointwise_cov1`` / ``pointwise_cov2``.
    """

    def __init__(self, dim: int, kernel: int):
        super().__init__()
        self.pointwise_cov1 = nn.Conv1d(dim, 2 * dim, 1)
        self.depthwise_conv = nn.Conv1d(dim, dim, kernel, padding=(kernel - 1) // 2, groups=dim)
        self.norm = nn.BatchNorm1d(dim)
        self.pointwise_cov2 = nn.Conv1d(dim, dim, 1)
        self.activation = Swish()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, D) -> (B, T, D)."""
        x = nn.functional.glu(self.pointwise_cov1(x.transpose(1, 2)), dim=1)  # (B, D, T)
        x = self.activation(self.norm(self.depthwise_conv(x)))
        return self.pointwise_cov2(x).transpose(1, 2)  # (B, T, D)


class ConformerLayer(nn.Module):
    """One macaron Conformer block (see module docstring)."""

    def __init__(self, dim: int, heads: int, ffn_dim: int, kernel: int, dropout: float,
                 attn_dropout: float):
        super().__init__()
        self.self_attn = MultiHeadedAttention(heads, dim, attn_dropout, relative=True)
        self.feed_forward = FeedForward(dim, ffn_dim, dropout)
        self.conv_module = ConvolutionModule(dim, kernel)
        self.norm_ff = nn.LayerNorm(dim, eps=LN_EPS)
        self.norm_mha = nn.LayerNorm(dim, eps=LN_EPS)
        self.feed_forward_macaron = FeedForward(dim, ffn_dim, dropout)
        self.norm_ff_macaron = nn.LayerNorm(dim, eps=LN_EPS)
        self.norm_conv = nn.LayerNorm(dim, eps=LN_EPS)
        self.norm_final = nn.LayerNorm(dim, eps=LN_EPS)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, pos_emb: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: (B, T, D). pos_emb: (2T-1, D). mask: (B, 1, T) bool, True = valid frame.
        Returns:
            (B, T, D).
        """
        x = x + 0.5 * self.dropout(self.feed_forward_macaron(self.norm_ff_macaron(x)))
        h = self.norm_mha(x)
        x = x + self.dropout(self.self_attn(h, h, h, mask, pos_emb))
        x = x + self.dropout(self.conv_module(self.norm_conv(x)))
        x = x + 0.5 * self.dropout(self.feed_forward(self.norm_ff(x)))
        return self.norm_final(x)


class ConformerEncoder(nn.Module):
    """Front-end + Conformer blocks: raw modality input -> (B, T, adim).

    Args (constructor):
        frontend: module mapping the input to (B, T, D_front); must expose ``out_dim``.
        dim, heads, ffn_dim, layers, kernel: adim, aheads, eunits, elayers, cnn_module_kernel.
        dropout: dropout after each sub-block and on the scaled embedding.
        attn_dropout: dropout on attention probabilities.
    """

    def __init__(self, frontend: nn.Module, dim: int, heads: int, ffn_dim: int, layers: int,
                 kernel: int, dropout: float, attn_dropout: float):
        super().__init__()
        self.frontend = frontend
        self.embed = nn.Sequential(nn.Linear(frontend.out_dim, dim))
        self.embed_dropout = nn.Dropout(dropout)
        self.encoders = nn.ModuleList(
            ConformerLayer(dim, heads, ffn_dim, kernel, dropout, attn_dropout) for _ in range(layers))
        self.after_norm = nn.LayerNorm(dim, eps=LN_EPS)
        self.dim = dim

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: front-end input ((B, T, 1, H, W) video or (B, L) audio), already normalised.
            mask: (B, 1, T) bool, True = valid output frame.
        Returns:
            (B, T, adim) float encoder features.
        """
        x = self.embed(self.frontend(x)) * math.sqrt(self.dim)  # (B, T, adim)
        T = x.shape[1]
        pos_emb = self.embed_dropout(relative_position_table(T, self.dim).to(x))  # (2T-1, adim)
        x = self.embed_dropout(x)
        for layer in self.encoders:
            x = layer(x, pos_emb, mask)
        return self.after_norm(x)
