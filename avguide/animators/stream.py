"""Streamed animation: speech in chunks -> mesh frames as soon as they are determined.

:class:`AnimationStream` runs a trained animator of a streaming preset (mel encoder with a
bounded look-ahead, attention windows: :func:`avguide.animators.faceformer_cpu`,
:func:`avguide.animators.codetalker_cpu`) on audio that arrives in chunks. Every frame equals the
one ``model.generate`` gives for the whole clip (the same loop on the same numbers, up to float
rounding), and comes out once the speech up to ``lookahead_s`` after its time has arrived.
Memory stays constant for any length: the feature stream keeps the convolutions' receptive
field, the decoder its attention window.

    stream = AnimationStream(model, template, subject=0)
    for chunk in chunks:                     # (n,) float32 16 kHz
        frames = stream.push(chunk)          # (k, V, 3) new meshes
    frames = stream.finish()                 # the last ones

Offline animation of long audio uses it too (:func:`animate_in_chunks`), so a 10-minute file
never holds more than a chunk of frames in memory.

A reader that only wants a linear function of the offsets (the ARKit weights of the studio's
stream) can skip the ``V*3``-wide readout: both animators' offsets are affine in one vector per
frame (:func:`affine_readout`), and ``push(chunk, hidden=True)`` returns those ``(k, D)``
vectors instead of the meshes, to be folded into the reader's own map.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch

from avguide import AUDIO_RATE
from avguide.animators.common import frame_counts
from avguide.audio.encoders import MelEncoder, encoder_lookahead_s
from avguide.audio.stream import FeatureStream
from avguide.errors import BadInputError


def can_stream(model: torch.nn.Module) -> bool:
    """Whether the animator's encoder has a bounded look-ahead and its attention is windowed."""
    cfg = model.cfg
    windows = cfg.context > 0 and (cfg.kind != "codetalker" or cfg.vq.context > 0)
    return isinstance(model.audio_encoder, MelEncoder) and model.audio_encoder.lookahead >= 0 and windows


def affine_readout(model: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """The map from a frame's decoder output to its offsets: ``(W, b)``, ``W`` (V*3, D) and ``b``
    (V*3,) float32 with ``offsets = h @ W.T + b`` for the ``(D,)`` output ``h`` of
    :meth:`AnimationStream.push` with ``hidden=True`` (FaceFormer: ``vertice_map_r``, D its
    feature width; CodeTalker: the VQ decoder's last layer scaled by ``motion_scale``, D the VQ
    decoder's width)."""
    w, b = model.readout_map()
    return w.detach(), b.detach()


@contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one thread inside the block (restored after).

    An autoregressive step is a few hundred small operations: split over two threads, each one
    waits for the other to wake (OpenMP threads sleep between operations, see
    ``avguide.animate._passive_openmp``), and a shipped CodeTalker decodes 10 s of speech in
    2.5 s instead of 1.05 s on one thread (2 idle cores; docs/results.md, session 14)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


class AnimationStream:
    """Incremental animation with a streaming animator (eval mode, no gradients).

    Args:
        model: a FaceFormer or CodeTalker of a streaming preset (:func:`can_stream`).
        template: ``(V, 3)`` float neutral face.
        subject: speaking-style index in ``[0, model.n_subjects)``.
    Raises:
        BadInputError: the model cannot stream, a template of the wrong shape, an unknown subject.
    """

    def __init__(self, model: torch.nn.Module, template: torch.Tensor | np.ndarray, subject: int):
        if not can_stream(model):
            raise BadInputError("this animator cannot stream: it needs a mel encoder with a bounded look-ahead "
                                "(audio.lookahead >= 0) and attention windows (context > 0), as the cpu presets "
                                "and the shipped models have")
        template = torch.as_tensor(np.asarray(template, np.float32))
        if template.shape != (model.n_vertices, 3):
            raise BadInputError(f"template: expected ({model.n_vertices}, 3), got {tuple(template.shape)}")
        if not 0 <= subject < model.n_subjects:
            raise BadInputError(f"subject: {subject} is not in [0, {model.n_subjects})")
        self.model, self.template = model.eval(), template
        self.fps, self.ratio = float(model.cfg.fps), model.cfg.audio_ratio
        self.readout = affine_readout(model)
        self.features = FeatureStream(model.audio_encoder, self.fps * self.ratio)
        with torch.inference_mode():  # the decoder's state never needs gradients
            style = model.style(torch.tensor([subject])) if hasattr(model, "obj_vector") else \
                model.style_emb(torch.tensor([subject]))[:, None]
            self.decoding = model.decoding(style, None, template[None])
        self.pending = torch.zeros(0, model.audio_feature_map.in_features)  # features of a partial frame
        self.n_samples = 0
        self.frames = 0

    @property
    def lookahead_s(self) -> float:
        """Seconds of speech after a frame's time needed before the frame comes out."""
        return encoder_lookahead_s(self.model.cfg.audio)

    @torch.inference_mode()
    def _decode(self, feats: torch.Tensor, hidden: bool) -> torch.Tensor:
        """Decode every whole frame in ``pending + feats``; ``(k, V, 3)`` meshes, or with
        ``hidden`` the ``(k, D)`` decoder outputs (:func:`affine_readout`)."""
        feats = torch.cat([self.pending, feats])
        k = len(feats) // self.ratio
        self.pending = feats[k * self.ratio:]
        if k == 0:
            return self.template.new_zeros(0, self.readout[0].shape[1]) if hidden else \
                self.template.new_zeros(0, *self.template.shape)
        memory = self.model.audio_feature_map(feats[: k * self.ratio])[None]  # (1, k*r, D)
        with one_thread():
            outs = [self.decoding.step(memory[:, i * self.ratio:(i + 1) * self.ratio]) for i in range(k)]
        self.frames += k
        states = torch.cat(outs, 1)  # (1, k, D)
        if hidden:
            return states[0]  # (k, D)
        return self.decoding.offsets(states)[0].view(k, -1, 3) + self.template  # (k, V, 3)

    def push(self, chunk: torch.Tensor | np.ndarray, hidden: bool = False) -> torch.Tensor:
        """Add ``(n,)`` float32 samples of 16 kHz mono speech; return the ``(k, V, 3)`` new frames
        (``hidden``: their ``(k, D)`` decoder outputs instead, see :func:`affine_readout`).

        Raises:
            BadInputError: not a 1-D finite float array.
        """
        chunk = torch.as_tensor(np.asarray(chunk, np.float32))
        if chunk.dim() != 1 or not torch.isfinite(chunk).all():
            raise BadInputError(f"audio chunk: expected finite (n,) float32 samples, got shape {tuple(chunk.shape)}")
        self.n_samples += len(chunk)
        return self._decode(self.features.push(chunk), hidden)

    def finish(self, hidden: bool = False) -> torch.Tensor:
        """The remaining frames (as :meth:`push`): the clip has ``round(samples / 16000 * fps)``
        frames in all."""
        total = int(frame_counts(torch.tensor([max(self.n_samples, 1)]), self.fps)[0])
        return self._decode(self.features.finish(total * self.ratio), hidden)


def animate_in_chunks(model: torch.nn.Module, audio: np.ndarray, template: np.ndarray, subject: int,
                      chunk_s: float = 10.0) -> Iterator[np.ndarray]:
    """Offline animation of any length in bounded memory: ``(k, V, 3)`` float32 blocks of frames.

    Args:
        model: a streaming animator (:func:`can_stream`). audio: ``(L,)`` float32 16 kHz mono.
        template: ``(V, 3)``. subject: style index. chunk_s: seconds of audio per block.
    Yields:
        Consecutive frame blocks; together ``round(L / 16000 * fps)`` frames, equal to
        ``model.generate`` on the whole clip.
    """
    stream = AnimationStream(model, template, subject)
    step = max(1, int(chunk_s * AUDIO_RATE))
    for start in range(0, len(audio), step):
        frames = stream.push(audio[start: start + step])
        if len(frames):
            yield frames.numpy()
    frames = stream.finish()
    if len(frames):
        yield frames.numpy()
