"""Pieces both animators use: input checks, frame counts, masked losses, the inference path
(:func:`generate_meshes`), full-sequence transformer runs and the cached one-frame-at-a-time
runners that replace them during autoregressive decoding."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from avguide import AUDIO_RATE
from avguide.animators.cache import KVCache, bias_row, decoder_layer_step, encoder_layer_step, \
    memory_keys_values
from avguide.animators.masks import alignment_mask, biased_mask, distance_bias, repeat_for_batch


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
    if cfg.context < 0:
        errors.append(f"context: must be >= 0 frames (0: the whole past), got {cfg.context}")
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


def previous_frame_tokens(linear: nn.Linear, offsets: torch.Tensor) -> torch.Tensor:
    """Teacher forcing's input: at every frame, ``linear`` of the previous frame's offsets (zero
    offsets before frame 0).

    The map is row-wise, so mapping every frame and then shifting by one equals shifting the
    ``V*3``-wide offsets first, without their padded copy.

    Args:
        linear: the ``V*3 -> D`` motion map. offsets: ``(B, T, V*3)`` target offsets.
    Returns:
        ``(B, T, D)``.
    """
    tokens = linear(offsets)  # (B, T, D)
    first = linear(torch.zeros_like(offsets[:, :1]))  # (B, 1, D): the token of zero offsets
    return torch.cat([first, tokens[:, :-1]], 1)


def fold_feedback(motion_map: nn.Linear, readout: tuple[torch.Tensor, torch.Tensor], style: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """The next token ``motion_map(h @ W.T + b) + style`` of an autoregressive decoder whose frame
    offsets are the affine readout ``(W, b)`` of its state ``h``, as one small affine map.

    Args:
        motion_map: the ``V*3 -> D`` map of the previous frame's offsets to a token.
        readout: ``(W, b)``, ``W`` (V*3, H), ``b`` (V*3,): offsets ``= h @ W.T + b``.
        style: ``(B, 1, D)`` added to every token.
    Returns:
        ``(fold_w, fold_b)``: ``(D, H)`` and ``(B, 1, D)``, with token ``= h @ fold_w.T + fold_b``
        (differentiable in the weights: training decodes through it).
    """
    w, b = readout
    return motion_map.weight @ w, motion_map.weight @ b + motion_map.bias + style


def check_batch(audio: torch.Tensor, audio_lengths: torch.Tensor, template: torch.Tensor,
                subject: torch.Tensor, n_vertices: int, n_subjects: int, *, values: bool = True) -> None:
    """Validate the public inputs shared by ``forward`` and ``generate``.

    Args:
        values: also check the lengths and subject ids against their ranges (reads them on the
            host: a device sync). ``generate``, the public entry, does; the training ``forward``
            checks shapes only, its batches having been checked where the data loader read them.
    Raises:
        ValueError: naming the argument, its shape/values and what is expected.
    """
    b = audio.shape[0] if audio.dim() == 2 else -1
    if audio.dim() != 2 or audio.dtype != torch.float32:
        raise ValueError(f"audio: expected (B, L) float32 16 kHz, got {tuple(audio.shape)} {audio.dtype}")
    if audio_lengths.shape != (b,) or (values and (int(audio_lengths.min()) < 1
                                                   or int(audio_lengths.max()) > audio.shape[1])):
        raise ValueError(f"audio_lengths: expected ({b},) in [1, {audio.shape[1]}], got "
                         f"{audio_lengths.tolist()}")
    if template.shape != (b, n_vertices, 3):
        raise ValueError(f"template: expected ({b}, {n_vertices}, 3), got {tuple(template.shape)}")
    if subject.shape != (b,) or (values and (int(subject.min()) < 0 or int(subject.max()) >= n_subjects)):
        raise ValueError(f"subject: expected ({b},) ids in [0, {n_subjects}), got {subject.tolist()}")


def generate_meshes(model: nn.Module, audio: torch.Tensor, audio_lengths: torch.Tensor, template: torch.Tensor,
                    subject: torch.Tensor, n_frames: int | torch.Tensor | None, fps: float | None,
                    decode: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]) -> torch.Tensor:
    """The inference path both animators share: check the inputs, count the frames, encode the
    audio, decode the offsets, add the template.

    Args:
        model: a FaceFormer or CodeTalker (``n_vertices``, ``n_subjects``, ``cfg.fps``, ``encode_audio``).
        audio: ``(B, L)`` float32 16 kHz, zero-padded; audio_lengths: ``(B,)`` samples.
        template: ``(B, V, 3)``; subject: ``(B,)`` style ids.
        n_frames: frames to produce, one int or ``(B,)``; None: ``round(L / 16000 * fps)``.
        fps: frame rate for counting frames and sampling audio features (None: ``cfg.fps``).
        decode: ``(memory (B, ratio * T, D), subject (B,), T) -> (B, T, V*3)`` offsets.
    Returns:
        ``(B, T, V, 3)`` meshes, ``T = max frames``; frames past a clip's own count are its template.
    Raises:
        ValueError: malformed inputs.
    """
    check_batch(audio, audio_lengths, template, subject, model.n_vertices, model.n_subjects)
    fps = model.cfg.fps if fps is None else fps
    if n_frames is None:
        frame_lengths = frame_counts(audio_lengths, fps)
    elif isinstance(n_frames, int):
        frame_lengths = torch.full_like(audio_lengths, n_frames)
    else:
        frame_lengths = n_frames.to(audio_lengths)
    t = int(frame_lengths.max())
    memory = model.encode_audio(audio, audio_lengths, t, frame_lengths, fps)
    pred = decode(memory, subject, t).view(audio.shape[0], t, model.n_vertices, 3)  # (B, T, V, 3)
    valid = torch.arange(t, device=audio.device)[None, :] < frame_lengths[:, None]  # (B, T)
    return pred * valid[..., None, None] + template[:, None]


def decode_full(decoder: nn.TransformerDecoder, x: torch.Tensor, memory: torch.Tensor,
                n_heads: int, period: int, ratio: int, context: int = 0) -> torch.Tensor:
    """Reference forward of the speech-conditioned decoder over a whole sequence.

    Causal biased self-attention (:func:`biased_mask`) and aligned cross-attention
    (:func:`alignment_mask`), as in FaceFormer / CodeTalker.

    Args:
        decoder: ``nn.TransformerDecoder`` (batch_first).
        x: ``(B, T, D)`` embedded motion tokens (positional encoding included).
        memory: ``(B, S, D)`` audio features, ``S >= ratio * T``.
        n_heads, period, ratio, context: mask parameters (context: attention window, 0 = all).
    Returns:
        ``(B, T, D)``.
    """
    b, t, _ = x.shape
    tgt_mask = repeat_for_batch(biased_mask(t, n_heads, period, context=context).to(x), b)  # (B*H, T, T)
    mem_mask = alignment_mask(t, memory.shape[1], ratio).to(x)  # (T, S)
    return decoder(x, memory, tgt_mask=tgt_mask, memory_mask=mem_mask)


def encode_full(encoder: nn.TransformerEncoder, x: torch.Tensor, lengths: torch.Tensor,
                n_heads: int, period: int, causal: bool, context: int = 0) -> torch.Tensor:
    """Reference forward of a biased-mask transformer encoder over padded sequences.

    Args:
        encoder: ``nn.TransformerEncoder`` (batch_first).
        x: ``(B, T, D)``.
        lengths: ``(B,)`` valid frames; keys beyond are masked out.
        n_heads, period, context: bias parameters; causal: block future keys.
    Returns:
        ``(B, T, D)``.
    """
    b, t, _ = x.shape
    mask = biased_mask(t, n_heads, period, causal, context).to(x)[None]  # (1, H, T, T)
    pad = torch.arange(t, device=x.device)[None, :] >= lengths[:, None]  # (B, T)
    mask = mask.masked_fill(pad[:, None, None, :], float("-inf"))  # (B, H, T, T)
    # padded queries would see only -inf; let them see themselves (their outputs are ignored)
    eye = torch.eye(t, dtype=torch.bool, device=x.device)
    mask = mask.masked_fill(pad[:, None, :, None] & eye, 0.0)
    return encoder(x, mask=mask.reshape(b * n_heads, t, t))


def _window(n_frames: int | None, context: int) -> tuple[int, int | None]:
    """(bias table size, cache capacity) of a stepper: the attention window when there is one."""
    if n_frames is None and not context:
        raise ValueError("streaming (n_frames=None) needs an attention window (context > 0)")
    size = context + 1 if context else n_frames
    if n_frames is not None:
        size = min(size, n_frames)
    return size, None if torch.is_grad_enabled() else size


class DecoderStepper:
    """Cached autoregressive run of an ``nn.TransformerDecoder``: one frame per :meth:`step`.

    Equivalent to :func:`decode_full` on the growing prefix, at O(T) layer calls in total; with
    an attention window (``context > 0``) its memory is constant, so it can run for ever.

    Args:
        decoder: the same decoder :func:`decode_full` runs.
        n_heads, period, context: mask parameters.
        n_frames: frames that will be stepped, or None (streaming; needs ``context > 0``).
        like: a tensor giving dtype and device.
    """

    def __init__(self, decoder: nn.TransformerDecoder, n_heads: int, period: int, context: int,
                 n_frames: int | None, like: torch.Tensor):
        assert decoder.norm is None
        self.layers = list(decoder.layers)
        size, capacity = _window(n_frames, context)
        self.table = distance_bias(size, n_heads, period, context).to(like)  # (H, size)
        self.caches = [KVCache(capacity, size if context else 0) for _ in self.layers]

    def step(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """Process the next frame.

        Args:
            x: ``(B, 1, D)`` embedded token of the frame.
            memory: ``(B, r, D)`` the audio features aligned with it (the alignment mask blocks
                every other audio frame).
        Returns:
            ``(B, 1, D)`` decoder output.
        """
        n = min(self.caches[0].n + 1, self.table.shape[1])
        bias = bias_row(self.table, n)
        for layer, cache in zip(self.layers, self.caches):
            mk, mv = memory_keys_values(layer.multihead_attn, memory)
            x = decoder_layer_step(layer, x, cache, bias, mk, mv)
        return x


class CausalEncoderStepper:
    """Cached run of an ``nn.TransformerEncoder`` used with a causal biased mask.

    Equivalent to :func:`encode_full` with ``causal=True`` on the growing prefix.

    Args:
        encoder: the encoder.
        n_heads, period, context: bias parameters.
        n_frames: frames that will be stepped, or None (streaming; needs ``context > 0``).
        like: a tensor giving dtype/device.
    """

    def __init__(self, encoder: nn.TransformerEncoder, n_heads: int, period: int, context: int,
                 n_frames: int | None, like: torch.Tensor):
        assert encoder.norm is None
        self.layers = list(encoder.layers)
        size, capacity = _window(n_frames, context)
        self.table = distance_bias(size, n_heads, period, context).to(like)
        self.caches = [KVCache(capacity, size if context else 0) for _ in self.layers]

    def step(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 1, D)`` -> ``(B, 1, D)`` for the next frame."""
        bias = bias_row(self.table, min(self.caches[0].n + 1, self.table.shape[1]))
        for layer, cache in zip(self.layers, self.caches):
            x = encoder_layer_step(layer, x, cache, bias)
        return x
