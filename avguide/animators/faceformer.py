"""FaceFormer (Fan et al., CVPR 2022): speech-driven 3D face animation with a causal transformer.

Audio features -> ``audio_feature_map`` (memory). Past motion (offsets from the template) ->
``vertice_map`` + the speaker style (``obj_vector`` of a one-hot subject) + periodic positional
encoding -> one transformer decoder layer with the ALiBi-like biased causal self-attention and the
alignment cross-attention mask -> ``vertice_map_r`` (zero-initialised) -> offsets + template.

The first input token is ``vertice_map(0) + style`` (the "previous offset" of frame 0 is zero);
token ``t`` is ``vertice_map(offset_{t-1}) + style`` with the ground-truth offset (teacher
forcing) or the model's own prediction (autoregressive). Both training modes are available
(``teacher_forcing``); the default is autoregressive, as the public FaceFormer trains.

Inference: :meth:`FaceFormer.generate` decodes with a key/value cache (linear cost);
:meth:`FaceFormer.generate_recompute` re-runs the real forward on the whole prefix every frame
(the public code's O(T^2) loop) and is kept as the reference the cache is tested against.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from avguide.animators.common import (DecoderStepper, check_batch, check_decoder_fields, decode_full,
                                      fold_feedback, generate_meshes, masked_mse, previous_frame_tokens)
from avguide.animators.masks import periodic_encoding
from avguide.audio.encoders import STREAM_LOOKAHEAD, AudioEncoderConfig, build_audio_encoder, mel_encoder_tiny


@dataclass
class FaceFormerConfig:
    """FaceFormer hyper-parameters (defaults: the VOCASET model with the offline mel encoder).

    feature_dim: model width D (64 VOCASET, 128 BIWI). n_heads: 4. n_layers: decoder layers (1).
    ff_mult: feed-forward width = ff_mult * D (2). dropout: in attention, feed-forward and
    positional encoding (torch's default 0.1, as published). fps: motion frame rate.
    period: positional-encoding and bias period in frames (= fps in FaceFormer).
    audio_ratio: audio features per motion frame in cross-attention (1 VOCASET, 2 BIWI).
    teacher_forcing: train on ground-truth past motion (True) or on the model's own (False,
    the published default). context: self-attention window in frames (0: the whole past, as
    published; > 0 bounds the memory of long and streamed animation). audio: the audio encoder.
    """

    kind: Literal["faceformer"] = "faceformer"
    feature_dim: int = 64
    n_heads: int = 4
    n_layers: int = 1
    ff_mult: int = 2
    dropout: float = 0.1
    fps: float = 30.0
    period: int = 30
    audio_ratio: int = 1
    teacher_forcing: bool = False
    context: int = 0
    audio: AudioEncoderConfig = field(default_factory=AudioEncoderConfig)

    def check(self) -> list[str]:
        return check_decoder_fields(self)


def faceformer_vocaset(audio: AudioEncoderConfig | None = None) -> FaceFormerConfig:
    """Published VOCASET size: D=64, 30 fps, period 30, one audio feature per frame.

    Args:
        audio: encoder config (default: offline mel; :func:`wav2vec2_base` for the paper's).
    """
    return FaceFormerConfig(audio=audio or AudioEncoderConfig())


def faceformer_biwi(audio: AudioEncoderConfig | None = None) -> FaceFormerConfig:
    """Published BIWI size: D=128, 25 fps, period 25, two audio features (50 Hz) per frame."""
    return FaceFormerConfig(feature_dim=128, fps=25.0, period=25, audio_ratio=2,
                            audio=audio or AudioEncoderConfig())


def faceformer_cpu(audio: AudioEncoderConfig | None = None) -> FaceFormerConfig:
    """FaceFormer at the published VOCASET size (D=64), made to stream: its mel encoder looks
    at most 92.5 ms ahead (:data:`avguide.audio.encoders.STREAM_LOOKAHEAD`) and its
    self-attention reads the last 300 frames (10 s at 30 fps, longer than any training clip), so
    speech of any length animates with constant memory and a streamed animation equals the
    offline one. The shipped models use it."""
    return FaceFormerConfig(context=300, audio=audio or AudioEncoderConfig(lookahead=STREAM_LOOKAHEAD))


def faceformer_tiny() -> FaceFormerConfig:
    """A tiny model for tests: D=16, period 5, 2x audio rate, no dropout."""
    return FaceFormerConfig(feature_dim=16, dropout=0.0, fps=25.0, period=5, audio_ratio=2,
                            audio=mel_encoder_tiny())


class FaceFormer(nn.Module):
    """FaceFormer for meshes of ``n_vertices`` vertices and ``n_subjects`` training speakers.

    Args:
        cfg: a checked :class:`FaceFormerConfig`.
        n_vertices: V.
        n_subjects: speaking styles (one-hot size).
        audio_encoder: optional prebuilt encoder (e.g. a local HF model); default from ``cfg.audio``.
    """

    def __init__(self, cfg: FaceFormerConfig, n_vertices: int, n_subjects: int,
                 audio_encoder: nn.Module | None = None):
        super().__init__()
        self.cfg, self.n_vertices, self.n_subjects = cfg, n_vertices, n_subjects
        d = cfg.feature_dim
        self.audio_encoder = audio_encoder if audio_encoder is not None else build_audio_encoder(cfg.audio)
        self.audio_feature_map = nn.Linear(self.audio_encoder.out_dim, d)
        self.vertice_map = nn.Linear(n_vertices * 3, d)
        self.obj_vector = nn.Linear(n_subjects, d, bias=False)
        self.pe_dropout = nn.Dropout(cfg.dropout)
        layer = nn.TransformerDecoderLayer(d, cfg.n_heads, cfg.ff_mult * d, cfg.dropout, batch_first=True)
        self.transformer_decoder = nn.TransformerDecoder(layer, cfg.n_layers)
        self.vertice_map_r = nn.Linear(d, n_vertices * 3)
        nn.init.zeros_(self.vertice_map_r.weight)
        nn.init.zeros_(self.vertice_map_r.bias)

    # ---- pieces ---------------------------------------------------------------------------------
    def encode_audio(self, audio: torch.Tensor, audio_lengths: torch.Tensor, n_frames: int,
                     frame_lengths: torch.Tensor, fps: float) -> torch.Tensor:
        """Audio memory ``(B, ratio * n_frames, D)`` aligned with the motion frames."""
        r = self.cfg.audio_ratio
        feats = self.audio_encoder(audio, audio_lengths, fps * r, n_frames * r, n_valid_out=frame_lengths * r)
        return self.audio_feature_map(feats)

    def style(self, subject: torch.Tensor) -> torch.Tensor:
        """``(B,)`` subject ids -> ``(B, 1, D)`` style embedding."""
        one_hot = F.one_hot(subject, self.n_subjects).to(self.obj_vector.weight.dtype)
        return self.obj_vector(one_hot)[:, None, :]

    def embed(self, tokens: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Add the periodic positional encoding of frames ``start..`` (+ dropout) to ``(B, T, D)`` tokens."""
        pe = periodic_encoding(start + tokens.shape[1], self.cfg.feature_dim, self.cfg.period)[start:]
        return self.pe_dropout(tokens + pe.to(tokens))

    def motion_tokens(self, prev_offsets: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        """``(B, T, V*3)`` previous-frame offsets -> ``(B, T, D)`` tokens (no positional encoding)."""
        return self.vertice_map(prev_offsets) + style

    # ---- training -------------------------------------------------------------------------------
    def forward(self, audio: torch.Tensor, audio_lengths: torch.Tensor, template: torch.Tensor,
                vertices: torch.Tensor, lengths: torch.Tensor, subject: torch.Tensor) -> dict:
        """Predict the target's frames and the vertex loss.

        Args:
            audio: ``(B, L)`` float32 16 kHz, zero-padded.
            audio_lengths: ``(B,)`` samples per clip.
            template: ``(B, V, 3)`` neutral faces.
            vertices: ``(B, T, V, 3)`` target meshes, padded.
            lengths: ``(B,)`` valid frames per target.
            subject: ``(B,)`` int64 style ids in ``[0, n_subjects)``.
        Returns:
            ``{"pred": (B, T, V, 3), "losses": {"mse": scalar}}``; the loss is over valid frames.
        Raises:
            BadInputError: malformed inputs.
        """
        check_batch(audio, audio_lengths, template, subject, self.n_vertices, self.n_subjects, values=False)
        b, t = vertices.shape[:2]
        memory = self.encode_audio(audio, audio_lengths, t, lengths, self.cfg.fps)
        style = self.style(subject)
        if self.cfg.teacher_forcing:
            offsets = (vertices - template[:, None]).flatten(2)  # (B, T, V*3)
            prev = previous_frame_tokens(self.vertice_map, offsets) + style  # (B, T, D), motion_tokens of the frame before
            hidden = decode_full(self.transformer_decoder, self.embed(prev),
                                 memory, self.cfg.n_heads, self.cfg.period, self.cfg.audio_ratio, self.cfg.context)
            pred_offsets = self.vertice_map_r(hidden)
        else:
            pred_offsets = self._decode_cached(memory, style, t)
        pred = pred_offsets.view(b, t, self.n_vertices, 3) + template[:, None]  # (B, T, V, 3)
        return {"pred": pred, "losses": {"mse": masked_mse(pred, vertices, lengths)}}

    # ---- inference ------------------------------------------------------------------------------
    def readout_map(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(W, b)``: a frame's offsets ``= h @ W.T + b`` of its decoder output ``h`` (``vertice_map_r``)."""
        return self.vertice_map_r.weight, self.vertice_map_r.bias

    def decoding(self, style: torch.Tensor, n_frames: int | None, like: torch.Tensor) -> "FaceFormerDecoding":
        """A frame-by-frame decoder (key/value cache) for ``n_frames`` frames, or None: streaming."""
        return FaceFormerDecoding(self, style, n_frames, like)

    def _decode_cached(self, memory: torch.Tensor, style: torch.Tensor, n_frames: int) -> torch.Tensor:
        """Autoregressive decoding with the KV cache; ``(B, T, V*3)`` offsets (differentiable); the
        offsets of all frames are read out with one matrix product at the end."""
        r = self.cfg.audio_ratio
        dec = self.decoding(style, n_frames, memory)
        hidden = [dec.step(memory[:, t * r:(t + 1) * r]) for t in range(n_frames)]
        return self.vertice_map_r(torch.cat(hidden, 1))  # (B, T, V*3)

    def _decode_recompute(self, memory: torch.Tensor, style: torch.Tensor, n_frames: int) -> torch.Tensor:
        """Reference: the real forward on the whole prefix at every frame (O(T^2))."""
        b = memory.shape[0]
        prev = memory.new_zeros(b, 1, self.n_vertices * 3)  # (B, 1, V*3)
        for t in range(n_frames):
            hidden = decode_full(self.transformer_decoder, self.embed(self.motion_tokens(prev, style)),
                                 memory, self.cfg.n_heads, self.cfg.period, self.cfg.audio_ratio, self.cfg.context)
            offsets = self.vertice_map_r(hidden)  # (B, t+1, V*3)
            prev = torch.cat([prev, offsets[:, -1:]], 1)
        return offsets

    @torch.no_grad()
    def generate(self, audio: torch.Tensor, audio_lengths: torch.Tensor, template: torch.Tensor,
                 subject: torch.Tensor, n_frames: int | torch.Tensor | None = None,
                 fps: float | None = None) -> torch.Tensor:
        """Animate speech with key/value-cached autoregressive decoding (linear in T).

        Args:
            audio: ``(B, L)`` float32 16 kHz, zero-padded; audio_lengths: ``(B,)`` samples.
            template: ``(B, V, 3)``; subject: ``(B,)`` style ids.
            n_frames: frames to produce, one int or ``(B,)``; default ``round(L / 16000 * fps)``.
            fps: frame rate for counting frames and sampling audio features (default ``cfg.fps``).
        Returns:
            ``(B, T, V, 3)`` meshes, ``T = max frames``; frames past a clip's own count are its template.
        Raises:
            BadInputError: malformed inputs.
        """
        return generate_meshes(self, audio, audio_lengths, template, subject, n_frames, fps,
                               lambda memory, s, t: self._decode_cached(memory, self.style(s), t))

    @torch.no_grad()
    def generate_recompute(self, audio: torch.Tensor, audio_lengths: torch.Tensor, template: torch.Tensor,
                           subject: torch.Tensor, n_frames: int | torch.Tensor | None = None,
                           fps: float | None = None) -> torch.Tensor:
        """:meth:`generate` the slow published way (full-prefix recompute); the cache's reference."""
        return generate_meshes(self, audio, audio_lengths, template, subject, n_frames, fps,
                               lambda memory, s, t: self._decode_recompute(memory, self.style(s), t))


class FaceFormerDecoding:
    """FaceFormer's autoregressive decoder state: one frame per :meth:`step` (training, offline and
    streamed animation all run this loop).

    The next token ``vertice_map(vertice_map_r(h)) + style`` is affine in ``h``, so the loop uses
    the folded ``(D, D)`` map and never touches the ``V*3``-wide layers.

    Args:
        model: the FaceFormer. style: ``(B, 1, D)`` :meth:`FaceFormer.style`.
        n_frames: frames to decode, or None (streaming; needs ``cfg.context > 0``).
        like: a tensor giving dtype and device.
    """

    def __init__(self, model: FaceFormer, style: torch.Tensor, n_frames: int | None, like: torch.Tensor):
        cfg = model.cfg
        self.model = model
        self.stepper = DecoderStepper(model.transformer_decoder, cfg.n_heads, cfg.period, cfg.context, n_frames, like)
        self.pe = periodic_encoding(cfg.period, cfg.feature_dim, cfg.period).to(like)  # (period, D): one cycle
        self.fold_w, self.fold_b = fold_feedback(model.vertice_map, model.readout_map(), style)  # (D, D), (B, 1, D)
        self.token = model.motion_tokens(like.new_zeros(style.shape[0], 1, model.n_vertices * 3), style)  # (B, 1, D)
        self.t = 0

    def step(self, memory: torch.Tensor) -> torch.Tensor:
        """``(B, r, D)`` audio memory aligned with the next frame -> ``(B, 1, D)`` decoder output
        (``model.vertice_map_r`` of it is the frame's offsets)."""
        h = self.stepper.step(self.model.pe_dropout(self.token + self.pe[self.t % len(self.pe)]), memory)
        self.token = h @ self.fold_w.T + self.fold_b  # == vertice_map(vertice_map_r(h)) + style
        self.t += 1
        return h

    def offsets(self, hidden: torch.Tensor) -> torch.Tensor:
        """``(B, t, D)`` outputs of :meth:`step` -> ``(B, t, V*3)`` offsets from the template."""
        return self.model.vertice_map_r(hidden)
