"""Video writer (duration, errors) and the expert-input path (resampling, crop, normalisation)."""

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from avguide.render import expert_crop, resample_fps, resampled_length
from avguide.render.video import _ffmpeg_exe, render_video


def test_resample_50_to_25_takes_every_other_frame_and_30_to_25_interpolates():
    v = torch.randn(2, 10, 4, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    out, n = resample_fps(v, torch.tensor([10, 7]), 50.0)
    assert n.tolist() == [5, 4]  # floor(10 * 25/50 + .5), floor(7 * 25/50 + .5)
    torch.testing.assert_close(out[0], v[0, ::2])
    torch.testing.assert_close(out[1, :4], v[1, [0, 2, 4, 6]])
    out, n = resample_fps(v, torch.tensor([10, 10]), 30.0)  # frame k at source 1.2 k
    assert n.tolist() == [8, 8]
    torch.testing.assert_close(out[0, 1], 0.8 * v[0, 1] + 0.2 * v[0, 2])
    torch.testing.assert_close(out[0, 7], v[0, 8] * 0.6 + v[0, 9] * 0.4)
    assert resampled_length(torch.tensor([150]), 30.0).item() == 125  # 5 s -> 125 frames = 80000 samples / 640


def test_resample_ignores_padding_and_is_differentiable():
    g = torch.Generator().manual_seed(1)
    v = torch.randn(1, 6, 2, 3, generator=g, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(lambda x: resample_fps(x, torch.tensor([5]), 30.0)[0], (v,))
    w = v.detach().clone()
    w[:, 5] = 1e6  # padding
    torch.testing.assert_close(resample_fps(w, torch.tensor([5]), 30.0)[0], resample_fps(v.detach(), torch.tensor([5]), 30.0)[0])


def test_expert_crop_is_centre_crop_luma_and_auto_avsr_normalisation():
    img = torch.zeros(1, 3, 96, 96)
    img[:, :, 4:92, 4:92] = torch.tensor([0.2, 0.5, 0.9]).view(1, 3, 1, 1)
    x = expert_crop(img)
    assert x.shape == (1, 1, 88, 88)
    y = 0.299 * 0.2 + 0.587 * 0.5 + 0.114 * 0.9
    torch.testing.assert_close(x, torch.full_like(x, (y - 0.421) / 0.165))


def _duration(path) -> float:
    err = subprocess.run([_ffmpeg_exe(), "-i", str(path)], capture_output=True, text=True).stderr
    h, m, s = re.search(r"Duration: (\d+):(\d+):([\d.]+)", err).groups()
    return int(h) * 3600 + int(m) * 60 + float(s)


def _stream_seconds(path, stream: str, fps: float = 25.0) -> float:
    """Decoded length of the file's audio ("a": samples / rate) or video ("v": frames / fps)."""
    if stream == "a":
        wav = Path(path).with_suffix(".dec.wav")
        subprocess.run([_ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(path), "-vn", str(wav)], check=True)
        return sf.info(wav).duration
    err = subprocess.run([_ffmpeg_exe(), "-i", str(path), "-map", "0:v", "-f", "null", "-"],
                         capture_output=True, text=True).stderr
    return int(re.findall(r"frame=\s*(\d+)", err)[-1]) / fps


def test_video_duration_matches_audio_and_mismatches_are_errors(head, tmp_path):
    seq = (head.vertices[None] + torch.linspace(0, 0.5, 9)[:, None, None] * head.jaw_open[None]).numpy()
    wav = tmp_path / "a.wav"
    sf.write(wav, np.zeros(16000 * 8 // 25), 16000)  # 0.32 s = 8 frames at 25 fps
    out = tmp_path / "v.mp4"
    info = render_video([seq, seq], head.faces.numpy(), out, fps=25, audio_path=wav, captions=["a", "b"], size=64)
    assert info["frames"] == 8 and info["trimmed_frames"] == [1, 1]
    assert abs(_duration(out) - 0.32) <= 1 / 25
    # 2.176 s of sound at 30 fps: 65 frames; both streams must last 65 / 30 s (with -frames:v
    # instead of -t, ffmpeg dropped the last AAC frame: 2.112 s of sound)
    sf.write(wav, 0.1 * np.sin(np.arange(34816) / 16000 * 2 * np.pi * 220), 16000)
    long_seq = np.repeat(seq, 8, 0)[:64]  # (64, V, 3)
    info = render_video([long_seq], head.faces.numpy(), out, fps=30, audio_path=wav, size=64)
    assert info["frames"] == 65 and info["padded_frames"] == [1]
    assert _stream_seconds(out, "v", 30) == 65 / 30 and abs(_stream_seconds(out, "a") - 65 / 30) < 0.01
    with pytest.raises(ValueError, match="mismatch"):  # the caller's arguments (avguide render checks the user's)
        render_video([seq], head.faces.numpy(), tmp_path / "x.mp4", fps=10, audio_path=wav, size=64)
    with pytest.raises(ValueError, match="vertices"):
        render_video([seq[:, :100]], head.faces.numpy(), tmp_path / "y.mp4", fps=25, size=64)
    assert not (tmp_path / "x.mp4").exists() and not (tmp_path / "y.mp4").exists()
