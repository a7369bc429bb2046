"""FaceFormer: cached decoding equals full-prefix recompute, padding, zero-init, training modes."""

import pytest
import torch

from avguide.animators import FaceFormer, build_animator, faceformer_tiny, faceformer_vocaset
from avguide.errors import BadInputError

V, S = 40, 3


def _model(seed=0, ratio=2):
    torch.manual_seed(seed)
    cfg = faceformer_tiny()
    cfg.audio_ratio = ratio
    m = build_animator(cfg, V, S).eval()
    # non-zero output layer so the fed-back motion matters
    torch.nn.init.normal_(m.vertice_map_r.weight, std=0.2)
    torch.nn.init.normal_(m.vertice_map_r.bias, std=0.2)
    return m


def _batch(seed=1):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([24000, 15000])
    audio = torch.randn(2, 24000, generator=g) * 0.1
    audio[1, 15000:] = 0
    template = torch.randn(2, V, 3, generator=g)
    return audio, lengths, template, torch.tensor([0, 2])


@pytest.mark.parametrize("ratio", [1, 2])
def test_cached_equals_recompute_batch_of_two(ratio):
    m = _model(ratio=ratio)
    audio, al, template, subject = _batch()
    fast = m.generate(audio, al, template, subject)
    slow = m.generate_recompute(audio, al, template, subject)
    assert fast.shape == (2, 38, V, 3)  # round(1.5 s * 25 fps) = 38 (37.5 -> 38), second clip 23
    assert (fast - template[:, None]).abs().max() > 0.5  # motion is not trivial
    assert (fast - slow).abs().max() < 1e-5


def test_batch_equals_per_sample_and_padding_is_template():
    m = _model()
    audio, al, template, subject = _batch()
    both = m.generate(audio, al, template, subject)
    alone = m.generate(audio[1:, :15000], al[1:], template[1:], subject[1:])
    t1 = alone.shape[1]
    assert t1 == round(15000 / 16000 * 25)
    assert (both[1, :t1] - alone[0]).abs().max() < 1e-5
    assert torch.equal(both[1, t1:], template[1].expand(both.shape[1] - t1, V, 3))


def test_zero_initialised_output_gives_template_at_first_step():
    torch.manual_seed(0)
    m = build_animator(faceformer_tiny(), V, S).eval()
    audio, al, template, subject = _batch()
    out = m.generate(audio, al, template, subject, n_frames=3)
    assert torch.equal(out, template[:, None].expand(2, 3, V, 3))


def test_long_sequence_beyond_600_frames():
    m = _model()
    audio = torch.randn(1, 16000 * 30) * 0.1  # 30 s at 25 fps = 750 frames
    out = m.generate(audio, torch.tensor([16000 * 30]), torch.zeros(1, V, 3), torch.tensor([1]))
    assert out.shape == (1, 750, V, 3) and torch.isfinite(out).all()


def test_autoregressive_training_matches_generation_and_backpropagates():
    m = _model()
    audio, al, template, subject = _batch()
    target = torch.randn(2, 38, V, 3)
    lengths = torch.tensor([38, 23])
    assert m.cfg.teacher_forcing is False  # published default: autoregressive training
    out = m(audio, al, template, target, lengths, subject)
    gen = m.generate(audio, al, template, subject)
    assert (out["pred"][0] - gen[0]).abs().max() < 1e-5
    assert (out["pred"][1, :23] - gen[1, :23]).abs().max() < 1e-5
    out["losses"]["mse"].backward()
    assert m.vertice_map.weight.grad.abs().sum() > 0  # the fed-back motion is differentiated


def test_teacher_forcing_on_own_predictions_equals_generation():
    m = _model()
    audio, al, template, subject = _batch()
    gen = m.generate(audio, al, template, subject)
    m.cfg.teacher_forcing = True
    lengths = torch.tensor([38, 23])
    out = m(audio, al, template, gen, lengths, subject)  # ground truth = the model's own output
    assert (out["pred"][0] - gen[0]).abs().max() < 1e-5
    assert (out["pred"][1, :23] - gen[1, :23]).abs().max() < 1e-5
    assert out["losses"]["mse"] < 1e-10


def test_masked_loss_ignores_padding():
    m = _model()
    audio, al, template, subject = _batch()
    target = torch.randn(2, 38, V, 3)
    lengths = torch.tensor([38, 23])
    a = m(audio, al, template, target, lengths, subject)["losses"]["mse"]
    target[1, 23:] = 1e3
    b = m(audio, al, template, target, lengths, subject)["losses"]["mse"]
    assert torch.equal(a, b)


def test_bad_inputs_and_config_are_reported():
    m = _model()
    audio, al, template, subject = _batch()
    with pytest.raises(ValueError, match="subject"):
        m.generate(audio, al, template, torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="template"):
        m.generate(audio, al, template[:, :5], subject)
    cfg = faceformer_vocaset()
    cfg.feature_dim, cfg.period = 30, 0
    with pytest.raises(BadInputError, match="feature_dim") as e:
        build_animator(cfg, V, S)
    assert "period" in str(e.value)


def test_published_parameter_count_vocaset():
    m = FaceFormer(faceformer_vocaset(), 5023, 8)
    decoder = sum(p.numel() for n, p in m.named_parameters() if not n.startswith("audio_encoder."))
    # vertice_map 15069*64+64, vertice_map_r 64*15069+15069, obj_vector 8*64, audio_feature_map 256*64+64,
    # one decoder layer: 2 attentions 2*(4*64*64+4*64), ff 64*128+128+128*64+64, 3 norms 3*128
    expected = (15069 * 64 + 64) + (64 * 15069 + 15069) + 8 * 64 + (256 * 64 + 64) \
        + 2 * (4 * 64 * 64 + 4 * 64) + (64 * 128 + 128 + 128 * 64 + 64) + 3 * 128
    assert decoder == expected


def test_attention_window_cached_equals_recompute_and_limits_the_past():
    """With context=6 frames the sliding key/value cache equals the windowed full mask (cached
    inference, autoregressive training), and the window really binds: the output differs from
    the unlimited model's; a window longer than the sequence changes nothing."""
    audio, al, template, subject = _batch()
    full = _model().generate(audio, al, template, subject)
    m = _model()
    m.cfg.context = 6
    fast = m.generate(audio, al, template, subject)
    slow = m.generate_recompute(audio, al, template, subject)
    assert (fast - slow).abs().max() < 1e-5
    assert (fast - full).abs().max() > 1e-3
    train = m(audio, al, template, fast, torch.tensor([38, 23]), subject)["pred"]  # grad-mode cache
    assert (train[0] - fast[0]).abs().max() < 1e-5
    m.cfg.context = 38
    assert (m.generate(audio, al, template, subject) - full).abs().max() < 1e-6
