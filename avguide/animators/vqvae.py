"""CodeTalker's stage 1: a vector-quantised autoencoder of facial motion (the discrete motion prior).

Per frame, the motion (offsets from the template, ``V*3``) is encoded to ``n_codes`` vectors of
``code_dim`` ("face_quan_num" x "zquant_dim": 16 x 64 for VOCASET, 8 x 128 for BIWI), each
replaced by its nearest entry of a ``codebook_size``-entry codebook, and decoded back.

    encoder: Linear(V*3 -> H) - LeakyReLU - Conv1d(k) - LeakyReLU - instance norm over time -
             periodic PE - transformer (bidirectional biased mask) - Linear(H -> n_codes*code_dim)
    decoder: Linear(n_codes*code_dim -> H) - causal Conv1d(k) - LeakyReLU - periodic PE -
             transformer (causal biased mask) - Linear(H -> V*3)

Difference from the public CodeTalker (documented choice): its decoder is non-causal (full
attention, instance norm over time, centred convolutions), so decoding the prefix at every frame
changes earlier frames and cannot be cached. Ours is causal, so stage 2 can decode frame by frame
with a key/value cache (:class:`DecodeStepper`) and still equal the full decode. Quantisation uses
the straight-through estimator, a commitment loss (beta) and either a codebook loss (published)
or exponential-moving-average codebook updates.

Two things keep the codebook from collapsing onto one static code (measured on the synthetic
benchmark, where without them even an unquantised autoencoder collapses to the mean pose within
~20 Adam steps): the encoder's instance norm over each sequence's valid frames (as in the public
encoder) scales the motion up against the per-sequence constant and the periodic encoding, and
:meth:`MotionVQVAE.init_codebook` starts the codebook at encoder outputs of real motion (the
published uniform(+-1/K) start lies far from them and the commitment loss then pulls every
frame onto the nearest entry near zero).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from avguide.animators.common import CausalEncoderStepper, encode_full
from avguide.animators.masks import padding_mask, periodic_encoding


@dataclass
class VQVAEConfig:
    """Stage-1 hyper-parameters (defaults: CodeTalker VOCASET).

    hidden, n_layers, n_heads, ff_dim: transformer width, depth, heads, feed-forward width.
    n_codes, code_dim, codebook_size: codes per frame, code width, codebook entries.
    beta: commitment weight. codebook_update: ``loss`` (codebook loss) or ``ema``.
    ema_decay: EMA decay. kernel: temporal conv size (odd). neg_slope: LeakyReLU slope.
    dropout: transformer dropout. period: bias / positional period in frames (= fps).
    context: attention window in frames of both transformers (0: the whole sequence).
    """

    hidden: int = 1024
    n_layers: int = 6
    n_heads: int = 8
    ff_dim: int = 1536
    n_codes: int = 16
    code_dim: int = 64
    codebook_size: int = 256
    beta: float = 0.25
    codebook_update: Literal["loss", "ema"] = "loss"
    ema_decay: float = 0.99
    kernel: int = 5
    neg_slope: float = 0.2
    dropout: float = 0.1
    period: int = 30
    context: int = 0

    def check(self) -> list[str]:
        errors = []
        for name in ("hidden", "n_layers", "n_heads", "ff_dim", "n_codes", "code_dim", "codebook_size", "period"):
            if getattr(self, name) < 1:
                errors.append(f"{name}: must be >= 1, got {getattr(self, name)}")
        if self.hidden % max(self.n_heads, 1) or self.hidden % 2:
            errors.append(f"hidden: must be even and divisible by n_heads ({self.n_heads}), got {self.hidden}")
        if self.kernel < 1 or self.kernel % 2 == 0:
            errors.append(f"kernel: must be odd and >= 1, got {self.kernel}")
        if self.context < 0:
            errors.append(f"context: must be >= 0 frames (0: the whole sequence), got {self.context}")
        if self.codebook_update not in ("loss", "ema"):
            errors.append(f"codebook_update: {self.codebook_update!r} is not one of loss, ema")
        if not 0.0 < self.ema_decay < 1.0:
            errors.append(f"ema_decay: must be in (0, 1), got {self.ema_decay}")
        if not 0.0 <= self.dropout < 1.0:
            errors.append(f"dropout: must be in [0, 1), got {self.dropout}")
        return errors


def _gelu(x: torch.Tensor) -> torch.Tensor:
    """GELU as a plain function: unlike ``"gelu"`` it keeps torch's fused inference path of
    ``nn.TransformerEncoderLayer`` off, which does not apply per-head ``(B*H, T, T)`` float
    masks the way the regular path does (measured: outputs differ past one bias period)."""
    return F.gelu(x)


class VectorQuantizer(nn.Module):
    """Nearest-neighbour codebook with straight-through gradients.

    Args:
        size: codebook entries K. dim: code width. beta: commitment weight.
        update: ``loss`` (codebook learnt by the codebook loss) or ``ema`` (moving averages).
        decay: EMA decay.
    """

    def __init__(self, size: int, dim: int, beta: float, update: str = "loss", decay: float = 0.99):
        super().__init__()
        self.beta, self.update, self.decay = beta, update, decay
        self.codebook = nn.Parameter(torch.empty(size, dim).uniform_(-1 / size, 1 / size),
                                     requires_grad=update == "loss")
        if update == "ema":
            self.register_buffer("ema_count", torch.ones(size))
            self.register_buffer("ema_sum", self.codebook.detach().clone())

    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """Indices of the nearest codebook entries (squared L2).

        Args:
            z: ``(..., dim)``.
        Returns:
            ``(...)`` int64 indices.
        """
        flat = z.reshape(-1, z.shape[-1])  # (N, dim)
        e = self.codebook
        dist = flat.square().sum(1, keepdim=True) - 2 * flat @ e.T + e.square().sum(1)[None]  # (N, K)
        return dist.argmin(1).view(z.shape[:-1])

    def lookup(self, z: torch.Tensor) -> torch.Tensor:
        """Straight-through quantisation: forward value is the nearest code, gradient is identity.

        Args:
            z: ``(..., dim)``.
        Returns:
            ``(..., dim)``.
        """
        q = self.codebook[self.nearest(z)]
        return z + (q - z).detach()

    def forward(self, z: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Quantise, with the VQ loss over valid frames (and EMA updates when training).

        Args:
            z: ``(B, T, n_codes, dim)`` encoder output.
            valid: ``(B, T)`` bool, valid frames.
        Returns:
            straight-through codes ``(B, T, n_codes, dim)``, scalar VQ loss, indices ``(B, T, n_codes)``.
        """
        idx = self.nearest(z)
        q = self.codebook[idx]  # (B, T, n, dim)
        w = valid[..., None, None].to(z.dtype)
        denom = (w.sum() * z.shape[2] * z.shape[3]).clamp(min=1)
        commit = ((z - q.detach()).square() * w).sum() / denom
        loss = self.beta * commit
        if self.update == "loss":
            loss = loss + ((q - z.detach()).square() * w).sum() / denom
        elif self.training:
            self._ema_update(z.detach()[valid], idx[valid])
        return z + (q - z).detach(), loss, idx

    @torch.no_grad()
    def _ema_update(self, z: torch.Tensor, idx: torch.Tensor) -> None:
        """EMA of code counts and sums (Laplace-smoothed counts), then codebook = sum / count."""
        one_hot = F.one_hot(idx.reshape(-1), self.codebook.shape[0]).to(z.dtype)  # (N, K)
        self.ema_count.mul_(self.decay).add_(one_hot.sum(0), alpha=1 - self.decay)
        self.ema_sum.mul_(self.decay).add_(one_hot.T @ z.reshape(-1, z.shape[-1]), alpha=1 - self.decay)
        n = self.ema_count.sum()
        count = (self.ema_count + 1e-5) / (n + self.codebook.shape[0] * 1e-5) * n
        self.codebook.data.copy_(self.ema_sum / count[:, None])


class MotionVQVAE(nn.Module):
    """The stage-1 autoencoder for ``n_vertices``-vertex meshes (see the module docstring)."""

    def __init__(self, cfg: VQVAEConfig, n_vertices: int):
        super().__init__()
        self.cfg = cfg
        h, k = cfg.hidden, cfg.kernel
        width = cfg.n_codes * cfg.code_dim

        def transformer() -> nn.TransformerEncoder:
            layer = nn.TransformerEncoderLayer(h, cfg.n_heads, cfg.ff_dim, cfg.dropout, activation=_gelu,
                                               batch_first=True)
            return nn.TransformerEncoder(layer, cfg.n_layers, enable_nested_tensor=False)

        self.enc_in = nn.Linear(n_vertices * 3, h)
        self.enc_conv = nn.Conv1d(h, h, k, padding=k // 2)
        self.enc_transformer = transformer()
        self.enc_out = nn.Linear(h, width)
        self.quantizer = VectorQuantizer(cfg.codebook_size, cfg.code_dim, cfg.beta, cfg.codebook_update,
                                         cfg.ema_decay)
        self.dec_in = nn.Linear(width, h)
        self.dec_conv = nn.Conv1d(h, h, k)  # causal: left-padded by k-1 frames
        self.dec_transformer = transformer()
        self.dec_out = nn.Linear(h, n_vertices * 3)
        # Motion is tiny in metres (offsets ~1e-3): the codec works on offsets / motion_scale (the
        # training data's offset std, set by the trainer before stage 1, saved with the weights).
        self.register_buffer("motion_scale", torch.ones(()))

    def _act(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x, self.cfg.neg_slope)

    def _pe(self, n: int, like: torch.Tensor) -> torch.Tensor:
        return periodic_encoding(n, self.cfg.hidden, self.cfg.period).to(like)

    def encode(self, offsets: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Continuous codes of a padded motion batch.

        Args:
            offsets: ``(B, T, V*3)`` vertex offsets from the template.
            lengths: ``(B,)`` valid frames (padding never influences valid frames).
        Returns:
            ``(B, T, n_codes, code_dim)``.
        """
        b, t, _ = offsets.shape
        valid = padding_mask(lengths, t).to(offsets.dtype)[..., None]  # (B, T, 1)
        # enc_in(offsets / motion_scale), dividing the (B, T, H) product instead of the V*3-wide input
        x = self._act(F.linear(offsets, self.enc_in.weight) / self.motion_scale + self.enc_in.bias) * valid
        x = self._act(self.enc_conv(x.transpose(1, 2)).transpose(1, 2))  # (B, T, H)
        x = masked_instance_norm(x, lengths)
        x = encode_full(self.enc_transformer, x + self._pe(t, x), lengths, self.cfg.n_heads,
                        self.cfg.period, causal=False, context=self.cfg.context)
        return self.enc_out(x).view(b, t, self.cfg.n_codes, self.cfg.code_dim)

    @torch.no_grad()
    def init_codebook(self, offsets: torch.Tensor, lengths: torch.Tensor, generator: torch.Generator) -> None:
        """Set the codebook to encoder outputs of real motion (before stage-1 training).

        Each entry becomes one code vector of a randomly chosen valid frame and code slot (distinct
        vectors while there are enough; repeated draws otherwise). The encoder runs in eval mode.

        Args:
            offsets: ``(B, T, V*3)`` training motion (offsets from the template), metres.
            lengths: ``(B,)`` valid frames.
            generator: CPU generator choosing the vectors (same seed, same codebook).
        """
        was_training = self.training
        self.eval()
        z = self.encode(offsets, lengths)  # (B, T, n_codes, code_dim)
        self.train(was_training)
        pool = z[padding_mask(lengths, z.shape[1])].reshape(-1, z.shape[-1])  # (N, code_dim)
        size = self.quantizer.codebook.shape[0]
        if len(pool) >= size:
            pick = torch.randperm(len(pool), generator=generator)[:size]
        else:
            pick = torch.randint(len(pool), (size,), generator=generator)
        self.quantizer.codebook.copy_(pool[pick.to(pool.device)])
        if self.quantizer.update == "ema":
            self.quantizer.ema_count.fill_(1.0)
            self.quantizer.ema_sum.copy_(self.quantizer.codebook)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Causal decode of quantised codes (frame ``t`` depends on codes ``0..t`` only).

        Args:
            codes: ``(B, T, n_codes, code_dim)``.
        Returns:
            ``(B, T, V*3)`` offsets.
        """
        b, t = codes.shape[:2]
        x = self.dec_in(codes.flatten(2))  # (B, T, H)
        x = F.pad(x.transpose(1, 2), (self.cfg.kernel - 1, 0))  # (B, H, k-1+T)
        x = self._act(self.dec_conv(x).transpose(1, 2))  # (B, T, H)
        x = encode_full(self.dec_transformer, x + self._pe(t, x), torch.full((b,), t, device=x.device),
                        self.cfg.n_heads, self.cfg.period, causal=True, context=self.cfg.context)
        return self.readout(x)

    def readout(self, hidden: torch.Tensor) -> torch.Tensor:
        """The decoder's last layer: ``(B, T, H)`` transformer outputs -> ``(B, T, V*3)`` offsets
        (affine: ``dec_out`` scaled by ``motion_scale``)."""
        scale = self.motion_scale  # dec_out(hidden) * scale, scaling the H-wide input instead of the V*3-wide output
        return F.linear(hidden * scale, self.dec_out.weight, self.dec_out.bias * scale)

    def readout_map(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(W, b)``, ``W`` (V*3, H), ``b`` (V*3,): :meth:`readout` as one affine map,
        ``readout(h) == h @ W.T + b``."""
        return self.dec_out.weight * self.motion_scale, self.dec_out.bias * self.motion_scale

    def forward(self, offsets: torch.Tensor, lengths: torch.Tensor) -> dict:
        """Reconstruct motion through the codebook (stage-1 training).

        Args:
            offsets: ``(B, T, V*3)``; lengths: ``(B,)``.
        Returns:
            ``{"recon": (B, T, V*3), "vq": scalar VQ loss, "indices": (B, T, n_codes)}``.
        """
        z = self.encode(offsets, lengths)
        q, vq_loss, idx = self.quantizer(z, padding_mask(lengths, offsets.shape[1]))
        return {"recon": self.decode(q), "vq": vq_loss, "indices": idx}


def masked_instance_norm(x: torch.Tensor, lengths: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Normalise each sequence's channels to zero mean, unit variance over its valid frames.

    Args:
        x: ``(B, T, C)`` features. lengths: ``(B,)`` valid frames (padding never influences them).
        eps: added to the variance.
    Returns:
        ``(B, T, C)``, zero on padded frames.
    """
    valid = padding_mask(lengths, x.shape[1]).to(x.dtype)[..., None]  # (B, T, 1)
    n = valid.sum(1, keepdim=True).clamp(min=1)  # (B, 1, 1)
    mean = (x * valid).sum(1, keepdim=True) / n  # (B, 1, C)
    var = ((x - mean).square() * valid).sum(1, keepdim=True) / n
    return (x - mean) / (var + eps).sqrt() * valid


class DecodeStepper:
    """Frame-by-frame :meth:`MotionVQVAE.decode` with a key/value cache and a conv history.

    :meth:`step` stops before the ``V*3``-wide last layer (:meth:`MotionVQVAE.readout`): a caller
    that feeds the frame back (CodeTalker's predictor) folds that affine layer into its own map,
    and reads out many frames at once, one matrix product instead of one per frame.

    Args:
        vqvae: the autoencoder. n_frames: frames that will be stepped, or None (streaming; needs
            ``vq.context > 0``).
        like: ``(B, ...)`` tensor giving batch size, dtype and device.
    """

    def __init__(self, vqvae: MotionVQVAE, n_frames: int | None, like: torch.Tensor):
        cfg = vqvae.cfg
        self.vqvae = vqvae
        self.pe = periodic_encoding(cfg.period, cfg.hidden, cfg.period).to(like)  # (period, H): one cycle
        self.t = 0
        self.history = like.new_zeros(like.shape[0], cfg.hidden, cfg.kernel - 1)  # (B, H, k-1)
        self.stepper = CausalEncoderStepper(vqvae.dec_transformer, cfg.n_heads, cfg.period, cfg.context, n_frames,
                                            like)

    def step(self, codes: torch.Tensor) -> torch.Tensor:
        """``(B, 1, n_codes, code_dim)`` codes of the next frame -> its ``(B, 1, H)`` transformer
        output (:meth:`MotionVQVAE.readout` of it is the frame's offsets)."""
        vq = self.vqvae
        x = vq.dec_in(codes.flatten(2)).transpose(1, 2)  # (B, H, 1)
        window = torch.cat([self.history, x], 2)  # (B, H, k)
        self.history = window[:, :, 1:]
        x = vq._act(vq.dec_conv(window).transpose(1, 2))  # (B, 1, H)
        x = self.stepper.step(x + self.pe[self.t % len(self.pe)])
        self.t += 1
        return x
