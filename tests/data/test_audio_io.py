import numpy as np
import pytest
import soundfile as sf

from avguide.audio.io import load_audio, save_wav
from avguide.errors import BadInputError, MissingFileError


def _tone(rate, seconds=0.5, channels=1):
    t = np.arange(int(rate * seconds)) / rate
    x = 0.5 * np.sin(2 * np.pi * 440 * t)
    return np.stack([x, -x * 0.5], axis=1)[:, :channels] if channels > 1 else x


def test_resample_to_16k_preserves_tone(tmp_path):
    p = tmp_path / "a.wav"
    sf.write(p, _tone(44100), 44100)
    x = load_audio(p)
    assert x.dtype == np.float32 and x.shape == (8000,)
    spec = np.abs(np.fft.rfft(x))
    assert abs(np.argmax(spec) * 16000 / 8000 - 440) <= 2


def test_stereo_downmixed_or_strict_error(tmp_path):
    p = tmp_path / "s.wav"
    sf.write(p, _tone(16000, channels=2), 16000)
    x = load_audio(p)
    np.testing.assert_allclose(x, 0.25 * _tone(16000), atol=1e-4)
    with pytest.raises(BadInputError, match="s.wav: expected mono audio, got 2 channels"):
        load_audio(p, strict=True)


def test_wrong_rate_strict(tmp_path):
    p = tmp_path / "r.wav"
    sf.write(p, _tone(22050), 22050)
    with pytest.raises(BadInputError, match="r.wav: expected 16000 Hz audio, got 22050 Hz"):
        load_audio(p, strict=True)


def test_empty_corrupt_missing(tmp_path):
    e = tmp_path / "empty.wav"
    sf.write(e, np.zeros(0), 16000)
    with pytest.raises(BadInputError, match="empty.wav: audio is empty"):
        load_audio(e)
    short = tmp_path / "short.wav"
    sf.write(short, np.zeros(100), 16000)
    with pytest.raises(BadInputError, match="short.wav: audio is too short"):
        load_audio(short)
    c = tmp_path / "corrupt.wav"
    c.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunk")
    with pytest.raises(BadInputError, match="corrupt.wav: not a readable audio file"):
        load_audio(c)
    with pytest.raises(MissingFileError, match="nope.wav"):
        load_audio(tmp_path / "nope.wav")


def test_nan_audio(tmp_path):
    p = tmp_path / "n.wav"
    x = _tone(16000).astype(np.float32)
    x[100] = np.nan
    sf.write(p, x, 16000, subtype="FLOAT")
    with pytest.raises(BadInputError, match="n.wav: audio contains NaN"):
        load_audio(p)


def test_save_roundtrip(tmp_path):
    x = (_tone(16000) * 0.9).astype(np.float32)
    save_wav(tmp_path / "o.wav", x)
    info = sf.info(tmp_path / "o.wav")
    assert info.samplerate == 16000 and info.channels == 1 and info.subtype == "PCM_16"
    np.testing.assert_allclose(load_audio(tmp_path / "o.wav", strict=True), x, atol=1e-4)
