"""Streaming audio features: the streaming mel encoder's output for speech arriving in chunks.

:class:`FeatureStream` gives, chunk by chunk, exactly the features
``MelEncoder(audio, lengths, rate, n_out)`` gives for the whole clip (the same arithmetic on the
same numbers, up to float rounding of the convolutions' blocking), for an encoder with a bounded
look-ahead (``AudioEncoderConfig.lookahead >= 0``). A feature for time ``tau`` is emitted as soon
as the speech up to ``tau + encoder_lookahead_s`` has arrived; :meth:`FeatureStream.finish`
emits the rest the way the offline encoder treats the end of a clip (zeros past the end, the
last frame held by the interpolation). The convolutions run incrementally: each layer keeps the
last ``(kernel - 1) * dilation`` frames of its input (what its next output reads), so a push costs
time in proportion to its new frames, and memory is constant: those histories (64 frames over
all layers for the default kernel), a few samples and mel frames. The work waits for an output:
a chunk that completes none (a 20 ms chunk, at 30 outputs a second, often does) only keeps its
samples, and the next output's push runs the mel frames and convolutions over both chunks at
once. The convolutions' weights (5.6 MB for the shipped encoder) are read once per such push,
which on a small CPU costs more than the arithmetic of a few frames.

    stream = FeatureStream(encoder, rate=30.0)
    for chunk in chunks:                 # (n,) float32 16 kHz
        feats = stream.push(chunk)       # (k, C) new features at 30 Hz
    feats = stream.finish()              # the remaining ones
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from avguide import AUDIO_RATE
from avguide.audio.encoders import MelEncoder
from avguide.audio.mel import LOG_MEL_SHIFT

WINDOW = 400
"""STFT window (25 ms at 16 kHz); a mel frame ``m`` reads samples ``m * hop - 200 .. m * hop + 200``."""


class FeatureStream:
    """Incremental features of a streaming :class:`MelEncoder` at ``rate`` Hz.

    Args:
        encoder: a mel encoder with ``lookahead >= 0`` (eval mode).
        rate: output feature rate in Hz (motion fps x audio ratio).
            The encoder's convolution weights are read once, here (a stream of a frozen encoder).
    Raises:
        ValueError: a centred encoder (``lookahead = -1``) cannot stream.
    """

    def __init__(self, encoder: MelEncoder, rate: float):
        if encoder.lookahead < 0:
            raise ValueError("a centred mel encoder (lookahead=-1) cannot stream; use a streaming preset")
        self.enc, self.rate = encoder, float(rate)
        self.hop, self.la = encoder.hop, encoder.lookahead
        self.samples = torch.zeros(0)      # audio from absolute sample ``self.sample0`` on
        self.sample0 = 0
        self.n_samples = 0                 # samples received
        self.mel = torch.zeros(0, encoder.bank.shape[1])  # mel frames from absolute ``self.mel0`` on
        self.mel0 = 0
        self.n_mel = 0                     # mel frames computed
        self.n_raw = 0                     # mel frames through the convolutions (raw outputs made)
        convs = [encoder.stem, *encoder.blocks]  # each layer's input history, zeros = the causal
        self.history = [torch.zeros((encoder.kernel - 1) * c.dilation[0], c.in_channels)  # padding:
                        for c in convs]                                                   # ((k-1) d, C_in)
        # time-major taps: (n, k C_in) @ (k C_in, C_out) is several times faster than the
        # channel-major product for the few frames of a chunk (the same dot products)
        self.taps = [(c.weight.detach().permute(2, 1, 0).reshape(-1, c.out_channels).contiguous(),  # (k C_in, C_out)
                      c.bias.detach(), c.dilation[0]) for c in convs]
        self.hann = torch.hann_window(WINDOW, periodic=True)  # the STFT window, made once
        self.feats = torch.zeros(0, encoder.out_dim)      # 100 Hz features from ``self.feat0`` on
        self.feat0 = 0
        self.n_feat = 0                    # 100 Hz features final
        self.n_out = 0                     # output features emitted
        self.finished = False

    # ------------------------------------------------------------------ mel frames
    def _mel_frames(self, first: int, last: int) -> torch.Tensor:
        """Mel frames ``first .. last`` (inclusive) from the kept samples (zeros outside them)."""
        lo, hi = first * self.hop - WINDOW // 2, last * self.hop + WINDOW // 2
        seg = torch.zeros(hi - lo)
        a, b = max(lo, self.sample0), min(hi, self.sample0 + len(self.samples))
        if b > a:
            seg[a - lo: b - lo] = self.samples[a - self.sample0: b - self.sample0]
        spec = torch.stft(seg[None], WINDOW, hop_length=self.hop, win_length=WINDOW, window=self.hann,
                          center=False, return_complex=True)  # (1, n_freq, n)
        power = spec.real.square() + spec.imag.square()
        mel = torch.log10(torch.clamp(power.transpose(1, 2) @ self.enc.bank, min=1e-10))[0]  # (n, n_mels)
        return (mel + LOG_MEL_SHIFT) / LOG_MEL_SHIFT

    def _add_mel(self, last: int) -> None:
        if last >= self.n_mel:
            self.mel = torch.cat([self.mel, self._mel_frames(self.n_mel, last)])
            self.n_mel = last + 1

    # ------------------------------------------------------------------ 100 Hz features
    def _conv(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        """Convolution ``layer`` (0: the stem) over ``(n, C_in)`` new inputs after its history ->
        ``(n, C_out)``, as one matrix product over the kernel's taps; the history moves on by n."""
        weight, bias, dilation = self.taps[layer]
        n = x.shape[0]
        full = torch.cat([self.history[layer], x])  # (span + n, C_in)
        self.history[layer] = full[n:]
        cols = torch.cat([full[j * dilation: j * dilation + n] for j in range(self.enc.kernel)], 1)  # (n, k C_in)
        return torch.addmm(bias, cols, weight)

    def _stack(self, mel: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
        """:meth:`MelEncoder.stack` continued on the next ``(n, n_mels)`` mel frames with their
        ``(n,)`` validity (None: all valid, as while streaming) -> ``(n, C)`` raw outputs (the
        same recursion on the same numbers)."""
        def keep(x: torch.Tensor) -> torch.Tensor:  # frames past the clip's end read as zeros
            return x if valid is None else x * valid[:, None]

        x = self._conv(0, keep(mel))  # (n, C)
        for i in range(len(self.enc.blocks)):
            x = x + F.gelu(self._conv(i + 1, keep(F.gelu(x))))
        return x

    def _add_features(self, upto: int, n_valid: int | None) -> None:
        """Make 100 Hz features ``self.n_feat .. upto - 1`` final; ``n_valid``: the clip's mel frame
        count at the end (frames past it read as zeros), None while streaming."""
        if upto <= self.n_feat:
            return
        end = upto + self.la  # feature i is raw output i + la: raw outputs up to end - 1 are needed
        mel = self.mel[self.n_raw - self.mel0:]
        if n_valid is not None:  # the look-ahead past the end reads zero frames
            mel = torch.cat([mel, mel.new_zeros(end - self.n_raw - len(mel), mel.shape[1])])
        mel = mel[: end - self.n_raw]
        valid = None
        if n_valid is not None:
            valid = torch.ones(len(mel))
            valid[max(0, n_valid - self.n_raw):] = 0
        raw = self._stack(mel, valid)  # raw outputs n_raw .. end - 1
        new = raw[self.n_feat + self.la - self.n_raw:]  # (upto - n_feat, C); the first la outputs
        self.n_raw = end                                # of the clip are no feature's
        self.feats = torch.cat([self.feats, self.enc.norm(new)])
        self.n_feat = upto

    # ------------------------------------------------------------------ output rate
    def _ready(self, n_feat: int, n_valid: int | None, n_out_total: int | None) -> int:
        """How many outputs in all can be emitted once ``n_feat`` 100 Hz features are final (both
        interpolation sources, clamped at the end when the clip has ``n_valid`` mel frames).
        Python floats: the float64 positions of :func:`avguide.audio.encoders.resample_features`."""
        step = (float(AUDIO_RATE) / self.hop) / self.rate
        j = self.n_out
        while n_out_total is None or j < n_out_total:
            p = j * step if n_valid is None else min(j * step, float(n_valid - 1))
            i1 = math.floor(p) + 1 if n_valid is None else min(math.floor(p) + 1, n_valid - 1)
            if i1 >= n_feat:
                break
            j += 1
        return j

    def _emit(self, n_valid: int | None, n_out_total: int | None) -> torch.Tensor:
        """Output features whose two interpolation sources are final (or clamped at the end): the
        arithmetic of :func:`avguide.audio.encoders.resample_features` on those outputs."""
        j = self._ready(self.n_feat, n_valid, n_out_total)
        if j == self.n_out:
            return self.feats.new_zeros(0, self.feats.shape[1])
        pos = torch.arange(self.n_out, j, dtype=torch.float64) * ((float(AUDIO_RATE) / self.hop) / self.rate)  # (m,)
        if n_valid is not None:
            pos = pos.clamp(max=float(n_valid - 1))
        i0 = pos.floor().long()
        i1 = i0 + 1 if n_valid is None else (i0 + 1).clamp(max=n_valid - 1)
        w = (pos - i0).to(self.feats.dtype)[:, None]  # (m, 1)
        out = self.feats[i0 - self.feat0] * (1 - w) + self.feats[i1 - self.feat0] * w  # (m, C)
        self.n_out = j
        self._trim()
        return out

    def _trim(self) -> None:
        """Drop what no future output can read (constant memory)."""
        next_i0 = math.floor(self.n_out * ((float(AUDIO_RATE) / self.hop) / self.rate))  # as in _emit
        keep_feat = min(next_i0, self.n_feat)  # the next output reads features next_i0 and next_i0 + 1
        if keep_feat > self.feat0:
            self.feats, self.feat0 = self.feats[keep_feat - self.feat0:], keep_feat
        keep_mel = self.n_raw  # every mel frame before it is in the convolutions' histories
        if keep_mel > self.mel0:
            self.mel, self.mel0 = self.mel[keep_mel - self.mel0:], keep_mel
        keep_sample = max(0, self.n_mel * self.hop - WINDOW // 2)
        if keep_sample > self.sample0:
            self.samples, self.sample0 = self.samples[keep_sample - self.sample0:], keep_sample

    # ------------------------------------------------------------------ public
    @torch.inference_mode()
    def push(self, chunk: torch.Tensor) -> torch.Tensor:
        """Add ``(n,)`` float32 samples at 16 kHz; return the ``(k, C)`` features now final.

        The work is done when an output is due: a chunk that completes none only keeps its
        samples (the mel frames and convolutions run once, over more frames, at the next output).
        """
        assert not self.finished, "push after finish"
        self.samples = torch.cat([self.samples, chunk.to(torch.float32).reshape(-1)])
        self.n_samples += int(chunk.numel())
        last_mel = (self.n_samples - WINDOW // 2) // self.hop  # frames whose window has fully arrived
        if self._ready(last_mel + 1 - self.la, None, None) == self.n_out:
            return self.feats.new_zeros(0, self.feats.shape[1])
        self._add_mel(last_mel)
        self._add_features(self.n_mel - self.la, None)
        return self._emit(None, None)

    @torch.inference_mode()
    def finish(self, n_out: int) -> torch.Tensor:
        """The remaining features up to ``n_out`` in total (the offline encoder's ``n_out``), with
        the clip ending after the samples pushed so far."""
        self.finished = True
        n_valid = self.n_samples // self.hop + 1  # mel frames of the whole clip (centred STFT)
        self._add_mel(n_valid - 1)
        self._add_features(n_valid, n_valid)
        return self._emit(n_valid, n_out)
