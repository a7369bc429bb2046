"""Key/value-cached incremental steps for ``nn.TransformerDecoderLayer`` / ``nn.TransformerEncoderLayer``.

The animators' reference forward runs the torch layers over a whole sequence with a causal
biased mask. Autoregressive decoding with that forward re-runs the whole prefix every frame
(O(T^2) layer calls). The functions here are a separate implementation of the *same* layers
(same parameters, post-norm, ``batch_first``) that process one new frame, reusing the keys and
values of earlier frames from a :class:`KVCache`: O(T) layer calls in total. Tests check that
both give the same frames.

Inference preallocates the cache (no copies); with autograd enabled (autoregressive training)
the cache grows by concatenation so every step stays differentiable.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class KVCache:
    """Keys and values of one attention layer for the latest frames (all of them, or a window).

    Args:
        capacity: preallocate this many frames (inference); ``None`` grows by concatenation
            (keeps the autograd graph; use when training through the cache).
        window: > 0: keep only the latest ``window`` frames (the attention window plus the
            current frame); older ones slide out, so memory stays constant. 0: keep all.
            Preallocated, the buffer holds twice the window: the kept frames move back to its
            start once per ``window`` frames instead of shifting by one every frame.
    """

    def __init__(self, capacity: int | None = None, window: int = 0):
        self.capacity = min(capacity, window) if capacity is not None and window else capacity
        self.window = window
        self.k: torch.Tensor | None = None  # (B, H, cap or 2 cap or n, dh)
        self.v: torch.Tensor | None = None
        self.start = 0  # preallocated: the kept frames are k[:, :, start: start + n]
        self.n = 0

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Add one frame's ``(B, H, 1, dh)`` key and value; return the kept keys/values, oldest first,
        ``(B, H, n, dh)``."""
        if self.capacity is None:
            self.k = k if self.k is None else torch.cat([self.k, k], dim=2)
            self.v = v if self.v is None else torch.cat([self.v, v], dim=2)
            if self.window:
                self.k, self.v = self.k[:, :, -self.window:], self.v[:, :, -self.window:]
            self.n = self.k.shape[2]
            return self.k, self.v
        if self.k is None:
            shape = (k.shape[0], k.shape[1], self.capacity * (2 if self.window else 1), k.shape[3])
            self.k = k.new_empty(shape)
            self.v = v.new_empty(shape)
        if self.n == self.capacity:
            assert self.window, "KVCache full"
            self.start += 1  # the oldest frame leaves the window
            self.n -= 1
        end = self.start + self.n
        if end == self.k.shape[2]:  # no room after the window: move it to the buffer's start
            self.k[:, :, : self.n] = self.k[:, :, self.start: end].clone()
            self.v[:, :, : self.n] = self.v[:, :, self.start: end].clone()
            self.start, end = 0, self.n
        self.k[:, :, end] = k[:, :, 0]
        self.v[:, :, end] = v[:, :, 0]
        self.n += 1
        return self.k[:, :, self.start: end + 1], self.v[:, :, self.start: end + 1]


def _dropout(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``module(x)`` for a layer's dropout; in eval mode the identity, without the module call
    (the steps run once per frame, where a module call costs more than the layer's arithmetic)."""
    return module(x) if module.training else x


def _norm(norm: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    """``norm(x)``, functionally (the same computation, no module call)."""
    return F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps)


def _linear(linear: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """``linear(x)``, functionally."""
    return F.linear(x, linear.weight, linear.bias)


def _project(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, heads: int) -> torch.Tensor:
    """``(B, N, D) -> (B, H, N, dh)`` linear projection split into heads."""
    b, n, d = x.shape
    return F.linear(x, weight, bias).view(b, n, heads, d // heads).transpose(1, 2)  # (B, H, N, dh)


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None,
            attn: nn.MultiheadAttention) -> torch.Tensor:
    """Scaled dot-product attention of ``(B, H, 1, dh)`` queries, merged heads + output projection."""
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])  # (B, H, 1, n)
    if bias is not None:
        scores = scores + bias
    weights = torch.softmax(scores, dim=-1)
    if attn.training and attn.dropout > 0:
        weights = F.dropout(weights, attn.dropout)
    out = weights @ v  # (B, H, 1, dh)
    b, h, _, dh = out.shape
    out = out.transpose(1, 2).reshape(b, 1, h * dh)  # (B, 1, D)
    return _linear(attn.out_proj, out)


def self_attention_step(attn: nn.MultiheadAttention, x: torch.Tensor, cache: KVCache,
                        bias: torch.Tensor) -> torch.Tensor:
    """Self-attention of one new frame over itself and the cached past.

    Args:
        attn: the layer's ``nn.MultiheadAttention`` (packed in-projection, batch_first).
        x: ``(B, 1, D)`` the new frame's input.
        cache: this layer's cache; the new key/value are appended.
        bias: ``(H, 1, n)`` additive bias for keys 0..n-1 (n = frames including this one).
    Returns:
        ``(B, 1, D)`` attention output (after ``out_proj``).
    """
    d = x.shape[-1]
    w, b = attn.in_proj_weight, attn.in_proj_bias
    h = attn.num_heads
    qkv = F.linear(x, w, b)  # (B, 1, 3D)
    q, k, v = qkv.split(d, dim=-1)
    bsz = x.shape[0]
    q = q.view(bsz, 1, h, d // h).transpose(1, 2)  # (B, H, 1, dh)
    k = k.view(bsz, 1, h, d // h).transpose(1, 2)
    v = v.view(bsz, 1, h, d // h).transpose(1, 2)
    keys, values = cache.append(k, v)
    return _attend(q, keys, values, bias[None], attn)


def memory_keys_values(attn: nn.MultiheadAttention, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Project the whole audio memory once for cross-attention.

    Args:
        attn: the layer's cross-attention module.
        memory: ``(B, S, D)`` audio features.
    Returns:
        keys, values, each ``(B, H, S, dh)``.
    """
    d = memory.shape[-1]
    w, b = attn.in_proj_weight, attn.in_proj_bias
    k = _project(memory, w[d:2 * d], None if b is None else b[d:2 * d], attn.num_heads)
    v = _project(memory, w[2 * d:], None if b is None else b[2 * d:], attn.num_heads)
    return k, v


def cross_attention_step(attn: nn.MultiheadAttention, x: torch.Tensor, mem_k: torch.Tensor,
                         mem_v: torch.Tensor) -> torch.Tensor:
    """Cross-attention of one frame to its aligned audio frames only.

    Args:
        attn: the layer's cross-attention module.
        x: ``(B, 1, D)`` query frame.
        mem_k, mem_v: ``(B, H, r, dh)`` keys/values of the audio frames aligned with this frame
            (all other frames are masked out by the alignment mask, so they are skipped).
    Returns:
        ``(B, 1, D)``.
    """
    d = x.shape[-1]
    w, b = attn.in_proj_weight, attn.in_proj_bias
    q = _project(x, w[:d], None if b is None else b[:d], attn.num_heads)  # (B, H, 1, dh)
    return _attend(q, mem_k, mem_v, None, attn)


def _feed_forward(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return _linear(layer.linear2, _dropout(layer.dropout, layer.activation(_linear(layer.linear1, x))))


def decoder_layer_step(layer: nn.TransformerDecoderLayer, x: torch.Tensor, cache: KVCache,
                       bias: torch.Tensor, mem_k: torch.Tensor, mem_v: torch.Tensor) -> torch.Tensor:
    """One frame through a post-norm ``nn.TransformerDecoderLayer``.

    Args:
        layer: the torch layer (``norm_first=False``, ``batch_first=True``).
        x: ``(B, 1, D)`` input of the new frame.
        cache: the layer's self-attention cache.
        bias: ``(H, 1, n)`` self-attention bias row for this frame.
        mem_k, mem_v: ``(B, H, r, dh)`` aligned audio keys/values (:func:`memory_keys_values`).
    Returns:
        ``(B, 1, D)`` the layer's output for this frame.
    """
    assert not layer.norm_first and layer.self_attn.batch_first
    x = _norm(layer.norm1, x + _dropout(layer.dropout1, self_attention_step(layer.self_attn, x, cache, bias)))
    x = _norm(layer.norm2, x + _dropout(layer.dropout2, cross_attention_step(layer.multihead_attn, x, mem_k, mem_v)))
    return _norm(layer.norm3, x + _dropout(layer.dropout3, _feed_forward(layer, x)))


def encoder_layer_step(layer: nn.TransformerEncoderLayer, x: torch.Tensor, cache: KVCache,
                       bias: torch.Tensor) -> torch.Tensor:
    """One frame through a post-norm ``nn.TransformerEncoderLayer`` used causally.

    Args:
        layer: the torch layer (``norm_first=False``, ``batch_first=True``).
        x: ``(B, 1, D)``.
        cache: the layer's self-attention cache.
        bias: ``(H, 1, n)`` causal bias row for this frame.
    Returns:
        ``(B, 1, D)``.
    """
    assert not layer.norm_first and layer.self_attn.batch_first
    x = _norm(layer.norm1, x + _dropout(layer.dropout1, self_attention_step(layer.self_attn, x, cache, bias)))
    return _norm(layer.norm2, x + _dropout(layer.dropout2, _feed_forward(layer, x)))


def bias_row(table: torch.Tensor, n: int) -> torch.Tensor:
    """Self-attention bias of the current frame over the ``n`` latest keys (oldest first).

    Args:
        table: ``(H, >=n)`` bias per distance (:func:`avguide.animators.masks.distance_bias`).
        n: keys in the cache, the current frame's included (``t + 1`` at frame ``t`` without a
            window).
    Returns:
        ``(H, 1, n)``; key ``j`` (distance ``n - 1 - j``) gets ``table[:, n - 1 - j]``.
    """
    return table[:, :n].flip(-1)[:, None, :]
