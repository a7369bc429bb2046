"""Streaming features equal the offline encoder's, chunk by chunk, with a bounded delay."""

import numpy as np
import pytest
import torch

from avguide.audio.encoders import AudioEncoderConfig, build_audio_encoder, encoder_lookahead_s
from avguide.audio.stream import FeatureStream


def _encoder(lookahead=7, **kw):
    torch.manual_seed(0)
    cfg = AudioEncoderConfig(n_mels=40, channels=16, n_blocks=3, kernel=5, lookahead=lookahead, **kw)
    return build_audio_encoder(cfg).eval(), cfg


@pytest.mark.parametrize("rate,seconds", [(30.0, 2.37), (50.0, 1.0), (25.0, 0.41)])
def test_stream_equals_offline_for_any_chunking(rate, seconds):
    enc, _ = _encoder()
    n = int(seconds * 16000)
    audio = torch.randn(n) * 0.1
    n_out = round(n / 16000 * rate)
    with torch.no_grad():
        offline = enc(audio[None], torch.tensor([n]), rate, n_out)[0]  # (n_out, C)
    rng = np.random.default_rng(0)
    for _ in range(3):
        stream, parts, pos = FeatureStream(enc, rate), [], 0
        while pos < n:
            k = int(rng.integers(1, 3000))
            parts.append(stream.push(audio[pos: pos + k]))
            pos += k
        parts.append(stream.finish(n_out))
        got = torch.cat(parts)
        assert got.shape == offline.shape
        assert (got - offline).abs().max() < 1e-5


def test_stream_emits_each_feature_once_its_lookahead_has_arrived():
    enc, cfg = _encoder(lookahead=3)
    rate = 30.0
    audio = torch.randn(32000) * 0.1
    stream, emitted = FeatureStream(enc, rate), 0
    for pos in range(0, 32000, 160):
        emitted += len(stream.push(audio[pos: pos + 160]))
        received_s = (pos + 160) / 16000
        # every feature whose look-ahead window has fully arrived is out (within one 10 ms hop)...
        ready = int(np.floor((received_s - encoder_lookahead_s(cfg) - 0.01) * rate)) + 1
        assert emitted >= max(ready, 0)
        # ...and none before its speech exists
        assert emitted <= int(np.floor(received_s * rate)) + 1


def test_centred_encoder_refuses_to_stream():
    enc, _ = _encoder(lookahead=-1)
    with pytest.raises(ValueError, match="cannot stream"):
        FeatureStream(enc, 30.0)
