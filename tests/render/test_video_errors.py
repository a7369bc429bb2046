"""render_video when ffmpeg fails: a full disk is the user's to fix (one line naming the file),
any other ffmpeg failure is ours (a RuntimeError with ffmpeg's message)."""

import stat

import numpy as np
import pytest

import avguide.render.video as video
from avguide.errors import BadInputError


def _fake_ffmpeg(tmp_path, message):
    exe = tmp_path / "ffmpeg"
    exe.write_text(f"#!/bin/sh\ncat > /dev/null\necho '{message}' >&2\nexit 1\n")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return str(exe)


@pytest.mark.parametrize("message, error", [
    ("av_interleaved_write_frame(): No space left on device", BadInputError),
    ("Unknown encoder libx264", RuntimeError),
])
def test_ffmpeg_failures(tmp_path, monkeypatch, message, error):
    monkeypatch.setattr(video, "_ffmpeg_exe", lambda: _fake_ffmpeg(tmp_path, message))
    verts = np.array([[[0, 0, 0], [1, 0, 0], [0, 1, 0]]], np.float32).repeat(3, axis=0)   # (3, 3, 3)
    out = tmp_path / "out.mp4"
    with pytest.raises(error) as e:
        video.render_video([verts], np.array([[0, 1, 2]]), out, fps=30.0, size=32, progress=False)
    assert str(out) in str(e.value) and message.split(": ")[-1] in str(e.value)
    assert not out.exists()
