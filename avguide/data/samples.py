"""Load one recording, validated, with audio and motion reconciled to the same duration.

Length rule (stated once, used everywhere): a sequence of T frames at ``fps`` and L samples at
16 kHz keeps ``n = min(T, floor(L * fps / 16000))`` frames and the first
``round(n * 16000 / fps)`` audio samples, so the audio always covers every kept frame. If the two
durations differ by more than ``max(0.25 s, 10 %)`` the recording is rejected: that is a wrong
pairing or a wrong frame rate, not jitter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avguide import AUDIO_RATE
from avguide import io
from avguide.data.layouts import DatasetIndex, SampleRef
from avguide.errors import BadInputError

MAX_MISMATCH_S = 0.25
MAX_MISMATCH_FRAC = 0.10


@dataclass
class Sample:
    """A loaded recording."""

    name: str
    subject: str
    subject_index: int        # style one-hot index, -1 for a subject not seen in training
    audio: np.ndarray         # (L,) float32, 16 kHz mono
    vertices: np.ndarray      # (T,V,3) float32, metres (dataset units)
    template: np.ndarray      # (V,3) float32
    fps: float
    text: str | None


def reconcile_lengths(n_frames: int, n_samples: int, fps: float, name: str = "sequence") -> tuple[int, int]:
    """Apply the length rule of this module.

    Args:
        n_frames: T, frames of the motion.
        n_samples: L, audio samples at 16 kHz.
        fps: motion frame rate.
        name: used in the error message.
    Returns:
        (frames to keep, samples to keep).
    Raises:
        BadInputError: durations differ by more than max(0.25 s, 10 %).
    """
    t_motion, t_audio = n_frames / fps, n_samples / AUDIO_RATE
    if abs(t_motion - t_audio) > max(MAX_MISMATCH_S, MAX_MISMATCH_FRAC * max(t_motion, t_audio)):
        raise BadInputError(f"{name}: motion is {t_motion:.2f} s ({n_frames} frames at {fps:g} fps) "
                            f"but audio is {t_audio:.2f} s; wrong pairing or frame rate?")
    n = min(n_frames, math.floor(n_samples * fps / AUDIO_RATE + 1e-9))
    return n, round(n * AUDIO_RATE / fps)


def load_vertices(path: str | Path, n_vertices: int, stride: int = 1) -> np.ndarray:
    """Load a dataset's ``(T, V*3)`` vertex array and check it (:func:`avguide.io.load_vertices`).

    Args:
        path: .npy file, float, (T, V*3) or (T, V, 3).
        n_vertices: V expected from the template.
        stride: keep every ``stride``-th frame (2 for VOCASET's 60 fps -> 30 fps).
    Returns:
        (T,V,3) float32.
    Raises:
        MissingFileError / BadInputError naming the file: unreadable, wrong width, < 2 frames, NaN/inf.
    """
    return io.load_vertices(path, n_vertices, stride=stride, min_frames=2)


def check_recordings(index: DatasetIndex, refs: list[SampleRef]) -> None:
    """Check every recording's files from their headers only, before a long job reads them: the
    vertex array's shape and dtype, the audio's readability (16 kHz mono for a strict dataset)
    and the two durations (:func:`reconcile_lengths`). Values (NaN) are checked when a recording
    is loaded.

    Raises:
        MissingFileError / BadInputError naming the first bad file.
    """
    for ref in refs:
        v = index.templates[ref.subject].shape[0]
        shape, dtype = io.array_header(ref.vertices, "vertex file")
        if not np.issubdtype(dtype, np.floating) or not (
                (len(shape) == 2 and shape[1] == 3 * v) or (len(shape) == 3 and shape[1:] == (v, 3))):
            io.load_vertices(ref.vertices, v, stride=index.stride, min_frames=2)  # names the problem
        n_frames = -(-shape[0] // index.stride)  # frames kept by the stride
        if n_frames < 2:
            raise BadInputError(f"{ref.vertices}: {n_frames} frame(s), need at least 2")
        n_samples, rate, channels = io.audio_info(ref.wav)
        if index.audio_strict and (rate != AUDIO_RATE or channels != 1):
            raise BadInputError(f"{ref.wav}: expected {AUDIO_RATE} Hz mono audio, got {rate} Hz, {channels} channel(s)")
        reconcile_lengths(n_frames, round(n_samples * AUDIO_RATE / rate), index.fps, f"{ref.vertices} / {ref.wav.name}")


def load_sample(index: DatasetIndex, ref: SampleRef, *, need_text: bool = False) -> Sample:
    """Load and validate one recording of ``index``.

    Args:
        index: the scanned dataset.
        ref: one of ``index.samples``.
        need_text: a missing transcript is an error (reading metrics, expert training).
    Returns:
        The :class:`Sample`, lengths reconciled by :func:`reconcile_lengths`.
    Raises:
        MissingFileError / BadInputError naming the file and the problem.
    """
    template = index.templates[ref.subject]
    verts = load_vertices(ref.vertices, template.shape[0], index.stride)
    audio = io.load_audio(ref.wav, strict=index.audio_strict)
    n, n_samples = reconcile_lengths(verts.shape[0], audio.shape[0], index.fps, f"{ref.vertices} / {ref.wav.name}")
    if need_text and not ref.text:
        raise BadInputError(f"{index.root / 'sentencestext' / (ref.subject + '.txt')}: no transcript "
                            f"line {ref.sentence} for {ref.name}")
    return Sample(name=ref.name, subject=ref.subject, subject_index=index.subject_index(ref.subject),
                  audio=audio[:n_samples], vertices=verts[:n], template=template, fps=index.fps,
                  text=ref.text)


def load_phones(path: str | Path) -> list[tuple[str, float, float]]:
    """The timed phones of a recording's alignment file (``alignments/<name>.json`` of the
    synthetic layout: ``{"phones": [[ipa, start_s, end_s], ...], ...}``), checked.

    Args:
        path: the alignment file.
    Returns:
        ``[(ipa, start_s, end_s), ...]`` with finite ``0 <= start <= end``; silence is ``"_"``,
        every other phone has a viseme class.
    Raises:
        MissingFileError / BadInputError naming the file: unreadable or not JSON, no ``phones``
            list, or a malformed entry (its index given).
    """
    from avguide.speech.visemes import phoneme_to_viseme

    obj = io.load_json(path, "alignment")
    phones = obj.get("phones")
    if not isinstance(phones, list):
        raise BadInputError(f"{path}: expected a 'phones' list of [ipa, start_s, end_s], got "
                            f"{type(phones).__name__}")
    out = []
    for i, p in enumerate(phones):
        ok = (isinstance(p, list) and len(p) >= 3 and isinstance(p[0], str)
              and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in p[1:3]))
        if not ok or not (math.isfinite(p[1]) and math.isfinite(p[2]) and 0 <= p[1] <= p[2]):
            raise BadInputError(f"{path}: phones[{i}] = {str(p)[:60]}; expected [ipa, start_s, end_s] with "
                                "finite 0 <= start <= end")
        if p[0] != "_":
            try:
                phoneme_to_viseme(p[0])
            except ValueError:
                raise BadInputError(f"{path}: phones[{i}]: phoneme {p[0]!r} has no viseme class") from None
        out.append((p[0], float(p[1]), float(p[2])))
    return out
