"""The Auto-AVSR lip-reading expert: audio-visual (``build_avsr``) or visual-only (``build_vsr``);
also audio-only (``modality="audio"``), to pretrain the AV expert's audio encoder.

    video (B,T,1,H,W) -> encoder ------------------------.
                                                          +-> fusion MLP -> x (B,T,adim)
    audio (B,L) -------> aux_encoder (640 samples/frame) -'      (AV only; VSR: x = video feat)
                                                          (``fusion_residual``: x = audio feat + MLP)
    x -> ctc.ctc_lo -> CTC loss / prefix scores
    x -> decoder([sos] + y) -> label-smoothed attention loss
    loss = mtlalpha * loss_ctc + (1 - mtlalpha) * loss_att

Module names equal Auto-AVSR's, so ``load_state_dict(strict=True)`` accepts its checkpoints
(see :mod:`avguide.lipreader.checkpoint`). Both models take the same call; the visual-only one
rejects audio. Inputs must already be normalised (:mod:`avguide.lipreader.preprocess`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from avguide.errors import BadInputError
from avguide.lipreader.config import ExpertConfig
from avguide.lipreader.conformer import ConformerEncoder
from avguide.lipreader.decoder import TransformerDecoder
from avguide.lipreader.frontends import AudioFrontend, MelFrontend, VisualFrontend
from avguide.lipreader.losses import (add_sos_eos, ctc_loss, ctc_unfit, label_smoothing_loss,
                                      token_accuracy)
from avguide.lipreader.preprocess import SAMPLES_PER_FRAME, length_mask


class MLPHead(nn.Module):
    """Fusion MLP: Linear(2*adim, hdim) -> BatchNorm/LayerNorm -> ReLU -> Linear(hdim, adim)."""

    def __init__(self, idim: int, hdim: int, odim: int, norm: str):
        super().__init__()
        self.fc1 = nn.Linear(idim, hdim)
        self.bn1 = nn.BatchNorm1d(hdim) if norm == "batchnorm" else nn.LayerNorm(hdim)
        self.fc2 = nn.Linear(hdim, odim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, idim) -> (B, T, odim)."""
        x = self.fc1(x)
        if isinstance(self.bn1, nn.BatchNorm1d):
            x = self.bn1(x.transpose(1, 2)).transpose(1, 2)  # normalise channels over B*T
        else:
            x = self.bn1(x)
        return self.fc2(torch.relu(x))


class CTCHead(nn.Module):
    """Dropout -> Linear(adim, odim) -> log-softmax (module name ``ctc_lo``)."""

    def __init__(self, dim: int, odim: int, dropout: float):
        super().__init__()
        self.ctc_lo = nn.Linear(dim, odim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, adim) -> (B, T, odim) float log-probabilities."""
        return torch.log_softmax(self.ctc_lo(self.dropout(x)), dim=-1)


@dataclass
class Encoded:
    """Encoder outputs of one batch.

    Attributes:
        features: (B, T, adim) what CTC and the decoder read (fused features for AV).
        lengths: (B,) int64 valid frames (the video lengths).
        mask: (B, 1, T) bool, True = valid frame.
        video_features: (B, T, adim) visual encoder output.
        audio_features: (B, T, adim) audio encoder output, or None (visual-only).
    """

    features: torch.Tensor
    lengths: torch.Tensor
    mask: torch.Tensor
    video_features: torch.Tensor
    audio_features: torch.Tensor | None


class LipReadingExpert(nn.Module):
    """Auto-AVSR encoder(s) + fusion + CTC head + attention decoder; build with
    :func:`build_avsr` / :func:`build_vsr` / :func:`build_expert`."""

    def __init__(self, cfg: ExpertConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.aux_encoder = self.fusion = None
        if cfg.modality == "audio":  # audio-only: the audio encoder is the main one
            self.encoder = _audio_encoder(cfg)
        else:
            self.encoder = ConformerEncoder(
                VisualFrontend(cfg.visual_widths), cfg.adim, cfg.aheads, cfg.eunits, cfg.elayers,
                cfg.cnn_module_kernel, cfg.dropout_rate, cfg.transformer_attn_dropout_rate)
        if cfg.modality == "av":
            self.aux_encoder = _audio_encoder(cfg)
            self.fusion = MLPHead(cfg.adim + cfg.aux_adim, cfg.fusion_hdim, cfg.adim, cfg.fusion_norm)
            if cfg.fusion_residual:  # fused = audio features at the start
                nn.init.zeros_(self.fusion.fc2.weight)
                nn.init.zeros_(self.fusion.fc2.bias)
        self.proj_decoder = nn.Linear(cfg.adim, cfg.ddim) if cfg.adim != cfg.ddim else None
        self.decoder = None
        if cfg.mtlalpha < 1.0:
            self.decoder = TransformerDecoder(cfg.odim, cfg.ddim, cfg.dheads, cfg.dunits,
                                              cfg.dlayers, cfg.dropout_rate,
                                              cfg.transformer_attn_dropout_rate)
        self.ctc = CTCHead(cfg.adim, cfg.odim, cfg.dropout_rate) if cfg.mtlalpha > 0.0 else None
        self.blank = 0
        self.sos = self.eos = cfg.odim - 1

    def encode(self, video: torch.Tensor, video_lengths: torch.Tensor,
               audio: torch.Tensor | None = None,
               audio_lengths: torch.Tensor | None = None) -> Encoded:
        """Run the encoder(s) and the fusion.

        Args:
            video: (B, T, 1, H, W) float normalised grayscale lip frames at 25 fps (None for
                the audio-only model).
            video_lengths: (B,) int valid frames (25 fps; for the audio-only model too).
            audio: AV model: (B, L) or (B, L, 1) float normalised 16 kHz audio with
                L // 640 == T; audio-only model: L = T * 640; visual-only model: must be None.
            audio_lengths: (B,) int valid samples (AV model; divided by 640 for its mask).
        Returns:
            :class:`Encoded`.
        Raises:
            BadInputError: wrong shapes, lengths out of range, audio given to a visual-only
                model or missing for an AV model, or audio/video frame counts that differ.
        """
        if self.cfg.modality == "audio":
            return self._encode_audio_only(video, video_lengths, audio, audio_lengths)
        if video is None or video.dim() != 5 or video.shape[2] != 1:
            raise BadInputError(f"video: expected (B, T, 1, H, W) grayscale frames, "
                                f"got {None if video is None else tuple(video.shape)}")
        B, T = video.shape[:2]
        mask = length_mask(video_lengths.to(video.device), T).unsqueeze(1)  # (B, 1, T)
        video_feat = self.encoder(video, mask)  # (B, T, adim)
        if self.aux_encoder is None:
            if audio is not None:
                raise BadInputError("audio: this expert is visual-only; pass audio=None")
            return Encoded(video_feat, video_lengths, mask, video_feat, None)
        if audio is None or audio_lengths is None:
            raise BadInputError("audio / audio_lengths: required by the audio-visual expert")
        if audio.dim() == 3:
            audio = audio.squeeze(-1)  # (B, L)
        if audio.dim() != 2 or audio.shape[0] != B or audio.shape[1] // SAMPLES_PER_FRAME != T:
            raise BadInputError(
                f"audio: expected (B={B}, L) with L // {SAMPLES_PER_FRAME} == T = {T} video "
                f"frames (L in [{T * SAMPLES_PER_FRAME}, {(T + 1) * SAMPLES_PER_FRAME})), "
                f"got shape {tuple(audio.shape)}")
        audio_frames = torch.div(audio_lengths, SAMPLES_PER_FRAME, rounding_mode="trunc")
        audio_mask = length_mask(audio_frames.to(audio.device), T).unsqueeze(1)  # (B, 1, T)
        audio_feat = self.aux_encoder(audio, audio_mask)  # (B, T, aux_adim)
        fused = self.fusion(torch.cat([video_feat, audio_feat], dim=-1))  # (B, T, adim)
        if self.cfg.fusion_residual:
            fused = fused + audio_feat
        return Encoded(fused, video_lengths, mask, video_feat, audio_feat)

    def _encode_audio_only(self, video, frame_lengths: torch.Tensor, audio: torch.Tensor | None,
                           audio_lengths: torch.Tensor | None) -> Encoded:
        """Audio-only model: ``audio`` (B, L) with L a multiple of 640 -> T = L // 640 frames;
        ``frame_lengths`` (B,) are the valid frames (``video`` must be None)."""
        if video is not None:
            raise BadInputError("video: this expert is audio-only; pass video=None")
        if audio is None or audio_lengths is None:
            raise BadInputError("audio / audio_lengths: required by the audio-only expert")
        if audio.dim() == 3:
            audio = audio.squeeze(-1)  # (B, L)
        if audio.dim() != 2 or audio.shape[1] % SAMPLES_PER_FRAME or audio.shape[1] == 0:
            raise BadInputError(f"audio: expected (B, L) with L a positive multiple of {SAMPLES_PER_FRAME} "
                                f"samples (one 25 fps frame each), got shape {tuple(audio.shape)}")
        T = audio.shape[1] // SAMPLES_PER_FRAME
        mask = length_mask(frame_lengths.to(audio.device), T).unsqueeze(1)  # (B, 1, T)
        feat = self.encoder(audio, mask)  # (B, T, adim)
        return Encoded(feat, frame_lengths, mask, feat, feat)

    def ctc_log_probs(self, encoded: Encoded) -> torch.Tensor:
        """(B, T, odim) float CTC log-probabilities of the encoded batch."""
        if self.ctc is None:
            raise BadInputError("this expert has no CTC head (mtlalpha = 0)")
        return self.ctc(encoded.features)

    def decoder_memory(self, encoded: Encoded) -> torch.Tensor:
        """(B, T, ddim) features the attention decoder attends to."""
        x = encoded.features
        return self.proj_decoder(x) if self.proj_decoder is not None else x

    def losses(self, encoded: Encoded, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """Named losses for padded targets.

        Args:
            encoded: output of :meth:`encode`.
            targets: (B, S) int64 token ids in [1, odim-2], padded with -1.
        Returns:
            {"loss": mtlalpha*loss_ctc + (1-mtlalpha)*loss_att, "loss_ctc", "loss_att",
            "acc": decoder token accuracy (teacher forcing), "ctc_unfit": the number of
            utterances whose target has more tokens (plus repeats) than they have encoder frames,
            whose CTC loss is therefore 0}; a term the config disables (mtlalpha 0 or 1) is a 0
            tensor and then "acc" is NaN without a decoder.
        Raises:
            BadInputError: targets of the wrong batch size or with ids outside [1, odim-2].
        """
        x = encoded.features
        valid = targets[targets != -1]
        if targets.dim() != 2 or targets.shape[0] != x.shape[0] or (
                valid.numel() and (int(valid.min()) < 1 or int(valid.max()) > self.cfg.odim - 2)):
            raise BadInputError(f"targets: expected (B={x.shape[0]}, S) ids in [1, "
                                f"{self.cfg.odim - 2}] padded with -1, got shape "
                                f"{tuple(targets.shape)}")
        zero = x.new_zeros(())
        loss_ctc, unfit = zero, zero
        if self.ctc is not None:
            loss_ctc = ctc_loss(self.ctc(x), encoded.lengths, targets, self.blank)
            unfit = ctc_unfit(encoded.lengths, targets).sum().to(zero)
        loss_att, acc = zero, x.new_full((), float("nan"))
        if self.decoder is not None:
            ys_in, ys_out = add_sos_eos(targets, self.sos, self.eos)
            logits = self.decoder(ys_in, self.decoder_memory(encoded), encoded.mask)
            loss_att = label_smoothing_loss(logits, ys_out, self.cfg.lsm_weight)
            acc = token_accuracy(logits.detach(), ys_out)
        alpha = self.cfg.mtlalpha
        return {"loss": alpha * loss_ctc + (1.0 - alpha) * loss_att, "loss_ctc": loss_ctc,
                "loss_att": loss_att, "acc": acc, "ctc_unfit": unfit}

    def forward(self, video: torch.Tensor, video_lengths: torch.Tensor,
                audio: torch.Tensor | None = None, audio_lengths: torch.Tensor | None = None,
                targets: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Encode and score a padded batch: :meth:`encode` then :meth:`losses`.

        Args:
            video, video_lengths, audio, audio_lengths: see :meth:`encode` (audio None for the
                visual-only expert, e.g. ``vsr(video, lengths, targets=y)``).
            targets: (B, S) int64 ids padded with -1 (required).
        Returns:
            dict of () float tensors: loss, loss_ctc, loss_att, acc, ctc_unfit.
        Raises:
            BadInputError: see :meth:`encode` and :meth:`losses`; ``targets`` missing.
        """
        if targets is None:
            raise BadInputError("targets: required to compute the expert's losses")
        return self.losses(self.encode(video, video_lengths, audio, audio_lengths), targets)


def _audio_encoder(cfg: ExpertConfig) -> ConformerEncoder:
    """The audio encoder (``cfg.audio_frontend`` front-end + Conformer) of the ``aux_*`` fields."""
    frontend = MelFrontend(cfg.audio_widths) if cfg.audio_frontend == "mel" else AudioFrontend(cfg.audio_widths)
    return ConformerEncoder(frontend, cfg.aux_adim, cfg.aux_aheads, cfg.aux_eunits,
                            cfg.aux_elayers, cfg.aux_cnn_module_kernel, cfg.aux_dropout_rate,
                            cfg.aux_transformer_attn_dropout_rate)


def build_expert(cfg: ExpertConfig) -> LipReadingExpert:
    """Expert of ``cfg.modality`` ("av", "video" or "audio") with every hyper-parameter from ``cfg``."""
    return LipReadingExpert(cfg)


def build_avsr(cfg: ExpertConfig) -> LipReadingExpert:
    """Audio-visual expert (``cfg.modality`` must be "av").

    Raises:
        BadInputError: the config is invalid or not audio-visual.
    """
    if cfg.modality != "av":
        raise BadInputError(f"build_avsr: config modality must be 'av', got {cfg.modality!r}")
    return LipReadingExpert(cfg)


def build_vsr(cfg: ExpertConfig) -> LipReadingExpert:
    """Visual-only expert (``cfg.modality`` must be "video").

    Raises:
        BadInputError: the config is invalid or not visual-only.
    """
    if cfg.modality != "video":
        raise BadInputError(f"build_vsr: config modality must be 'video', got {cfg.modality!r}")
    return LipReadingExpert(cfg)
