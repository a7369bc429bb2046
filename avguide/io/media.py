"""Audio in and out, and video out (ffmpeg from imageio-ffmpeg, raw frames on stdin).

Everything inside avguide is 16 kHz mono float32: :func:`load_audio` resamples (soxr, high
quality) and down-mixes, unless the caller asks for strict checking, in which case a file that
is not already 16 kHz mono is an error naming the file. The published code fed the expert
audio at the file's native rate (22.05/44.1 kHz).
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np

from avguide import AUDIO_RATE
from avguide.errors import BadInputError
from avguide.io.files import existing_file, one_line
from avguide.io.output import atomic_path, os_reason, write_bytes_atomic

MIN_SECONDS = 0.1
"""Shorter audio (after conversion) is rejected as empty."""


def _read_audio(path: Path, *, ffmpeg: bool = True) -> tuple[np.ndarray, int]:
    """(L, channels) float32 samples and the rate, checked non-empty and finite.

    libsndfile reads wav, flac, ogg, mp3...; with ``ffmpeg`` any other file ffmpeg can decode
    (m4a, the sound of a video) is decoded by ffmpeg to 16 kHz mono."""
    import soundfile as sf

    path = existing_file(path, "audio file")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)  # (L, channels)
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError) as e:
        if not ffmpeg:
            raise BadInputError(f"{path}: not a readable audio file ({one_line(e, 160)})") from None
        data, sr = _decode_with_ffmpeg(path), AUDIO_RATE
    except OSError as e:
        raise BadInputError(f"{path}: cannot read audio file ({os_reason(e)})") from None
    if data.shape[0] == 0:
        raise BadInputError(f"{path}: audio is empty (0 samples)")
    if not np.isfinite(data).all():
        raise BadInputError(f"{path}: audio contains NaN or infinite samples")
    return data, sr


def _decode_with_ffmpeg(path: Path) -> np.ndarray:
    """(L, 1) float32 samples at 16 kHz of any file with a sound stream ffmpeg decodes.

    Raises:
        BadInputError: ffmpeg cannot decode it (its first error line given), or it has no sound.
    """
    cmd = [_ffmpeg_exe(), "-nostdin", "-v", "error", "-i", str(path), "-vn", "-ac", "1", "-ar", str(AUDIO_RATE),
           "-f", "f32le", "-"]
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True)
    if proc.returncode != 0:
        why = next((ln for ln in proc.stderr.decode(errors="replace").splitlines() if ln.strip()), "")
        why = re.sub(r"^\[[^]]*\]\s*", "", why)  # "[in#0 @ 0x55...] Error opening input: ..."
        raise BadInputError(f"{path}: not a readable audio file (neither libsndfile nor ffmpeg decodes it: "
                            f"{one_line(why.replace(str(path), 'it'), 160)})")
    return np.frombuffer(proc.stdout, dtype="<f4").astype(np.float32).reshape(-1, 1)


def load_audio(path: str | os.PathLike, *, strict: bool = False, rate: int = AUDIO_RATE) -> np.ndarray:
    """Load a sound file as a mono float32 waveform at ``rate`` Hz.

    Args:
        path: any format libsndfile reads (wav, flac, ogg, mp3, ...) or, but with ``strict``,
            any file with a sound stream ffmpeg decodes (m4a, mp4, ...).
        strict: if True, the file must already be mono at ``rate`` (used for datasets whose
            manifest promises 16 kHz mono; a mismatch there means a corrupt or foreign file).
            If False, several channels are averaged and other rates are resampled.
        rate: target sample rate in Hz.
    Returns:
        (L,) float32 in [-1, 1].
    Raises:
        MissingFileError: no such file.
        BadInputError: unreadable/corrupt, empty (< 0.1 s), non-finite samples, or (strict)
            not mono / not ``rate`` Hz. The message names the file and the problem.
    """
    import soxr

    path = Path(path)
    data, sr = _read_audio(path, ffmpeg=not strict)
    if strict and data.shape[1] != 1:
        raise BadInputError(f"{path}: expected mono audio, got {data.shape[1]} channels")
    if strict and sr != rate:
        raise BadInputError(f"{path}: expected {rate} Hz audio, got {sr} Hz")
    wav = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]  # (L,)
    if sr != rate:
        wav = soxr.resample(wav, sr, rate, quality="HQ").astype(np.float32)
    if wav.shape[0] < MIN_SECONDS * rate:
        raise BadInputError(f"{path}: audio is too short ({wav.shape[0] / rate:.3f} s < {MIN_SECONDS} s)")
    return np.ascontiguousarray(wav, dtype=np.float32)


def audio_duration(path: str | os.PathLike) -> float:
    """Duration in seconds of a readable, non-empty, finite audio file of at least 0.1 s.

    Raises:
        MissingFileError / BadInputError: as :func:`load_audio`.
    """
    path = Path(path)
    data, sr = _read_audio(path)
    seconds = data.shape[0] / sr
    if seconds < MIN_SECONDS:
        raise BadInputError(f"{path}: audio is too short ({seconds:.3f} s < {MIN_SECONDS} s)")
    return seconds


def audio_info(path: str | os.PathLike) -> tuple[int, int, int]:
    """(samples, rate in Hz, channels) of a sound file, from its header only (a cheap check before
    a long job reads the data).

    Raises:
        MissingFileError / BadInputError: missing, a directory, not a readable sound file, or
            an empty one.
    """
    import soundfile as sf

    path = existing_file(path, "audio file")
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError) as e:
        raise BadInputError(f"{path}: not a readable audio file ({one_line(e, 160)})") from None
    except OSError as e:
        raise BadInputError(f"{path}: cannot read audio file ({os_reason(e)})") from None
    if info.frames <= 0 or info.samplerate <= 0:
        raise BadInputError(f"{path}: audio is empty (0 samples)")
    return int(info.frames), int(info.samplerate), int(info.channels)


def save_wav(path: str | os.PathLike, wav: np.ndarray, rate: int = AUDIO_RATE) -> None:
    """Write a mono waveform as 16-bit PCM wav, atomically (encoded in memory first, so a full
    disk is one clear error).

    Args:
        path: destination (.wav).
        wav: (L,) float in [-1, 1]; values outside are clipped.
        rate: sample rate in Hz.
    """
    import soundfile as sf

    wav = np.clip(np.asarray(wav, dtype=np.float32), -1.0, 1.0)
    buf = io.BytesIO()
    sf.write(buf, wav, rate, subtype="PCM_16", format="WAV")
    write_bytes_atomic(path, buf.getvalue())


# ------------------------------------------------------------------------------------- video
_DISK_PROBLEMS = ("No space left", "File too large", "Disk quota", "Permission denied", "Read-only file system")


def output_problem(ffmpeg_stderr: str) -> str | None:
    """The line of ffmpeg's error output that says the output could not be written (a full disk,
    no permission, a read-only file system: the user's to fix), or None (a failure of ours)."""
    return next((ln for ln in ffmpeg_stderr.splitlines() if any(p in ln for p in _DISK_PROBLEMS)), None)


class VideoSink:
    """The object a :func:`video_writer` block writes frames to."""

    def __init__(self, proc: subprocess.Popen, shape: tuple[int, int], bar):
        self._proc, self._shape, self._bar = proc, shape, bar
        self.frames = 0
        self.broken = False  # ffmpeg stopped reading (it failed; its log tells why)

    def write(self, frames: np.ndarray) -> None:
        """Append frames: (t, H, W, 3) uint8 RGB, H and W as given to :func:`video_writer`."""
        assert frames.dtype == np.uint8 and frames.ndim == 4 and frames.shape[1:] == (*self._shape, 3), \
            f"video frames must be (t, {self._shape[0]}, {self._shape[1]}, 3) uint8, got {frames.shape} {frames.dtype}"
        self.frames += frames.shape[0]
        self._bar.update(frames.shape[0])
        if self.broken:
            return
        try:
            self._proc.stdin.write(np.ascontiguousarray(frames).tobytes())
        except BrokenPipeError:
            self.broken = True


@contextlib.contextmanager
def video_writer(path: str | os.PathLike, width: int, height: int, fps: float, n_frames: int, *,
                 audio: str | os.PathLike | None = None, progress: bool = False,
                 desc: str = "render") -> Iterator[VideoSink]:
    """Write an H.264 (yuv420p) MP4 from raw frames, with optional AAC audio, atomically.

    Usage::

        with video_writer("out.mp4", 512, 512, 30.0, n) as video:
            video.write(frames)  # (t, 512, 512, 3) uint8, n frames in all

    With audio the file lasts exactly ``n_frames / fps`` seconds (``-t``: the audio encoder's
    last partial frame is kept). ffmpeg is always reaped: an exception inside the block kills
    it, and nothing is left at ``path`` (nor a temporary file).

    Args:
        path: the .mp4 to write.
        width, height: frame size in pixels (even).
        fps: frames per second (finite, > 0).
        n_frames: frames the block will write.
        audio: optional audio file to mux.
        progress: show a progress bar (frames) on stderr.
        desc: the bar's label.
    Yields:
        A :class:`VideoSink`.
    Raises:
        BadInputError: the disk is full or the output is not writable (ffmpeg's reason given).
        RuntimeError: ffmpeg failed otherwise, or the block wrote another number of frames.
    """
    from tqdm import tqdm

    assert width % 2 == 0 and height % 2 == 0 and n_frames >= 1, (width, height, n_frames)
    assert math.isfinite(fps) and fps > 0, fps
    path = Path(path)
    with atomic_path(path) as tmp, tempfile.TemporaryFile() as log:
        cmd = [_ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
               "-s", f"{width}x{height}", "-r", f"{fps}", "-i", "-"]
        if audio is not None:
            cmd += ["-i", str(audio), "-c:a", "aac", "-b:a", "128k", "-map", "0:v", "-map", "1:a"]
        cmd += ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", "18"]
        # with audio, -t ends the file: -frames:v would stop the output at the last video frame and
        # drop the audio encoder's last, partial AAC frame (up to 64 ms of sound at 16 kHz)
        cmd += ["-t", f"{n_frames / fps:.6f}"] if audio is not None else ["-frames:v", str(n_frames)]
        cmd += ["-f", "mp4", str(tmp)]
        bar = tqdm(total=n_frames, desc=desc, unit="frame", disable=not progress, file=sys.stderr, leave=False)
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=log)
        sink = VideoSink(proc, (height, width), bar)
        try:
            yield sink
            try:
                proc.stdin.close()
            except BrokenPipeError:
                sink.broken = True
            rc = proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            bar.close()
        log.seek(0)
        err = log.read().decode(errors="replace").strip()
        if rc != 0 or sink.broken:
            problem = output_problem(err)
            if problem:
                raise BadInputError(f"{path}: cannot write video ({one_line(problem, 200)})")
            raise RuntimeError(f"ffmpeg failed writing {path}: {err[-500:]}")
        if sink.frames != n_frames:
            raise RuntimeError(f"video_writer: {sink.frames} frames written to {path}, {n_frames} announced")


def _ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()
