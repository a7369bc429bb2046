"""Audio front-ends: torch log-mel vs a numpy STFT, filterbank shape, resampling, encoders."""

import numpy as np
import pytest
import torch

from avguide.audio.encoders import HFAudioEncoder, build_audio_encoder, mel_encoder_tiny, resample_features
from avguide.audio.mel import hz_to_mel, log_mel, mel_filterbank, mel_to_hz


def test_filterbank_triangles_peak_at_centres_and_partition_unity():
    bank = mel_filterbank(n_fft=2048, n_mels=10, sample_rate=16000).numpy()  # (1025, 10)
    freqs = np.linspace(0, 8000, 1025)
    centres = mel_to_hz(torch.linspace(0, float(hz_to_mel(8000.0)), 12)).numpy()
    for m in range(10):
        k = np.argmax(bank[:, m])
        assert abs(freqs[k] - centres[m + 1]) <= 8000 / 1024  # peak within one bin of the centre
        assert bank[:, m].max() <= 1.0 and bank[:, m].max() > 0.95
    inside = (freqs >= centres[1]) & (freqs <= centres[-2])
    assert np.allclose(bank[inside].sum(1), 1.0, atol=1e-5)  # neighbouring triangles sum to 1
    assert float(hz_to_mel(1000.0)) == pytest.approx(999.99, abs=0.1)  # HTK: 1000 Hz ~ 1000 mel


def test_log_mel_matches_numpy_framewise_stft():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(4000).astype(np.float32) * 0.1
    ours = log_mel(torch.from_numpy(x)[None], n_fft=400, hop=160, n_mels=40)[0].numpy()  # (N, 40)
    padded = np.pad(x.astype(np.float64), 200)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(400) / 400)  # periodic Hann
    n = 4000 // 160 + 1
    frames = np.stack([padded[i * 160: i * 160 + 400] * window for i in range(n)])
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    ref = np.log10(np.maximum(power @ mel_filterbank(400, 40).double().numpy(), 1e-10))
    assert ours.shape == ref.shape == (n, 40)
    assert np.abs(ours - ref).max() < 1e-3


def test_log_mel_of_a_tone_peaks_in_its_band():
    t = torch.arange(16000) / 16000
    mel = log_mel(torch.sin(2 * torch.pi * 1000 * t)[None], n_mels=80)[0]  # (101, 80)
    centres = mel_to_hz(torch.linspace(0, float(hz_to_mel(8000.0)), 82))[1:-1]
    assert abs(float(centres[mel[50].argmax()]) - 1000) < 60


def test_resample_features_hand_case_and_clamping():
    feats = torch.tensor([[0.0, 10.0, 20.0, 30.0], [0.0, 10.0, 20.0, 99.0]])[..., None]  # (2, 4, 1)
    out = resample_features(feats, torch.tensor([4, 3]), src_rate=50, dst_rate=30, n_out=7)
    # position j * 50/30: 0, 1.667, 3.333 -> clamped to last valid frame
    expected0 = [0, 50 / 3, 30, 30, 30, 30, 30]
    assert torch.allclose(out[0, :, 0], torch.tensor(expected0, dtype=torch.float32), atol=1e-4)
    assert torch.allclose(out[1, :, 0], torch.tensor([0, 50 / 3, 20, 20, 20, 20, 20.0]), atol=1e-4)


def test_mel_encoder_batch_equals_per_clip():
    torch.manual_seed(0)
    enc = build_audio_encoder(mel_encoder_tiny())
    audio = torch.randn(2, 20000) * 0.1
    audio[1, 12000:] = 0.5  # garbage beyond the length must not leak in
    both = enc(audio, torch.tensor([20000, 12000]), 50.0, 63)
    alone = enc(audio[1:, :12000], torch.tensor([12000]), 50.0, 63)
    assert both.shape == (2, 63, enc.out_dim)
    assert (both[1] - alone[0]).abs().max() < 1e-5


def _tiny_hf(kind, norm):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    common = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                  conv_dim=(16, 16, 16), conv_stride=(5, 4, 16), conv_kernel=(10, 8, 16),
                  num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, feat_extract_norm=norm,
                  hidden_dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, feat_proj_dropout=0.0,
                  layerdrop=0.0)
    if kind == "wav2vec2":
        return transformers.Wav2Vec2Model(transformers.Wav2Vec2Config(**common)).eval()
    return transformers.HubertModel(transformers.HubertConfig(**common)).eval()


@pytest.mark.parametrize("kind,norm", [("wav2vec2", "group"), ("wav2vec2", "layer"), ("hubert", "group")])
def test_tiny_hf_encoders_shape_padding_and_frozen_convs(kind, norm):
    enc = HFAudioEncoder(_tiny_hf(kind, norm))
    assert enc.native_rate == 50.0 and enc.out_dim == 32
    assert not any(p.requires_grad for p in enc.model.feature_extractor.parameters())
    torch.manual_seed(1)
    audio = torch.randn(2, 32000) * 0.1
    audio[1, 20000:] = 0.3
    lengths = torch.tensor([32000, 20000])
    frames = torch.tensor([60, 38])  # 30 fps motion, ratio 1 -> rate 30 Hz
    with torch.no_grad():
        both = enc(audio, lengths, 30.0, 60, n_valid_out=frames)
        alone = enc(audio[1:, :20000], lengths[1:], 30.0, 38, n_valid_out=frames[1:])
    assert both.shape == (2, 60, 32) and torch.isfinite(both).all()
    assert (both[1, :38] - alone[0]).abs().max() < 1e-4


def test_hf_encoder_missing_model_is_a_clear_error(tmp_path):
    pytest.importorskip("transformers")
    from avguide.audio.encoders import AudioEncoderConfig
    from avguide.errors import MissingFileError
    with pytest.raises(MissingFileError, match="wav2vec2"):
        build_audio_encoder(AudioEncoderConfig(kind="wav2vec2", model=str(tmp_path / "nope")))


@pytest.mark.parametrize("lookahead", [0, 3])
def test_streaming_mel_encoder_ignores_speech_past_its_lookahead(lookahead):
    """A feature for time tau must not change when the speech after tau + encoder_lookahead_s
    changes, and must change when speech just inside that bound changes (the bound is tight
    to within one 10 ms mel frame)."""
    from avguide.audio.encoders import AudioEncoderConfig, encoder_lookahead_s

    torch.manual_seed(0)
    cfg = AudioEncoderConfig(n_mels=40, channels=16, n_blocks=2, kernel=3, lookahead=lookahead)
    enc = build_audio_encoder(cfg)
    rate, j = 30.0, 20  # feature 20 at 30 fps: tau = 0.6667 s
    ahead = encoder_lookahead_s(cfg)
    assert ahead == pytest.approx(((lookahead + 1) * 160 + 200) / 16000)
    audio = torch.randn(1, 32000) * 0.1
    base = enc(audio, torch.tensor([32000]), rate, 40)
    cut = int(np.ceil((j / rate + ahead) * 16000))
    after = audio.clone()
    after[0, cut:] = torch.randn(32000 - cut) * 0.3
    changed = enc(after, torch.tensor([32000]), rate, 40)
    assert torch.equal(changed[0, : j + 1], base[0, : j + 1])
    assert (changed[0, j + 2:] - base[0, j + 2:]).abs().max() > 1e-3  # later features do see it
    inside = audio.clone()
    inside[0, cut - 360: cut] += 0.3  # the last 22.5 ms the bound allows
    assert (enc(inside, torch.tensor([32000]), rate, 40)[0, j] - base[0, j]).abs().max() > 1e-4


def test_streaming_mel_encoder_batch_equals_per_clip_and_centred_is_unbounded():
    from avguide.audio.encoders import AudioEncoderConfig, encoder_lookahead_s

    torch.manual_seed(0)
    cfg = AudioEncoderConfig(n_mels=40, channels=16, n_blocks=2, kernel=3, lookahead=2)
    enc = build_audio_encoder(cfg)
    audio = torch.randn(2, 20000) * 0.1
    audio[1, 12000:] = 0.5
    both = enc(audio, torch.tensor([20000, 12000]), 50.0, 63)
    alone = enc(audio[1:, :12000], torch.tensor([12000]), 50.0, 63)
    assert (both[1] - alone[0]).abs().max() < 1e-5
    assert encoder_lookahead_s(mel_encoder_tiny()) == float("inf")
    assert "lookahead" in " ".join(AudioEncoderConfig(lookahead=-2).check())
