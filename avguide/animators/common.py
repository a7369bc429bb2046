"""Pieces both animators use: frame counts, masked losses, full-sequence transformer runs and
the cached one-frame-at-a-time runners that replace them during autoregressive decoding."""

from __future__ import annotations

import torch
from torch import nn

from avguide import AUDIO_RATE
from avguide.animators.cache import KVCache, bias_row, decoder_layer_step, encoder_layer_step, \
    memory_keys_values
from avguide.animators.masks import alignment_mask, biased_mask, distance_bias, repeat_for_batch
from avguide.errors import BadInputError


def check_decoder_fields(cfg) -> list[str]:
    """Checks shared by the FaceFormer and CodeTalker configs (decoder width, heads, depth,
    feed-forward, period, audio ratio, dropout, fps); one message per problem."""
    errors = []
    if cfg.feature_dim < 2 or cfg.feature_dim % (2 * cfg.n_heads) != 0:
        errors.append(f"feature_dim: must be a positive multiple of 2 * n_heads "
                      f"({2 * cfg.n_heads}), got {cfg.feature_dim}")
    for name in ("n_heads", "n_layers", "ff_mult", "period", "audio_ratio"):
        if getattr(cfg, name) < 1:
            errors.append(f"{name}: must be >= 1, got {getattr(cfg, name)}")
    if not 0.0 <= cfg.dropout < 1.0:
        errors.append(f"dropout: must be in [0, 1), got {cfg.dropout}")
    if cfg.fps <= 0:
        errors.append(f"fps: must be > 0, got {cfg.fps}")
    return errors


def frame_counts(audio_lengths: torch.Tensor, fps: float) -> torch.Tensor:
    """Motion frames for each clip: ``round(L / 16000 * fps)``.

    Args:
        audio_lengths: ``(B,)`` samples at 16 kHz.
        fps: motion frame rate.
    Returns:
        ``(B,)`` int64 frame counts (>= 1).
    """
    return torch.round(audio_lengths.to(torch.float64) / AUDIO_RATE * fps).long().clamp(min=1)


def masked_mse(pred: torch.Tensor, target: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the valid frames of a padded batch.

    Args:
        pred, target: ``(B, T, ...)`` same shape.
        lengths: ``(B,)`` valid frames per sequence.
    Returns:
        scalar: mean over valid frames and all trailing elements.
    """
    valid = (torch.arange(pred.shape[1], device=pred.device)[None, :] < lengths[:, None])  # (B, T)
    sq = (pred - target).square().flatten(2).mean(-1)  # (B, T)
    return (sq * valid).sum() / valid.sum().clamp(min=1)


def check_batch(audio: torch.Tensor, audio_lengths: torch.Tensor, template: torch.Tensor,
                subject: torch.Tensor, n_vertices: int, n_subjects: int) -> None:
    """Validate the public inputs shared by ``forward`` and ``generate``.

    Raises:
        BadInputError: naming the argument, its shape/values and what is expected.
    """
    b = audio.shape[0] if audio.dim() == 2 else -1
    if audio.dim() != 2 or audio.dtype != torch.float32:
        raise BadInputError(f"audio: expected (B, L) float32 16 kHz, got {tuple(audio.shape)} {audio.dtype}")
    if audio_lengths.shape != (b,) or int(audio_lengths.min()) < 1 or int(audio_lengths.max()) > audio.shape[1]:
        raise BadInputError(f"audio_lengths: expected ({b},) in [1, {audio.shape[1]}], got "
                            f"{audio_lengths.tolist()}")
    if template.shape != (b, n_vertices, 3):
        raise BadInputError(f"template: expected ({b}, {n_vertices}, 3), got {tuple(template.shape)}")
    if subject.shape != (b,) or int(subject.min()) < 0 or int(subject.max()) >= n_subjects:
        raise BadInputError(f"subject: expected ({b},) ids in [0, {n_subjects}), got {subject.tolist()}")


def decode_full(decoder: nn.TransformerDecoder, x: torch.Tensor, memory: torch.Tensor,
                n_heads: int, period: int, ratio: int) -> torch.Tensor:
    """Reference forward of the speech-conditioned decoder over a whole sequence.

    Causal biased self-attention (:func:`biased_mask`) and aligned cross-attention
    (:func:`alignment_mask`), as in FaceFormer / CodeTalker.

    Args:
        decoder: ``nn.TransformerDecoder`` (batch_first).
        x: ``(B, T, D)`` embedded motion tokens (positional encoding included).
        memory: ``(B, S, D)`` audio features, ``S >= ratio * T``.
        n_heads, period, ratio: mask parameters.
    Returns:
        ``(B, T, D)``.
    """
    b, t, _ = x.shape
    tgt_mask = repeat_for_batch(biased_mask(t, n_heads, period).to(x), b)  # (B*H, T, T)
    mem_mask = alignment_mask(t, memory.shape[1], ratio).to(x)  # (T, S)
    return decoder(x, memory, tgt_mask=tgt_mask, memory_mask=mem_mask)


def encode_full(encoder: nn.TransformerEncoder, x: torch.Tensor, lengths: torch.Tensor,
                n_heads: int, period: int, causal: bool) -> torch.Tensor:
    """Reference forward of a biased-mask transformer encoder over padded sequences.

    Args:
        encoder: ``nn.TransformerEncoder`` (batch_first).
        x: ``(B, T, D)``.
        lengths: ``(B,)`` valid frames; keys beyond are masked out.
        n_heads, period: bias parameters; causal: block future keys.
    Returns:
        ``(B, T, D)``.
    """
    b, t, _ = x.shape
    mask = biased_mask(t, n_heads, period, causal).to(x)[None]  # (1, H, T, T)
    pad = torch.arange(t, device=x.device)[None, :] >= lengths[:, None]  # (B, T)
    mask = mask.masked_fill(pad[:, None, None, :], float("-inf"))  # (B, H, T, T)
    # padded queries would see only -inf; let them see themselves (their outputs are ignored)
    eye = torch.eye(t, dtype=torch.bool, device=x.device)
    mask = mask.masked_fill(pad[:, None, :, None] & eye, 0.0)
    return encoder(x, mask=mask.reshape(b * n_heads, t, t))


class DecoderStepper:
    """Cached autoregressive run of an ``nn.TransformerDecoder``: one frame per :meth:`step`.

    Equivalent to :func:`decode_full` on the growing prefix, at O(T) layer calls in total.

    Args:
        decoder: the same decoder :func:`decode_full` runs.
        memory: ``(B, S, D)`` audio features (projected once per layer here).
        n_heads, period, ratio: mask parameters.
        n_frames: frames that will be stepped (bias table size, cache capacity).
    """

    def __init__(self, decoder: nn.TransformerDecoder, memory: torch.Tensor, n_heads: int,
                 period: int, ratio: int, n_frames: int):
        assert decoder.norm is None
        self.layers = list(decoder.layers)
        self.ratio = ratio
        self.table = distance_bias(n_frames, n_heads, period).to(memory)  # (H, T)
        capacity = None if torch.is_grad_enabled() else n_frames
        self.caches = [KVCache(capacity) for _ in self.layers]
        self.memory_kv = [memory_keys_values(layer.multihead_attn, memory) for layer in self.layers]
        self.t = 0

    def step(self, x: torch.Tensor) -> torch.Tensor:
        """Process the next frame: ``(B, 1, D)`` embedded token -> ``(B, 1, D)`` decoder output."""
        t, r = self.t, self.ratio
        bias = bias_row(self.table, t)
        for layer, cache, (mk, mv) in zip(self.layers, self.caches, self.memory_kv):
            x = decoder_layer_step(layer, x, cache, bias, mk[:, :, t * r:(t + 1) * r], mv[:, :, t * r:(t + 1) * r])
        self.t += 1
        return x


class CausalEncoderStepper:
    """Cached run of an ``nn.TransformerEncoder`` used with a causal biased mask.

    Equivalent to :func:`encode_full` with ``causal=True`` on the growing prefix.

    Args:
        encoder: the encoder.
        n_heads, period: bias parameters.
        n_frames: frames that will be stepped.
        like: a tensor giving dtype/device.
    """

    def __init__(self, encoder: nn.TransformerEncoder, n_heads: int, period: int, n_frames: int,
                 like: torch.Tensor):
        assert encoder.norm is None
        self.layers = list(encoder.layers)
        self.table = distance_bias(n_frames, n_heads, period).to(like)
        capacity = None if torch.is_grad_enabled() else n_frames
        self.caches = [KVCache(capacity) for _ in self.layers]
        self.t = 0

    def step(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 1, D)`` -> ``(B, 1, D)`` for the next frame."""
        bias = bias_row(self.table, self.t)
        for layer, cache in zip(self.layers, self.caches):
            x = encoder_layer_step(layer, x, cache, bias)
        self.t += 1
        return x
