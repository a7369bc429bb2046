"""The streaming protocol: 16 kHz PCM chunks in, per-frame ARKit weights (and vertices) out.

One WebSocket connection animates one stream of speech (``/api/stream``). Messages:

client -> server
    1. text ``{"type": "start", "sample_rate": 16000, "encoding": "pcm_s16le",
       "subject": null, "vertices": false}``. Every field but ``type`` is optional (these are the
       defaults); ``subject`` is a training subject's name (the speaking style), ``vertices``
       asks for the meshes too.
    2. binary messages: mono 16 kHz PCM, **signed 16-bit little-endian** samples, an even number
       of bytes, at most ``max_chunk_bytes`` each (default 64000: 2 s); any chunking.
    3. text ``{"type": "finish"}``: the speech has ended; the last frames follow.

server -> client
    * text ``{"type": "ready", "fps": 30.0, "lookahead_s": 0.0925, "subject": "...",
      "names": [52 ARKit names], "n_vertices": 4742, "vertices": false}`` after ``start``;
    * text ``{"type": "frames", "start": i, "count": k, "audio_s": s, "weights": [[52] * k]}``
      as soon as frames ``i .. i+k-1`` are determined (frame ``j`` shows time ``j / fps``;
      ``audio_s``: seconds of speech received so far), weights in [0, 1], ARKit order, 5
      decimals; with ``vertices`` it is followed by one binary message, float32 little-endian
      ``(k, V, 3)`` metres;
    * text ``{"type": "done", "frames": n, "audio_s": s}`` after ``finish``; then the server
      closes with code 1000;
    * on a protocol error, text ``{"type": "error", "code": c, "message": "..."}`` and a close with
      code ``c`` (4400 malformed message, 4413 chunk too large, 4415 unsupported encoding or
      rate, 4429 too many streams at once) and the message as the reason.

Frames equal the offline animation of the same speech (:class:`AnimationStream`); memory per
connection is constant for any length.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import torch

from avguide import AUDIO_RATE
from avguide.assets.arkit import ARKIT_NAMES
from avguide.errors import AvguideError

ENCODING = "pcm_s16le"
"""The one sample encoding the stream accepts."""
MALFORMED, TOO_LARGE, UNSUPPORTED, BUSY = 4400, 4413, 4415, 4429
"""WebSocket close codes of protocol errors (4000 + the HTTP status of the same meaning)."""


class StreamError(Exception):
    """A protocol error: ``code`` is the close code, the message says what was wrong."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


def decode_pcm(data: bytes) -> np.ndarray:
    """Signed 16-bit little-endian PCM -> (n,) float32 in [-1, 1).

    Raises:
        StreamError: an odd number of bytes.
    """
    if len(data) % 2:
        raise StreamError(MALFORMED, f"audio chunk of {len(data)} bytes: {ENCODING} needs an even number")
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0


class StreamSession:
    """The server side of one connection, independent of the web framework.

    :meth:`handle` takes each received message and returns the messages to send (``str`` for
    text, ``bytes`` for binary); :attr:`done` turns true once the last frames are out.

    Args:
        engine: the :class:`avguide.serve.engine.Engine`.
        max_chunk_bytes: the largest binary message accepted.
    """

    def __init__(self, engine: Any, max_chunk_bytes: int = 64000):
        self.engine, self.max_chunk_bytes = engine, max_chunk_bytes
        self.stream = None
        self.template = None
        self.active = None  # the ARKit QP's active set, carried from frame to frame
        self.with_vertices = False
        self.hidden = False  # weights straight from the decoder outputs (no meshes made)
        self.frames = 0
        self.samples = 0
        self.done = False

    def handle(self, text: str | None = None, data: bytes | None = None) -> list[str | bytes]:
        """One received message (text or binary) -> the messages to send back.

        Raises:
            StreamError: a malformed, unsupported or too large message.
        """
        if data is not None:
            return self._audio(data)
        try:
            msg = json.loads(text or "")
        except ValueError:
            raise StreamError(MALFORMED, f"text messages must be JSON objects, got {(text or '')[:40]!r}") from None
        kind = msg.get("type") if isinstance(msg, dict) else None
        if kind == "start":
            return self._start(msg)
        if kind == "finish":
            return self._finish()
        raise StreamError(MALFORMED, f"unknown message type {kind!r}; expected 'start' or 'finish' "
                                     "(audio goes in binary messages)")

    def _start(self, msg: dict) -> list[str | bytes]:
        if self.stream is not None:
            raise StreamError(MALFORMED, "'start' sent twice; one connection carries one stream")
        unknown = sorted(set(msg) - {"type", "sample_rate", "encoding", "subject", "vertices"})
        if unknown:
            raise StreamError(MALFORMED, f"unknown field(s) {unknown} in 'start'")
        if msg.get("sample_rate", AUDIO_RATE) != AUDIO_RATE:
            raise StreamError(UNSUPPORTED, f"sample_rate {msg['sample_rate']!r}: the stream takes {AUDIO_RATE} Hz")
        if msg.get("encoding", ENCODING) != ENCODING:
            raise StreamError(UNSUPPORTED, f"encoding {msg['encoding']!r}: the stream takes {ENCODING} "
                                           "(signed 16-bit little-endian)")
        subject = msg.get("subject")
        if subject is not None and not isinstance(subject, str):
            raise StreamError(MALFORMED, f"subject must be a name or null, got {subject!r}")
        if not isinstance(msg.get("vertices", False), bool):
            raise StreamError(MALFORMED, f"vertices must be true or false, got {msg['vertices']!r}")
        try:
            self.stream, name = self.engine.stream(subject)
        except AvguideError as e:
            raise StreamError(MALFORMED, str(e)) from None
        self.template = self.engine.templates[name]
        self.active = self.engine.projector.new_active()
        self.with_vertices = bool(msg.get("vertices", False))
        self.hidden = not self.with_vertices and self.engine.projector.fold is not None
        return [json.dumps({"type": "ready", "fps": self.engine.fps, "lookahead_s": self.stream.lookahead_s,
                            "subject": name, "names": list(ARKIT_NAMES),
                            "n_vertices": int(self.template.shape[0]), "vertices": self.with_vertices})]

    def _audio(self, data: bytes) -> list[str | bytes]:
        if self.stream is None:
            raise StreamError(MALFORMED, "audio before 'start': send {\"type\": \"start\"} first")
        if self.done:
            raise StreamError(MALFORMED, "audio after 'finish'")
        if len(data) > self.max_chunk_bytes:
            raise StreamError(TOO_LARGE, f"audio chunk of {len(data)} bytes; at most {self.max_chunk_bytes} "
                                         "per message")
        chunk = decode_pcm(data)
        self.samples += len(chunk)
        return self._frames(self.stream.push(chunk, hidden=self.hidden))

    def _finish(self) -> list[str | bytes]:
        if self.stream is None:
            raise StreamError(MALFORMED, "'finish' before 'start'")
        if self.done:
            raise StreamError(MALFORMED, "'finish' sent twice")
        out = self._frames(self.stream.finish(hidden=self.hidden)) if self.samples else []
        self.done = True
        return out + [json.dumps({"type": "done", "frames": self.frames, "audio_s": self.samples / AUDIO_RATE})]

    def _frames(self, frames: torch.Tensor) -> list[str | bytes]:
        """(k, V, 3) new frames, or their (k, D) decoder outputs (``self.hidden``) -> a 'frames'
        message (+ the binary vertices)."""
        if len(frames) == 0:
            return []
        if self.hidden:
            weights = self.engine.projector.from_hidden(frames, self.active)  # (k, 52)
        else:
            weights = self.engine.projector(frames, self.template, self.active)
        out: list[str | bytes] = [json.dumps({
            "type": "frames", "start": self.frames, "count": len(frames),
            "audio_s": self.samples / AUDIO_RATE,
            "weights": np.round(weights.astype(np.float64), 5).tolist()})]
        if self.with_vertices:
            out.append(np.ascontiguousarray(frames.numpy(), dtype="<f4").tobytes())
        self.frames += len(frames)
        return out
