"""Expert building blocks against naive definitions, and the model API on small presets."""

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from avguide.errors import BadInputError
from avguide.lipreader.attention import MultiHeadedAttention, relative_position_table
from avguide.lipreader.config import (MODALITIES, ExpertConfig, asr_cpu_small, avsr_cpu_small, config_from_auto_avsr,
                                      modality_name, vsr_cpu_small)
from avguide.lipreader.decoder import TransformerDecoder
from avguide.lipreader.frontends import MelFrontend
from avguide.lipreader.losses import add_sos_eos, ctc_frames_needed, ctc_unfit, label_smoothing_loss
from avguide.lipreader.model import build_avsr, build_expert, build_vsr
from avguide.lipreader.preprocess import normalize_audio, normalize_video


def test_relative_attention_matches_explicit_offsets():
    torch.manual_seed(0)
    heads, dim, T = 2, 8, 5
    att = MultiHeadedAttention(heads, dim, 0.0, relative=True).eval()
    x = torch.randn(1, T, dim)
    mask = torch.tensor([[[True, True, True, True, False]]])
    got = att(x, x, x, mask, relative_position_table(T, dim))
    # naive: score(i, j) uses the sinusoid of offset i - j directly
    d_k = dim // heads
    q = att.linear_q(x).view(T, heads, d_k)
    k = att.linear_k(x).view(T, heads, d_k)
    v = att.linear_v(x).view(T, heads, d_k)
    out = torch.zeros(T, heads, d_k)
    for h in range(heads):
        for i in range(T):
            scores = []
            for j in range(T):
                freqs = torch.tensor([10000 ** (-2 * c / dim) for c in range(dim // 2)])
                ang = (i - j) * freqs
                pe = torch.stack([ang.sin(), ang.cos()], 1).reshape(dim)
                p = att.linear_pos(pe).view(heads, d_k)[h]
                s = (q[i, h] + att.pos_bias_u[h]) @ k[j, h] + (q[i, h] + att.pos_bias_v[h]) @ p
                scores.append(s / math.sqrt(d_k) if j < 4 else torch.tensor(-1e30))
            w = torch.softmax(torch.stack(scores), 0)
            out[i, h] = (w[:, None] * v[:, h]).sum(0)
    want = att.linear_out(out.reshape(1, T, dim))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_decoder_step_with_cache_equals_full_forward():
    torch.manual_seed(0)
    dec = TransformerDecoder(odim=11, dim=16, heads=2, ffn_dim=24, layers=2, dropout=0.0,
                             attn_dropout=0.0).eval()
    memory = torch.randn(3, 7, 16)
    mask = torch.tensor([7, 5, 2])[:, None, None] > torch.arange(7)  # (3, 1, 7)
    tokens = torch.randint(1, 11, (3, 4))
    full = torch.log_softmax(dec(tokens, memory, mask), -1)  # (3, 4, 11)
    cache = None
    for s in range(1, 5):
        logp, cache = dec.step(tokens[:, :s], memory, mask, cache)
        torch.testing.assert_close(logp, full[:, s - 1], rtol=1e-5, atol=1e-5)


def test_add_sos_eos_by_hand():
    ys_in, ys_out = add_sos_eos(torch.tensor([[5, 6, 7], [8, -1, -1]]), sos=9, eos=9)
    assert ys_in.tolist() == [[9, 5, 6, 7], [9, 8, 9, 9]]
    assert ys_out.tolist() == [[5, 6, 7, 9], [8, 9, -1, -1]]


def test_label_smoothing_matches_kl_div():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 6)
    targets = torch.tensor([[1, 2, 3, -1], [4, 5, -1, -1]])
    q = torch.full((2, 4, 6), 0.1 / 5)
    q.scatter_(2, targets.clamp(min=0).unsqueeze(-1), 0.9)
    kl = F.kl_div(torch.log_softmax(logits, -1), q, reduction="none").sum(-1)
    want = (kl * (targets != -1)).sum() / 2
    torch.testing.assert_close(label_smoothing_loss(logits, targets, 0.1), want)


def test_ctc_frames_needed_by_hand():
    # "HELLO" (L L needs a blank between), "AAA", "AB", and an empty target
    targets = torch.tensor([[8, 5, 12, 12, 15], [1, 1, 1, -1, -1], [1, 2, -1, -1, -1], [-1, -1, -1, -1, -1]])
    assert ctc_frames_needed(targets).tolist() == [6, 5, 2, 0]


def test_ctc_unfit_is_where_the_ctc_likelihood_is_zero():
    """Independent truth: PyTorch's CTC loss without zero_infinity is infinite exactly for the
    utterances counted as unfit, around the boundary (needed frames - 1, equal, + 1)."""
    torch.manual_seed(0)
    rows, lengths = [], []
    for tokens in ([3, 4, 5], [3, 3, 4], [3, 3, 3, 3], [5, 6, 6, 7, 7]):
        need = ctc_frames_needed(torch.tensor([tokens])).item()
        for T in (need - 1, need, need + 1):
            rows.append(tokens + [-1] * (5 - len(tokens)))
            lengths.append(T)
    targets, lengths = torch.tensor(rows), torch.tensor(lengths)
    logp = torch.log_softmax(torch.randn(len(rows), 8, 9), -1)
    valid = targets != -1
    nll = F.ctc_loss(logp.transpose(0, 1), targets[valid], lengths, valid.sum(1), reduction="none")
    assert ctc_unfit(lengths, targets).tolist() == torch.isinf(nll).tolist()
    assert ctc_unfit(lengths, targets).sum().item() == 4  # one per target


def test_input_normalisation():
    torch.manual_seed(0)
    audio = torch.randn(2, 100) * 3 + 1
    lengths = torch.tensor([100, 60])
    out = normalize_audio(audio, lengths)
    torch.testing.assert_close(out[1, :60], F.layer_norm(audio[1, :60], (60,), eps=1e-8))
    torch.testing.assert_close(out[0], F.layer_norm(audio[0], (100,), eps=1e-8))
    assert torch.all(out[1, 60:] == 0)
    assert normalize_video(torch.tensor(0.421 + 0.165)).item() == pytest.approx(1.0)


def _batch(B=2, T=6, size=32, audio=True):
    torch.manual_seed(0)
    video = torch.rand(B, T, 1, size, size, requires_grad=True)
    wav = torch.randn(B, T * 640) if audio else None
    targets = torch.tensor([[3, 4, 5], [6, 7, -1]])
    return video, torch.tensor([T, T - 2]), wav, torch.tensor([T * 640, (T - 2) * 640]), targets


@pytest.mark.parametrize("preset", [avsr_cpu_small, vsr_cpu_small])
def test_small_preset_trains_and_passes_gradient_to_pixels(preset):
    cfg = preset()
    model = build_expert(cfg).train()
    video, vlen, wav, alen, targets = _batch(audio=cfg.modality == "av")
    out = model(normalize_video(video), vlen, wav, alen if wav is not None else None, targets)
    assert set(out) == {"loss", "loss_ctc", "loss_att", "acc", "ctc_unfit"}
    assert out["ctc_unfit"].item() == 0  # 3 and 2 tokens in 6 and 4 frames
    torch.testing.assert_close(out["loss"], 0.1 * out["loss_ctc"] + 0.9 * out["loss_att"])
    out["loss"].backward()
    assert torch.isfinite(video.grad).all() and video.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_api_errors():
    av = build_avsr(ExpertConfig(modality="av", odim=8, adim=16, aheads=2, eunits=16,
                                 elayers=1, aux_adim=16, aux_aheads=2, aux_eunits=16,
                                 aux_elayers=1, fusion_hdim=16, ddim=16, dheads=2, dunits=16,
                                 dlayers=1, visual_widths=(4, 4, 4, 4), audio_widths=(4, 4, 4, 4)))
    video, vlen, wav, alen, targets = _batch()
    with pytest.raises(BadInputError, match="audio: expected"):
        av(video, vlen, wav[:, :-700], alen, targets)
    with pytest.raises(BadInputError, match="required"):
        av(video, vlen, None, None, targets)
    with pytest.raises(BadInputError, match="video: expected"):
        av(video[:, :, 0], vlen, wav, alen, targets)
    with pytest.raises(BadInputError, match=r"targets: expected .* ids in \[1, 6\]"):
        av(video, vlen, wav, alen, torch.tensor([[7], [1]]))
    with pytest.raises(BadInputError, match="visual-only"):
        vsr = build_vsr(vsr_cpu_small())
        vsr(video, vlen, wav, alen, targets)
    with pytest.raises(BadInputError, match="modality must be 'av'"):
        build_avsr(vsr_cpu_small())


def test_audio_only_model_shares_the_av_audio_encoder_shapes():
    """asr_cpu_small's encoder has exactly avsr_cpu_small's aux_encoder entries; it reads audio
    of whole 640-sample frames and rejects video."""
    asr, av = build_expert(asr_cpu_small()), build_expert(avsr_cpu_small())
    enc = {k[len("encoder."):]: v.shape for k, v in asr.state_dict().items() if k.startswith("encoder.")}
    aux = {k[len("aux_encoder."):]: v.shape for k, v in av.state_dict().items() if k.startswith("aux_encoder.")}
    assert enc == aux and asr.aux_encoder is None and asr.fusion is None
    _, vlen, wav, alen, targets = _batch()
    out = asr.train()(None, vlen, wav, alen, targets)
    assert torch.isfinite(out["loss"]) and out["loss"] > 0
    with pytest.raises(BadInputError, match="audio-only; pass video=None"):
        asr(torch.zeros(2, 6, 1, 32, 32), vlen, wav, alen, targets)
    with pytest.raises(BadInputError, match="multiple of 640"):
        asr(None, vlen, wav[:, :-1], alen, targets)
    with pytest.raises(BadInputError, match="required by the audio-only"):
        asr(None, vlen, None, None, targets)


def test_mel_frontend_frame_k_reads_the_samples_of_frame_k():
    """Output frame j of the log-mel front-end depends on samples 640 j + 320 +- 1480 only (the
    25 ms windows and the four convolutions, centred on frame j's samples), so a change to the
    samples of 25 fps frame k moves frames k - 2 .. k + 2, symmetrically, and leaves every other
    frame exactly as it was: the audio features stay aligned with the video frames."""
    torch.manual_seed(0)
    fe = MelFrontend((8, 8, 8, 8)).eval()
    wav = torch.randn(2, 20 * 640 + 300)  # 20 frames and a remainder that is dropped
    out = fe(wav)
    assert out.shape == (2, 20, 8)
    k = 9
    moved = wav.clone()
    moved[:, 640 * k: 640 * (k + 1)] += torch.randn(2, 640)
    changed = (fe(moved) - out).abs().amax((0, 2))  # (20,) per output frame
    assert (changed[k - 2: k + 3] > 0).all()
    assert changed[: k - 2].max() == 0 and changed[k + 3:].max() == 0


@pytest.mark.parametrize("frontend, entry", [("mel", "frontend.convs.0.weight"),
                                              ("resnet1d", "frontend.trunk.conv1.weight")])
def test_both_audio_frontends_build_av_and_audio_experts_with_matching_encoders(frontend, entry):
    asr = build_expert(dataclasses.replace(asr_cpu_small(), audio_frontend=frontend))
    av = build_expert(dataclasses.replace(avsr_cpu_small(), audio_frontend=frontend))
    enc = {k[len("encoder."):]: v.shape for k, v in asr.state_dict().items() if k.startswith("encoder.")}
    aux = {k[len("aux_encoder."):]: v.shape for k, v in av.state_dict().items() if k.startswith("aux_encoder.")}
    assert enc == aux and entry in aux
    video, vlen, wav, alen, targets = _batch()
    out = av.train()(normalize_video(video), vlen, wav, alen, targets)
    out["loss"].backward()
    assert all(p.grad is not None for p in av.parameters() if p.requires_grad)


def test_residual_fusion_starts_exactly_at_the_audio_model():
    """With ``fusion_residual`` the fusion MLP's last layer starts at zero, so an AV expert
    holding an audio model's encoder and heads reads exactly what the audio model reads (the
    lips change nothing yet), and the gradient reaches that layer so that training can add them."""
    torch.manual_seed(0)
    asr = build_expert(asr_cpu_small()).eval()
    av = build_expert(dataclasses.replace(avsr_cpu_small(), fusion_residual=True)).eval()
    state = asr.state_dict()
    av.load_state_dict({("aux_" + k if k.startswith("encoder.") else k): v for k, v in state.items()}, strict=False)
    video, vlen, wav, alen, targets = _batch()
    wav = wav[:, : vlen.max() * 640]  # whole frames, as the audio-only model needs
    with torch.no_grad():
        a = asr.encode(None, vlen, wav, alen)
        fused = av.encode(normalize_video(video), vlen, wav, alen)
        other = av.encode(normalize_video(torch.rand_like(video)), vlen, wav, alen)
    torch.testing.assert_close(fused.features, a.features, rtol=0, atol=0)
    torch.testing.assert_close(av.ctc_log_probs(other), asr.ctc_log_probs(a), rtol=0, atol=0)
    out = av.train()(normalize_video(video), vlen, wav, alen, targets)
    out["loss"].backward()
    assert av.fusion.fc2.weight.grad.abs().sum() > 0
    plain = build_expert(avsr_cpu_small()).eval()  # Auto-AVSR's fusion: no such shortcut
    assert plain.fusion.fc2.weight.abs().sum() > 0


def test_config_check_lists_every_problem():
    cfg = ExpertConfig(adim=100, aheads=3, cnn_module_kernel=4, mtlalpha=1.5, audio_frontend="fbank")
    errors = cfg.check()
    assert len(errors) == 5 and any("adim/aheads" in e for e in errors) and any("audio_frontend" in e for e in errors)
    with pytest.raises(BadInputError, match="cnn_module_kernel.*mtlalpha"):
        cfg.validate()


def test_one_modality_vocabulary_with_short_names_only_from_outside():
    """Inside avguide a modality is "av", "video" or "audio"; the Auto-AVSR import also takes "v"."""
    assert MODALITIES == ("av", "video", "audio")
    assert ExpertConfig(modality="v").check() == ["modality: 'av', 'video' or 'audio', got 'v'"]
    args = {"adim": 16, "aheads": 2, "eunits": 32, "elayers": 1}
    short, ours = config_from_auto_avsr(args, 9, "v"), config_from_auto_avsr(args, 9, "video")
    assert short == ours and ours.modality == "video" and (ours.aux_adim, ours.aux_aheads) == (16, 2)
    assert config_from_auto_avsr(args | {"aux_adim": 16, "aux_aheads": 2}, 9, "av").modality == "av"
    assert [modality_name(m) for m in ("av", "video", "audio", "v", "a")] == ["av", "video", "audio", "video", "audio"]
