"""CodeTalker (Xing et al., CVPR 2023): speech-driven facial animation over a discrete motion prior.

Stage 1 (:mod:`avguide.animators.vqvae`) learns a codebook of facial motion. Stage 2 (here) is a
speech-conditioned autoregressive transformer decoder (same masks, periodic encoding and alignment
as FaceFormer, a learnt style embedding per speaker) whose per-frame features (``feat_map``,
zero-initialised, no bias) are quantised through the frozen codebook and decoded by the frozen
stage-1 decoder. The model object holds both stages; :meth:`CodeTalker.set_stage` picks which one
``forward`` trains:

- stage 1: ``{"rec": L1 reconstruction, "vq": codebook + commitment}`` (the audio is unused).
  ``rec`` is measured in the codec's units (offsets / ``motion_scale``), like ``vq``: in metres
  it would be ~1e-4 against a VQ loss ~1e-2, and Adam, following the larger term, collapses the
  codebook onto one static code;
- stage 2: ``{"mse": vertex MSE, "reg": MSE between predicted features and the ground truth's
  quantised codes}`` (published weights 1 and 1), the VQ-VAE frozen.

Stage 2 trains with teacher forcing by default (as published) or autoregressively.
:meth:`CodeTalker.generate` decodes frame by frame with key/value caches in both the stage-2
decoder and the causal stage-1 decoder; :meth:`CodeTalker.generate_recompute` is the published
full-prefix loop, the reference.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from avguide.animators.common import (DecoderStepper, check_batch, check_decoder_fields, decode_full,
                                      fold_feedback, generate_meshes, masked_mse, previous_frame_tokens)
from avguide.animators.masks import padding_mask, periodic_encoding
from avguide.animators.vqvae import DecodeStepper, MotionVQVAE, VQVAEConfig
from avguide.audio.encoders import STREAM_LOOKAHEAD, AudioEncoderConfig, build_audio_encoder, mel_encoder_tiny


@dataclass
class CodeTalkerConfig:
    """CodeTalker hyper-parameters (defaults: VOCASET with the offline mel encoder).

    stage: 1 trains the VQ-VAE, 2 the speech-conditioned predictor.
    feature_dim, n_heads, n_layers, ff_mult, dropout: stage-2 decoder (1024, 4, 6 VOCASET / 12
    BIWI, 2, 0.1). fps, period, audio_ratio, teacher_forcing, context: as in FaceFormer (the
    VQ-VAE has its own ``vq.context``).
    vq: the stage-1 autoencoder. audio: the audio encoder.
    """

    kind: Literal["codetalker"] = "codetalker"
    stage: int = 2
    feature_dim: int = 1024
    n_heads: int = 4
    n_layers: int = 6
    ff_mult: int = 2
    dropout: float = 0.1
    fps: float = 30.0
    period: int = 30
    audio_ratio: int = 1
    teacher_forcing: bool = True
    context: int = 0
    vq: VQVAEConfig = field(default_factory=VQVAEConfig)
    audio: AudioEncoderConfig = field(default_factory=AudioEncoderConfig)

    def check(self) -> list[str]:
        errors = []
        if self.stage not in (1, 2):
            errors.append(f"stage: must be 1 or 2, got {self.stage}")
        errors += check_decoder_fields(self)
        if self.vq.period != self.period:
            errors.append(f"vq.period: must equal period ({self.period}), got {self.vq.period}")
        return errors


def codetalker_vocaset(audio: AudioEncoderConfig | None = None) -> CodeTalkerConfig:
    """Published VOCASET size: codes 16 x 64, 256 entries; stage 2: D=1024, 6 layers, 30 fps."""
    return CodeTalkerConfig(audio=audio or AudioEncoderConfig())


def codetalker_biwi(audio: AudioEncoderConfig | None = None) -> CodeTalkerConfig:
    """Published BIWI size: codes 8 x 128; stage 2: D=1024, 12 layers, 25 fps, 50 Hz audio."""
    return CodeTalkerConfig(n_layers=12, fps=25.0, period=25, audio_ratio=2,
                            vq=VQVAEConfig(n_codes=8, code_dim=128, period=25),
                            audio=audio or AudioEncoderConfig())


def codetalker_cpu(audio: AudioEncoderConfig | None = None) -> CodeTalkerConfig:
    """A CPU-trainable CodeTalker for the synthetic benchmark: the published code layout (16 x 64
    codes, 256 entries) with narrower, shallower transformers (VQ-VAE 256 wide x 3 layers,
    predictor 256 wide x 3 layers); about 15x fewer parameters than :func:`codetalker_vocaset`.
    It streams like :func:`avguide.animators.faceformer_cpu` (92.5 ms look-ahead, 300-frame
    attention windows in the predictor and the VQ decoder)."""
    vq = VQVAEConfig(hidden=256, n_layers=3, n_heads=4, ff_dim=512, context=300)
    return CodeTalkerConfig(feature_dim=256, n_layers=3, context=300, vq=vq,
                            audio=audio or AudioEncoderConfig(lookahead=STREAM_LOOKAHEAD))


def codetalker_tiny() -> CodeTalkerConfig:
    """A tiny model for tests (no dropout, period 5, 2x audio rate)."""
    vq = VQVAEConfig(hidden=32, n_layers=2, n_heads=4, ff_dim=48, n_codes=4, code_dim=8,
                     codebook_size=16, dropout=0.0, period=5)
    return CodeTalkerConfig(feature_dim=16, n_layers=2, dropout=0.0, fps=25.0, period=5, audio_ratio=2,
                            vq=vq, audio=mel_encoder_tiny())


class CodeTalker(nn.Module):
    """CodeTalker for ``n_vertices``-vertex meshes and ``n_subjects`` speaking styles.

    Args:
        cfg: a checked :class:`CodeTalkerConfig`. n_vertices: V. n_subjects: styles.
        audio_encoder: optional prebuilt encoder; default from ``cfg.audio``.
    """

    def __init__(self, cfg: CodeTalkerConfig, n_vertices: int, n_subjects: int,
                 audio_encoder: nn.Module | None = None):
        super().__init__()
        self.cfg, self.n_vertices, self.n_subjects = cfg, n_vertices, n_subjects
        d = cfg.feature_dim
        self.vqvae = MotionVQVAE(cfg.vq, n_vertices)
        self.audio_encoder = audio_encoder if audio_encoder is not None else build_audio_encoder(cfg.audio)
        self.audio_feature_map = nn.Linear(self.audio_encoder.out_dim, d)
        self.vertice_map = nn.Linear(n_vertices * 3, d)
        self.style_emb = nn.Embedding(n_subjects, d)
        self.pe_dropout = nn.Dropout(cfg.dropout)
        layer = nn.TransformerDecoderLayer(d, cfg.n_heads, cfg.ff_mult * d, cfg.dropout, batch_first=True)
        self.transformer_decoder = nn.TransformerDecoder(layer, cfg.n_layers)
        self.feat_map = nn.Linear(d, cfg.vq.n_codes * cfg.vq.code_dim, bias=False)
        nn.init.zeros_(self.feat_map.weight)
        self.set_stage(cfg.stage)

    def set_stage(self, stage: int) -> None:
        """Choose what ``forward`` trains: 1 the VQ-VAE only, 2 the predictor with the VQ-VAE frozen.

        Parameters frozen by construction (an EMA codebook, a frozen HF conv encoder) stay frozen.
        """
        assert stage in (1, 2)
        if not hasattr(self, "_always_frozen"):
            self._always_frozen = {n for n, p in self.named_parameters() if not p.requires_grad}
        self.cfg.stage = stage
        for name, p in self.named_parameters():
            in_stage = name.startswith("vqvae.") == (stage == 1)
            p.requires_grad = in_stage and name not in self._always_frozen
        self.train(self.training)

    def train(self, mode: bool = True) -> "CodeTalker":
        """Like ``nn.Module.train``; in stage 2 the frozen VQ-VAE always stays in eval mode."""
        super().train(mode)
        if self.cfg.stage == 2:
            self.vqvae.eval()
        return self

    # ---- pieces ---------------------------------------------------------------------------------
    def encode_audio(self, audio, audio_lengths, n_frames: int, frame_lengths, fps: float) -> torch.Tensor:
        """Audio memory ``(B, ratio * n_frames, D)`` aligned with the motion frames."""
        r = self.cfg.audio_ratio
        feats = self.audio_encoder(audio, audio_lengths, fps * r, n_frames * r, n_valid_out=frame_lengths * r)
        return self.audio_feature_map(feats)

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """Add the periodic positional encoding (+ dropout) to ``(B, T, D)`` tokens."""
        pe = periodic_encoding(tokens.shape[1], self.cfg.feature_dim, self.cfg.period)
        return self.pe_dropout(tokens + pe.to(tokens))

    def features(self, hidden: torch.Tensor) -> torch.Tensor:
        """``(B, T, D)`` decoder output -> ``(B, T, n_codes, code_dim)`` continuous code features."""
        b, t, _ = hidden.shape
        return self.feat_map(hidden).view(b, t, self.cfg.vq.n_codes, self.cfg.vq.code_dim)

    # ---- training -------------------------------------------------------------------------------
    def forward(self, audio: torch.Tensor, audio_lengths: torch.Tensor, template: torch.Tensor,
                vertices: torch.Tensor, lengths: torch.Tensor, subject: torch.Tensor) -> dict:
        """Predict the target's frames and the losses of the current stage.

        Args:
            audio: ``(B, L)`` float32 16 kHz, zero-padded; audio_lengths: ``(B,)``.
            template: ``(B, V, 3)``; vertices: ``(B, T, V, 3)`` targets; lengths: ``(B,)``.
            subject: ``(B,)`` int64 style ids.
        Returns:
            ``{"pred": (B, T, V, 3), "losses": {...}}``: stage 1 ``rec`` (L1) and ``vq``;
            stage 2 ``mse`` and ``reg``. Losses cover valid frames only.
        Raises:
            BadInputError: malformed inputs.
        """
        check_batch(audio, audio_lengths, template, subject, self.n_vertices, self.n_subjects, values=False)
        b, t = vertices.shape[:2]
        offsets = (vertices - template[:, None]).flatten(2)  # (B, T, V*3)
        if self.cfg.stage == 1:
            out = self.vqvae(offsets, lengths)
            pred = out["recon"].view(b, t, self.n_vertices, 3) + template[:, None]
            rec = _masked_l1(out["recon"].view(b, t, -1), offsets, lengths) / self.vqvae.motion_scale
            return {"pred": pred, "losses": {"rec": rec, "vq": out["vq"]}}
        with torch.no_grad():
            z_gt = self.vqvae.encode(offsets, lengths)
            codes_gt = self.vqvae.quantizer.codebook[self.vqvae.quantizer.nearest(z_gt)]  # (B, T, n, c)
        memory = self.encode_audio(audio, audio_lengths, t, lengths, self.cfg.fps)
        style = self.style_emb(subject)[:, None]  # (B, 1, D)
        if self.cfg.teacher_forcing:
            prev = previous_frame_tokens(self.vertice_map, offsets)  # (B, T, D)
            hidden = decode_full(self.transformer_decoder, self.embed(prev + style), memory,
                                 self.cfg.n_heads, self.cfg.period, self.cfg.audio_ratio, self.cfg.context)
            feats = self.features(hidden)
            pred_offsets = self.vqvae.decode(self.vqvae.quantizer.lookup(feats))
        else:
            pred_offsets, feats = self._decode_cached(memory, style, t)
        pred = pred_offsets.view(b, t, self.n_vertices, 3) + template[:, None]
        reg = masked_mse(feats, codes_gt, lengths)
        return {"pred": pred, "losses": {"mse": masked_mse(pred, vertices, lengths), "reg": reg}}

    # ---- inference ------------------------------------------------------------------------------
    def readout_map(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(W, b)``: a frame's offsets ``= h @ W.T + b`` of its VQ decoder output ``h``
        (:meth:`MotionVQVAE.readout_map`)."""
        return self.vqvae.readout_map()

    def decoding(self, style: torch.Tensor, n_frames: int | None, like: torch.Tensor) -> "CodeTalkerDecoding":
        """A frame-by-frame decoder (caches in the predictor and the VQ decoder), or streaming (None)."""
        return CodeTalkerDecoding(self, style, n_frames, like)

    def _decode_cached(self, memory: torch.Tensor, style: torch.Tensor, n_frames: int):
        """Frame-by-frame decoding with caches; ``(B, T, V*3)`` offsets and ``(B, T, n, c)`` features."""
        r = self.cfg.audio_ratio
        dec = self.decoding(style, n_frames, memory)
        hidden, feats = [], []
        for t in range(n_frames):
            hidden.append(dec.step(memory[:, t * r:(t + 1) * r]))
            feats.append(dec.feat)
        return dec.offsets(torch.cat(hidden, 1)), torch.cat(feats, 1)

    def _decode_recompute(self, memory: torch.Tensor, style: torch.Tensor, n_frames: int):
        """Reference: the real forward over the whole prefix at every frame (O(T^2))."""
        b = memory.shape[0]
        prev = memory.new_zeros(b, 1, self.n_vertices * 3)  # (B, 1, V*3)
        for _ in range(n_frames):
            hidden = decode_full(self.transformer_decoder, self.embed(self.vertice_map(prev) + style), memory,
                                 self.cfg.n_heads, self.cfg.period, self.cfg.audio_ratio, self.cfg.context)
            feats = self.features(hidden)
            offsets = self.vqvae.decode(self.vqvae.quantizer.lookup(feats))  # (B, t+1, V*3)
            prev = torch.cat([prev, offsets[:, -1:]], 1)
        return offsets, feats

    @torch.no_grad()
    def generate(self, audio: torch.Tensor, audio_lengths: torch.Tensor, template: torch.Tensor,
                 subject: torch.Tensor, n_frames: int | torch.Tensor | None = None,
                 fps: float | None = None) -> torch.Tensor:
        """Animate speech with cached autoregressive decoding (linear in T).

        Args and Returns: as :meth:`avguide.animators.faceformer.FaceFormer.generate`.
        """
        return generate_meshes(self, audio, audio_lengths, template, subject, n_frames, fps,
                               lambda memory, s, t: self._decode_cached(memory, self.style_emb(s)[:, None], t)[0])

    @torch.no_grad()
    def generate_recompute(self, audio: torch.Tensor, audio_lengths: torch.Tensor, template: torch.Tensor,
                           subject: torch.Tensor, n_frames: int | torch.Tensor | None = None,
                           fps: float | None = None) -> torch.Tensor:
        """:meth:`generate` the published O(T^2) way; the reference for the cache."""
        return generate_meshes(self, audio, audio_lengths, template, subject, n_frames, fps,
                               lambda memory, s, t: self._decode_recompute(memory, self.style_emb(s)[:, None], t)[0])


class CodeTalkerDecoding:
    """CodeTalker's autoregressive decoder state: one frame per :meth:`step` through the predictor,
    the codebook and the causal VQ decoder (training, offline and streamed animation all run it).

    The next token ``vertice_map(readout(h)) + style`` is affine in the VQ decoder's output ``h``
    (:meth:`MotionVQVAE.readout`), so the loop uses the folded ``(D, H)`` map and never touches the
    ``V*3``-wide layers; :meth:`offsets` reads the frames out afterwards, all at once.

    Args:
        model: the CodeTalker. style: ``(B, 1, D)`` style embedding.
        n_frames: frames to decode, or None (streaming; needs ``context`` and ``vq.context`` > 0).
        like: a tensor giving dtype and device.
    """

    def __init__(self, model: CodeTalker, style: torch.Tensor, n_frames: int | None, like: torch.Tensor):
        cfg = model.cfg
        self.model = model
        self.stepper = DecoderStepper(model.transformer_decoder, cfg.n_heads, cfg.period, cfg.context, n_frames, like)
        self.motion = DecodeStepper(model.vqvae, n_frames, like)
        self.pe = periodic_encoding(cfg.period, cfg.feature_dim, cfg.period).to(like)  # (period, D): one cycle
        self.fold_w, self.fold_b = fold_feedback(model.vertice_map, model.readout_map(), style)  # (D, H), (B, 1, D)
        self.token = model.vertice_map(like.new_zeros(style.shape[0], 1, model.n_vertices * 3)) + style  # (B, 1, D)
        self.feat: torch.Tensor | None = None  # the last step's code features
        self.t = 0

    def step(self, memory: torch.Tensor) -> torch.Tensor:
        """``(B, r, D)`` aligned audio memory -> the frame's ``(B, 1, H)`` VQ decoder output
        (:meth:`offsets` of it are its offsets); its ``(B, 1, n, c)`` code features are left in
        ``self.feat`` (stage 2's code regression)."""
        m = self.model
        self.feat = m.features(self.stepper.step(m.pe_dropout(self.token + self.pe[self.t % len(self.pe)]), memory))
        h = self.motion.step(m.vqvae.quantizer.lookup(self.feat))  # (B, 1, H)
        self.token = h @ self.fold_w.T + self.fold_b  # == vertice_map(readout(h)) + style
        self.t += 1
        return h

    def offsets(self, hidden: torch.Tensor) -> torch.Tensor:
        """``(B, t, H)`` outputs of :meth:`step` -> ``(B, t, V*3)`` offsets from the template."""
        return self.model.vqvae.readout(hidden)


def _masked_l1(pred: torch.Tensor, target: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Mean absolute error over valid frames of ``(B, T, ...)`` tensors."""
    valid = padding_mask(lengths, pred.shape[1])  # (B, T)
    err = (pred - target).abs().flatten(2).mean(-1)  # (B, T)
    return (err * valid).sum() / valid.sum().clamp(min=1)
